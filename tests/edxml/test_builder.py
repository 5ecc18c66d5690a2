"""The builder writes the SDK's layout; parse(build(x)) == x for any package."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from hub.edxml.builder import build
from hub.edxml.dates import EdDate, EdTimestamp
from hub.edxml.model import (
    Attachment,
    Business,
    BusinessDocType,
    BusinessDocumentInfo,
    Code,
    DocumentPackage,
    DocumentType,
    ManifestReference,
    Organization,
    OtherInfo,
    PromulgationInfo,
    ReceiverChange,
    ReplacementInfo,
    ResponseFor,
    SignerInfo,
    StaffInfo,
    StatusPackage,
    TraceHeader,
)
from hub.edxml.parser import parse_package
from hub.edxml.rules import check
from tests.conftest import SCHEMAS, fixture_bytes, fixture_files
from tests.edxml.samples import document, status

# Text as the parser returns it: stripped, non-empty, XML-safe (Vietnamese included).
text = (
    st.text(
        alphabet=st.characters(
            codec="utf-8",
            exclude_categories=("Cs", "Cc", "Zl", "Zp"),
            exclude_characters="\ufffe\uffff",
        ),
        min_size=1,
        max_size=30,
    )
    .map(str.strip)
    .filter(bool)
)
opt = st.none() | text
organ = st.from_regex(r"\A[0-9]{3}\.[0-9]{2}\.[0-9]{2}\.[A-Z][0-9]{2}\Z") | st.from_regex(
    r"\A[A-Z][0-9]{2}(\.[A-Z0-9]{1,4}){0,3}\Z"
)
dates = st.dates(dt.date(1990, 1, 1), dt.date(2100, 1, 1)).map(EdDate.of)
stamps = st.datetimes(dt.datetime(1990, 1, 1), dt.datetime(2100, 1, 1)).map(EdTimestamp.of)
codes = st.builds(
    Code,
    st.from_regex(r"\A[0-9]{1,6}\Z") | st.none(),
    st.from_regex(r"\A[A-Z\u0110]{2,6}(-[A-Z]{2,4})?\Z") | st.none(),
)
orgs = st.builds(Organization, organ, opt, opt, opt, opt, opt, opt, opt)
staff = st.builds(StaffInfo, opt, opt, opt, opt)
response = st.builds(
    ResponseFor, organ, codes.filter(lambda c: bool(c.text)), st.none() | dates, text
)
ints = st.sampled_from(["0", "1", "2", "3", "4"])
cids = st.from_regex(r"\A[A-Za-z0-9]{1,8}\Z")


@st.composite
def attachments(draw: st.DrawFn) -> tuple[tuple[ManifestReference, ...], tuple[Attachment, ...]]:
    ids = draw(st.lists(cids, max_size=3, unique=True))
    refs, atts = [], []
    for cid in ids:
        name, ctype = draw(opt), draw(opt)
        refs.append(ManifestReference(cid, ctype, draw(opt), name))
        atts.append(
            Attachment.of(
                cid,
                draw(st.binary(max_size=64)),
                attachment_name=name,
                description=draw(opt),
                content_type=ctype,
            )
        )
    return tuple(refs), tuple(atts)


business = st.builds(
    Business,
    st.sampled_from(list(BusinessDocType)),
    opt,
    st.none()
    | st.builds(
        BusinessDocumentInfo,
        st.none() | ints,
        st.none() | ints,
        st.lists(st.builds(ReceiverChange, organ, st.sampled_from(["0", "1"])), max_size=2).map(
            tuple
        ),
    ),
    opt,
    st.none() | staff,
    st.none() | st.sampled_from(["0", "1"]),
    st.lists(
        st.builds(ReplacementInfo, text, st.lists(organ, max_size=2).map(tuple)), max_size=2
    ).map(tuple),
)


@st.composite
def documents(draw: st.DrawFn) -> DocumentPackage:
    manifest, atts = draw(attachments())
    return DocumentPackage(
        from_=draw(orgs),
        to=tuple(draw(st.lists(orgs, min_size=1, max_size=3))),
        code=draw(codes.filter(lambda c: bool(c.text))),
        promulgation=PromulgationInfo(draw(opt), draw(dates)),
        document_type=DocumentType(draw(st.none() | ints), draw(st.none() | ints), draw(opt)),
        subject=draw(text),
        signer_info=SignerInfo(draw(opt), draw(opt), draw(opt)),
        document_id=draw(text),
        content=draw(opt),
        due_date=draw(st.none() | dates),
        to_places=tuple(draw(st.lists(text, max_size=2))),
        other_info=draw(
            st.none()
            | st.builds(
                OtherInfo,
                st.none() | ints,
                opt,
                opt,
                opt,
                opt,
                opt,
                st.lists(text, max_size=2).map(tuple),
            )
        ),
        response_for=tuple(draw(st.lists(response, max_size=2))),
        steering_type=draw(st.none() | ints),
        traces=tuple(draw(st.lists(st.builds(TraceHeader, organ, stamps), max_size=2))),
        business=draw(st.none() | business),
        manifest=manifest,
        attachments=atts,
    )


statuses = st.builds(
    StatusPackage,
    orgs,
    response,
    st.sampled_from(["01", "02", "03", "04", "05", "06", "13", "15", "16"]),
    stamps,
    st.none() | staff,
    opt,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents())
def test_parse_of_build_is_identity_for_documents(pkg):
    parsed = parse_package(build(pkg))
    assert parsed.problems == ()
    assert parsed.package == pkg


@settings(max_examples=150, deadline=None)
@given(statuses)
def test_parse_of_build_is_identity_for_statuses(pkg):
    parsed = parse_package(build(pkg))
    assert parsed.package == pkg


def _schema(name: str) -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(SCHEMAS / name)))


def test_built_packages_validate_against_the_schemas():
    doc_xsd, status_xsd = _schema("edxml-document.xsd"), _schema("edxml-status.xsd")
    assert doc_xsd.validate(etree.fromstring(build(document()))), doc_xsd.error_log
    assert status_xsd.validate(etree.fromstring(build(status()))), status_xsd.error_log


@pytest.mark.parametrize("path", fixture_files(), ids=lambda p: p.name)
def test_sdk_samples_rebuild_to_schema_valid_packages(path):
    parsed = parse_package(path.read_bytes())
    xsd = _schema("edxml-document.xsd" if parsed.kind == "edoc" else "edxml-status.xsd")
    rebuilt = build(parsed.package)
    assert xsd.validate(etree.fromstring(rebuilt)), xsd.error_log
    assert parse_package(rebuilt).package == parsed.package


def test_rules_win_where_strict_schema_order_would_refuse_real_traffic():
    data = fixture_bytes("status_inbox_01.edxml")  # StaffInfo children in another order
    assert not _schema("edxml-status.xsd").validate(etree.fromstring(data))
    assert check(parse_package(data)) == []


def test_builder_reproduces_the_sdk_layout_line_for_line():
    original = fixture_bytes("sdk_built_edoc_dc0bdef0.edxml").decode().replace("\r\n", "\n")
    rebuilt = build(parse_package(original.encode()).package).decode()
    # Identical except the SDK's placeholder Signature block, which the hub never emits.
    start = original.index("      <Signature>")
    end = original.index("</Signature>\n") + len("</Signature>\n")
    assert rebuilt == original[:start] + original[end:]


def test_builder_refuses_characters_xml_cannot_carry():
    with pytest.raises(ValueError):
        build(replace(document(), subject="bad \x01 char"))
