"""Validation rules for incoming packages (EDXML.md), reporting every problem at once.

These rules, not the XSDs in ``schemas/``, decide whether a package is accepted:
real producers order children differently and the XSDs describe the exact layout
the hub itself emits. See docs/edxml.md.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Final

from hub.edxml import ns
from hub.edxml.model import BusinessDocType, DocumentPackage, Organization, StatusPackage
from hub.edxml.organ import classify
from hub.edxml.parser import ParsedPackage
from hub.edxml.problems import Problem
from hub.errors import ValidationFailed

MH: Final = "/edXML/edXMLEnvelope/edXMLHeader/MessageHeader"
TRACE: Final = "/edXML/edXMLEnvelope/edXMLHeader/TraceHeaderList"
MANIFEST: Final = "/edXML/edXMLEnvelope/edXMLBody/edXMLManifest"

# Length limits one production hub enforced; warnings until the axis is shown to refuse.
_LENGTHS: Final = {
    "Code/CodeNumber": 11,
    "Code/CodeNotation": 30,
    "PromulgationInfo/Place": 50,
    "DocumentType/TypeName": 100,
    "Subject": 500,
    "Content": 500,
}


def check(parsed: ParsedPackage) -> list[Problem]:
    """Every problem in the package: structural ones from parsing, then the rules."""
    problems = list(parsed.problems)
    pkg = parsed.package
    if isinstance(pkg, DocumentPackage):
        problems.extend(_document(pkg))
    else:
        problems.extend(_status(pkg))
    return problems


def validate(parsed: ParsedPackage) -> list[Problem]:
    """Raise ``ValidationFailed`` listing every error; return the warnings."""
    problems = check(parsed)
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        raise ValidationFailed([p.as_dict() for p in errors])
    return problems


def _organ(org: Organization, path: str) -> Iterator[Problem]:
    if org.organ_id is None:
        return  # already reported as missing by the parser
    try:
        classify(org.organ_id)
    except ValueError as exc:
        yield Problem("invalid_organ_id", f"{path}/OrganId", str(exc))


def _length(value: str | None, limit: int, path: str) -> Iterator[Problem]:
    if value is not None and len(value) > limit:
        yield Problem(
            "length_exceeded",
            path,
            f"{len(value)} characters; producers limit this to {limit}",
            "warning",
        )


def _document(pkg: DocumentPackage) -> Iterator[Problem]:
    yield from _organ(pkg.from_, f"{MH}/From")
    for i, to in enumerate(pkg.to, 1):
        yield from _organ(to, f"{MH}/To[{i}]" if len(pkg.to) > 1 else f"{MH}/To")
    counts = Counter(pkg.recipients)
    for organ, n in counts.items():
        if n > 1:
            yield Problem(
                "duplicate_recipient", f"{MH}/To", f"recipient {organ} is listed {n} times"
            )
    if pkg.code is not None:
        if pkg.code.number is None and pkg.code.notation is None:
            yield Problem("missing_element", f"{MH}/Code", "Code needs CodeNumber or CodeNotation")
        yield from _length(pkg.code.number, _LENGTHS["Code/CodeNumber"], f"{MH}/Code/CodeNumber")
        yield from _length(
            pkg.code.notation, _LENGTHS["Code/CodeNotation"], f"{MH}/Code/CodeNotation"
        )
    if pkg.promulgation is not None:
        if pkg.promulgation.date is None:
            yield Problem(
                "missing_element",
                f"{MH}/PromulgationInfo/PromulgationDate",
                "PromulgationDate is required",
            )
        yield from _length(pkg.promulgation.place, 50, f"{MH}/PromulgationInfo/Place")
    if pkg.document_type is not None:
        yield from _length(pkg.document_type.type_name, 100, f"{MH}/DocumentType/TypeName")
    yield from _length(pkg.subject, 500, f"{MH}/Subject")
    yield from _length(pkg.content, 500, f"{MH}/Content")
    for i, place in enumerate(pkg.to_places, 1):
        yield from _length(place, 150, f"{MH}/ToPlaces/Place[{i}]")
    priority = pkg.other_info.priority if pkg.other_info else None
    if priority is not None and priority not in {"0", "1", "2", "3", "4"}:
        yield Problem(
            "unknown_priority",
            f"{MH}/OtherInfo/Priority",
            f"Priority {priority!r} is not 0-4",
            "warning",
        )
    yield from _business(pkg)
    yield from _attachments(pkg)


def _business(pkg: DocumentPackage) -> Iterator[Problem]:
    b = pkg.business
    if b is None:
        return
    path = f"{TRACE}/Bussiness"
    if (
        b.doc_type
        in (
            BusinessDocType.REVOCATION,
            BusinessDocType.UPDATE,
            BusinessDocType.REPLACEMENT,
        )
        and not b.document_id
    ):
        yield Problem(
            "missing_element",
            f"{path}/DocumentId",
            f"a {b.doc_type.name.lower()} package must name the earlier DocumentId",
        )
    if b.document_info is not None:
        for i, rc in enumerate(b.document_info.receivers, 1):
            rpath = f"{path}/BussinessDocumentInfo/ReceiverList/Receiver[{i}]"
            if rc.receiver_type not in ("0", "1"):
                yield Problem(
                    "invalid_receiver_type",
                    f"{rpath}/ReceiverType",
                    f"ReceiverType {rc.receiver_type!r} must be 0 (removed) or 1 (added)",
                )
            if rc.organ_id is not None:
                yield from _organ(Organization(rc.organ_id), rpath)


def _attachments(pkg: DocumentPackage) -> Iterator[Problem]:
    manifest = Counter(m.content_id for m in pkg.manifest)
    payload = Counter(a.content_id for a in pkg.attachments)
    for cid, n in manifest.items():
        if n > 1:
            yield Problem(
                "duplicate_content_id", MANIFEST, f"ContentId {cid!r} is listed {n} times"
            )
        if cid not in payload:
            yield Problem(
                "attachment_missing",
                f"{MANIFEST}/Reference",
                f"manifest entry {cid!r} has no attachment payload",
            )
    for cid, n in payload.items():
        if n > 1:
            yield Problem(
                "duplicate_content_id",
                "/edXML/AttachmentEncoded",
                f"attachment {cid!r} appears {n} times",
            )
        if cid not in manifest:
            yield Problem(
                "manifest_entry_missing",
                "/edXML/AttachmentEncoded/Attachment",
                f"attachment {cid!r} is not listed in the manifest",
            )


def _status(pkg: StatusPackage) -> Iterator[Problem]:
    yield from _organ(pkg.from_, f"{MH}/From")
    rf = pkg.response_for
    if rf is not None:
        if rf.organ_id is None:
            yield Problem(
                "missing_element",
                f"{MH}/ResponseFor/OrganId",
                "ResponseFor/OrganId is required: status packages are routed by it",
            )
        else:
            yield from _organ(Organization(rf.organ_id), f"{MH}/ResponseFor")
        if rf.document_id is None:
            yield Problem(
                "missing_element",
                f"{MH}/ResponseFor/DocumentId",
                "ResponseFor/DocumentId is required: it names the document concerned",
            )
    code = pkg.status_code
    if code is not None and code not in ns.STATUS_CODES:
        yield Problem(
            "unknown_status_code",
            f"{MH}/StatusCode",
            f"StatusCode {code!r} is not one of {', '.join(sorted(ns.STATUS_CODES))}",
        )
    if code in {"02", "13", "16"} and not pkg.description:
        yield Problem(
            "missing_description",
            f"{MH}/Description",
            f"status {code} should carry a Description with the reason",
            "warning",
        )
