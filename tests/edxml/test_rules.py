"""Validation reports every problem at once, each with a stable code and a path."""

from __future__ import annotations

from dataclasses import replace

import pytest

from hub.edxml.builder import build
from hub.edxml.model import Business, BusinessDocType
from hub.edxml.parser import parse_package
from hub.edxml.rules import check, validate
from hub.errors import ValidationFailed
from tests.edxml.samples import document, document_bytes, status


def codes(data: bytes) -> set[str]:
    return {p.code for p in check(parse_package(data)) if p.severity == "error"}


def test_a_valid_document_has_no_errors():
    assert validate(parse_package(document_bytes())) == []


def test_every_problem_is_reported_at_once_with_paths():
    data = (
        build(document(to=("000.00.00.H53", "000.00.00.H53")))
        .replace(b"<edXML:Subject>", b"<edXML:Subject/><edXML:X>")
        .replace(b"</edXML:Subject>", b"</edXML:X>")
        .replace(b"2026/11/23</edXML:PromulgationDate>", b"2026-11-23</edXML:PromulgationDate>")
        .replace(b"cid:1</ContentId>", b"cid:2</ContentId>")
    )
    with pytest.raises(ValidationFailed) as exc:
        validate(parse_package(data))
    got = {(p["code"], p["path"]) for p in exc.value.problems}
    mh = "/edXML/edXMLEnvelope/edXMLHeader/MessageHeader"
    assert ("duplicate_recipient", f"{mh}/To") in got
    assert ("missing_element", f"{mh}/Subject") in got
    assert ("invalid_date", f"{mh}/PromulgationInfo/PromulgationDate") in got
    assert ("attachment_missing", "/edXML/edXMLEnvelope/edXMLBody/edXMLManifest/Reference") in got
    assert ("manifest_entry_missing", "/edXML/AttachmentEncoded/Attachment") in got
    assert exc.value.error_code == "validation_failed"


def test_missing_recipients_and_sender():
    data = document_bytes().replace(b"<edXML:OrganId>000.00.00.G22</edXML:OrganId>", b"", 1)
    data = data.replace(b"<edXML:To>", b"<edXML:Cc>").replace(b"</edXML:To>", b"</edXML:Cc>")
    assert {"missing_element"} <= codes(data)
    problems = check(parse_package(data))
    paths = {p.path for p in problems}
    assert "/edXML/edXMLEnvelope/edXMLHeader/MessageHeader/To" in paths
    assert "/edXML/edXMLEnvelope/edXMLHeader/MessageHeader/From/OrganId" in paths


def test_organ_id_patterns():
    assert "invalid_organ_id" in codes(build(document(to=("not an id",))))
    # Both forms and legacy ids are accepted syntactically.
    assert codes(build(document(to=("000.00.05.H53", "H37.02.02", "28.22.H17")))) == set()


def test_revocation_must_name_the_earlier_document():
    pkg = document(business=Business(BusinessDocType.REVOCATION, reason="nham"))
    assert "missing_element" in codes(build(pkg))
    ok = document(business=Business(BusinessDocType.REVOCATION, document_id="X,2026/01/01,1/A"))
    assert codes(build(ok)) == set()


def test_unknown_business_type_is_an_error():
    data = document_bytes().replace(b">0</edXML:BussinessDocType>", b">7</edXML:BussinessDocType>")
    assert "invalid_business_type" in codes(data)


def test_status_codes_outside_the_wire_set_are_refused():
    data = build(status("01")).replace(b">01</edXML:StatusCode>", b">09</edXML:StatusCode>")
    assert "unknown_status_code" in codes(data)
    data = build(status("01")).replace(b">01</edXML:StatusCode>", b">abc</edXML:StatusCode>")
    assert "invalid_status_code" in codes(data)


def test_status_needs_an_addressee_and_a_document():
    data = build(status()).replace(b"<edXML:OrganId>000.00.00.G22</edXML:OrganId>", b"")
    assert "missing_element" in codes(data)


def test_status_must_not_carry_to():
    data = build(status()).replace(
        b"<edXML:StatusCode>",
        b"<edXML:To><edXML:OrganId>A.B</edXML:OrganId></edXML:To><edXML:StatusCode>",
    )
    assert "unexpected_element" in codes(data)


def test_length_limits_are_warnings_only():
    data = document_bytes().replace(b">7816<", b">123456789012345<")
    problems = check(parse_package(data))
    assert [p.code for p in problems] == ["length_exceeded"]
    assert problems[0].severity == "warning"
    assert validate(parse_package(data)) == problems


def test_refusal_description_is_a_warning_for_status_02():
    st = status("02")
    data = build(replace(st, description=None))
    assert [p.code for p in check(parse_package(data))] == ["missing_description"]
