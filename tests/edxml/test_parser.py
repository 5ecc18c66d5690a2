"""The parser reads real traffic: by element name, prefix-agnostic, both date forms."""

from __future__ import annotations

import hashlib

import pytest

from hub.edxml.builder import build
from hub.edxml.model import BusinessDocType, DocumentPackage, StatusPackage
from hub.edxml.parser import parse_package
from hub.errors import MalformedXml
from tests.conftest import FIXTURES, fixture_bytes, fixture_files
from tests.edxml.samples import document_bytes, status


@pytest.mark.parametrize("path", fixture_files(), ids=lambda p: p.name)
def test_every_sdk_sample_parses_without_problems(path):
    parsed = parse_package(path.read_bytes())
    assert parsed.problems == ()
    assert parsed.package.from_.organ_id


def test_sdk_samples_are_present_or_the_suite_says_so():
    if not FIXTURES.is_dir():
        pytest.skip("../shared/fixtures/edxml/vpcp-sdk is absent: SDK sample tests skipped")
    assert len(sorted(FIXTURES.glob("*.edxml"))) == 9


def test_sdk_document_fields():
    parsed = parse_package(fixture_bytes("sdk_built_edoc_dc0bdef0.edxml"))
    doc = parsed.package
    assert isinstance(doc, DocumentPackage)
    assert doc.recipients == ("000.00.00.H41", "000.00.00.H14", "000.00.00.G17")
    assert doc.code is not None and doc.code.text == "7816/VPCP-TTĐT"
    assert doc.business_type is BusinessDocType.NEW
    assert doc.promulgation is not None and doc.promulgation.date is not None
    assert doc.promulgation.date.raw == "2019/04/11"
    assert parsed.signature_form == "placeholder"
    assert [a.content_id for a in doc.attachments] == ["209"]  # "cid:" stripped
    assert doc.attachments[0].data().startswith(b"PK")  # the SDK zips the .doc


def test_status_sample_with_code_as_text():
    parsed = parse_package(fixture_bytes("status_rejection_02.edxml"))
    st = parsed.package
    assert isinstance(st, StatusPackage)
    assert st.status_code == "02"
    assert st.addressee == "000.00.00.G22"
    assert st.response_for is not None and st.response_for.code is not None
    assert (st.response_for.code.number, st.response_for.code.notation) == ("7816", "VPCP-TTĐT")
    assert parsed.signature_form == "absent"


def test_attachment_payload_is_not_decoded_until_asked(monkeypatch):
    parsed = parse_package(document_bytes(payload=b"hello"))
    doc = parsed.package
    assert isinstance(doc, DocumentPackage)
    calls = []
    original = doc.attachments[0].loader
    object.__setattr__(doc.attachments[0], "loader", lambda: calls.append(1) or original())
    assert calls == []
    assert doc.attachments[0].data() == b"hello"
    assert calls == [1]


def test_element_order_and_prefix_do_not_matter():
    data = document_bytes().decode()
    # Another producer: prefix "ns1", Subject before From, DocumentId first.
    other = data.replace("edXML:", "ns1:").replace("xmlns:edXML=", "xmlns:ns1=")
    other = other.replace(
        "<ns1:MessageHeader>",
        "<ns1:MessageHeader>\n<ns1:DocumentId>X</ns1:DocumentId>",
    ).replace("<ns1:DocumentId>000.00.00.G22,2026/11/23,7816/VPCP-TTĐT</ns1:DocumentId>", "")
    parsed = parse_package(other.encode())
    assert parsed.problems == ()
    assert isinstance(parsed.package, DocumentPackage)
    assert parsed.package.document_id == "X"
    assert parsed.package.recipients == ("000.00.00.H53", "000.00.05.H53")


def test_both_date_forms_are_accepted_and_the_received_form_is_kept():
    data = document_bytes().replace(
        b"2026/11/23</edXML:PromulgationDate>", b"23/11/2026</edXML:PromulgationDate>"
    )
    doc = parse_package(data).package
    assert isinstance(doc, DocumentPackage) and doc.promulgation is not None
    assert doc.promulgation.date is not None
    assert doc.promulgation.date.form == "dd/MM/yyyy"
    assert doc.promulgation.date.raw == "23/11/2026"
    assert doc.promulgation.date.value.isoformat() == "2026-11-23"


def test_empty_elements_mean_absent():
    data = document_bytes().replace(b"</edXML:Subject>", b"</edXML:Subject><edXML:DueDate/>")
    doc = parse_package(data).package
    assert isinstance(doc, DocumentPackage)
    assert doc.due_date is None


def test_status_code_one_digit_is_normalised():
    data = build(status("01")).replace(b">01</edXML:StatusCode>", b">1</edXML:StatusCode>")
    st = parse_package(data).package
    assert isinstance(st, StatusPackage) and st.status_code == "01"


def test_kind_must_agree_with_the_transport():
    with pytest.raises(MalformedXml) as exc:
        parse_package(build(status()), expected_kind="edoc")
    assert exc.value.error_code == "kind_mismatch"


def test_non_edxml_root_is_refused():
    with pytest.raises(MalformedXml) as exc:
        parse_package(b'<?xml version="1.0"?><html/>')
    assert exc.value.error_code == "not_edxml"


def test_sha256_and_size_of_the_exact_bytes():
    data = document_bytes()
    parsed = parse_package(data)
    assert parsed.sha256 == hashlib.sha256(data).hexdigest()
    assert parsed.size == len(data) and parsed.data is data
