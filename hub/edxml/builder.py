"""Build packages in exactly the SDK's layout: its prefixes, its order, its indentation.

The national axis is known to reject namespace-equivalent packages without the
literal ``edXML:`` prefixes, so the bytes are written directly rather than left to
a serialiser's prefix choices. Order follows the Government Office SDK's output
(``sdk_built_edoc_*.edxml``, ``status.edxml``); where the SDK sample shows no
order for an element (ResponseFor in documents, ReplacementInfoList), the choice
is documented in docs/edxml.md and encoded in ``schemas/``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from hub.edxml import ns
from hub.edxml.dates import EdDate, EdTimestamp
from hub.edxml.model import (
    Business,
    Code,
    DocumentPackage,
    Organization,
    OtherInfo,
    Package,
    ResponseFor,
    StaffInfo,
    StatusPackage,
)

_INVALID_XML_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"})


def _esc(value: str) -> str:
    if _INVALID_XML_CHARS.search(value):
        raise ValueError(f"text contains a character XML cannot carry: {value!r}")
    return value.translate(_ESCAPES)


class _Writer:
    def __init__(self) -> None:
        self.parts: list[str] = ['<?xml version="1.0" encoding="UTF-8"?>\n']

    def line(self, depth: int, text: str) -> None:
        self.parts.append("  " * depth + text + "\n")

    def leaf(self, depth: int, name: str, value: str | None, prefix: str = "edXML:") -> None:
        if value is not None:
            self.line(depth, f"<{prefix}{name}>{_esc(value)}</{prefix}{name}>")

    def open(self, depth: int, name: str, attrs: str = "") -> None:
        self.line(depth, f"<edXML:{name}{attrs}>")

    def close(self, depth: int, name: str) -> None:
        self.line(depth, f"</edXML:{name}>")

    def bytes(self) -> bytes:
        return "".join(self.parts).encode("utf-8")


def _date(d: EdDate | None) -> str | None:
    return d.raw if d else None


def _ts(t: EdTimestamp | None) -> str | None:
    return t.raw if t else None


def _org(w: _Writer, depth: int, tag: str, org: Organization) -> None:
    w.open(depth, tag)
    d = depth + 1
    w.leaf(d, "OrganId", org.organ_id)
    w.leaf(d, "OrganizationInCharge", org.organization_in_charge)
    w.leaf(d, "OrganName", org.organ_name)
    w.leaf(d, "OrganAdd", org.organ_add)
    w.leaf(d, "Email", org.email)
    w.leaf(d, "Telephone", org.telephone)
    w.leaf(d, "Fax", org.fax)
    w.leaf(d, "Website", org.website)
    w.close(depth, tag)


def _staff(w: _Writer, depth: int, s: StaffInfo | None) -> None:
    if s is None:
        return
    w.open(depth, "StaffInfo")
    w.leaf(depth + 1, "Department", s.department)
    w.leaf(depth + 1, "Staff", s.staff)
    w.leaf(depth + 1, "Email", s.email)
    w.leaf(depth + 1, "Mobile", s.mobile)
    w.close(depth, "StaffInfo")


def _code(w: _Writer, depth: int, code: Code | None, *, as_text: bool) -> None:
    if code is None or not code.text:
        return
    if as_text and code.number and code.notation:
        # The SDK writes ResponseFor/Code as one text "number/notation"; a lone part
        # would be ambiguous, so those use the structured form, which readers also accept.
        w.leaf(depth, "Code", code.text)
        return
    w.open(depth, "Code")
    w.leaf(depth + 1, "CodeNumber", code.number)
    w.leaf(depth + 1, "CodeNotation", code.notation)
    w.close(depth, "Code")


def _response_for(w: _Writer, depth: int, rf: ResponseFor) -> None:
    w.open(depth, "ResponseFor")
    w.leaf(depth + 1, "OrganId", rf.organ_id)
    _code(w, depth + 1, rf.code, as_text=True)
    w.leaf(depth + 1, "DocumentId", rf.document_id)
    w.leaf(depth + 1, "PromulgationDate", _date(rf.promulgation_date))
    w.close(depth, "ResponseFor")


def _other(w: _Writer, depth: int, o: OtherInfo) -> None:
    w.open(depth, "OtherInfo")
    d = depth + 1
    w.leaf(d, "Priority", o.priority)
    w.leaf(d, "SphereOfPromulgation", o.sphere_of_promulgation)
    w.leaf(d, "TyperNotation", o.typer_notation)
    w.leaf(d, "PromulgationAmount", o.promulgation_amount)
    w.leaf(d, "PageAmount", o.page_amount)
    w.leaf(d, "Direction", o.direction)
    if o.appendixes:
        w.open(d, "Appendixes")
        for a in o.appendixes:
            w.leaf(d + 1, "Appendix", a)
        w.close(d, "Appendixes")
    w.close(depth, "OtherInfo")


def _business(w: _Writer, depth: int, b: Business) -> None:
    w.open(depth, "Bussiness")
    d = depth + 1
    w.leaf(d, "DocumentId", b.document_id)
    w.leaf(d, "BussinessDocType", str(int(b.doc_type)) if b.doc_type is not None else None)
    w.leaf(d, "BussinessDocReason", b.reason)
    w.leaf(d, "Paper", b.paper)
    _staff(w, d, b.staff_info)
    if b.document_info is not None:
        info = b.document_info
        w.open(d, "BussinessDocumentInfo")
        w.leaf(d + 1, "DocumentInfo", info.document_info)
        w.leaf(d + 1, "DocumentReceiver", info.document_receiver)
        if info.receivers:
            w.open(d + 1, "ReceiverList")
            for rc in info.receivers:
                w.open(d + 2, "Receiver")
                w.leaf(d + 3, "OrganId", rc.organ_id)
                w.leaf(d + 3, "ReceiverType", rc.receiver_type)
                w.close(d + 2, "Receiver")
            w.close(d + 1, "ReceiverList")
        w.close(d, "BussinessDocumentInfo")
    if b.replacements:
        w.open(d, "ReplacementInfoList")
        for ri in b.replacements:
            w.open(d + 1, "ReplacementInfo")
            w.leaf(d + 2, "DocumentId", ri.document_id)
            if ri.organ_ids:
                w.open(d + 2, "OrganIdList")
                for oid in ri.organ_ids:
                    w.leaf(d + 3, "OrganId", oid)
                w.close(d + 2, "OrganIdList")
            w.close(d + 1, "ReplacementInfo")
        w.close(d, "ReplacementInfoList")
    w.close(depth, "Bussiness")


def _places(w: _Writer, depth: int, places: Iterable[str]) -> None:
    places = list(places)
    if places:
        w.open(depth, "ToPlaces")
        for p in places:
            w.leaf(depth + 1, "Place", p)
        w.close(depth, "ToPlaces")


def _document_header(w: _Writer, p: DocumentPackage) -> None:
    d = 4
    w.open(3, "MessageHeader")
    _org(w, d, "From", p.from_)
    for to in p.to:
        _org(w, d, "To", to)
    w.leaf(d, "DocumentId", p.document_id)
    _code(w, d, p.code, as_text=False)
    if p.promulgation is not None:
        w.open(d, "PromulgationInfo")
        w.leaf(d + 1, "Place", p.promulgation.place)
        w.leaf(d + 1, "PromulgationDate", _date(p.promulgation.date))
        w.close(d, "PromulgationInfo")
    if p.document_type is not None:
        w.open(d, "DocumentType")
        w.leaf(d + 1, "Type", p.document_type.type)
        w.leaf(d + 1, "TypeDetail", p.document_type.type_detail)
        w.leaf(d + 1, "TypeName", p.document_type.type_name)
        w.close(d, "DocumentType")
    w.leaf(d, "Subject", p.subject)
    w.leaf(d, "Content", p.content)
    if p.signer_info is not None:
        w.open(d, "SignerInfo")
        w.leaf(d + 1, "Competence", p.signer_info.competence)
        w.leaf(d + 1, "Position", p.signer_info.position)
        w.leaf(d + 1, "FullName", p.signer_info.full_name)
        w.close(d, "SignerInfo")
    w.leaf(d, "DueDate", _date(p.due_date))
    if p.other_info is not None:
        _other(w, d, p.other_info)
    for rf in p.response_for:
        _response_for(w, d, rf)
    w.leaf(d, "SteeringType", p.steering_type)
    _places(w, d, p.to_places)
    w.close(3, "MessageHeader")
    if p.business is not None or p.traces:
        w.open(3, "TraceHeaderList")
        if p.business is not None:
            _business(w, d, p.business)
        for t in p.traces:
            w.open(d, "TraceHeader")
            w.leaf(d + 1, "OrganId", t.organ_id)
            w.leaf(d + 1, "Timestamp", _ts(t.timestamp))
            w.close(d, "TraceHeader")
        w.close(3, "TraceHeaderList")


def _status_header(w: _Writer, p: StatusPackage) -> None:
    d = 4
    w.open(3, "MessageHeader")
    _org(w, d, "From", p.from_)
    if p.response_for is not None:
        _response_for(w, d, p.response_for)
    _staff(w, d, p.staff_info)
    w.leaf(d, "StatusCode", p.status_code)
    w.leaf(d, "Description", p.description)
    w.leaf(d, "Timestamp", _ts(p.timestamp))
    w.close(3, "MessageHeader")


def build(package: Package) -> bytes:
    """Serialise a package, unsigned, in the SDK's exact layout (UTF-8 bytes)."""
    w = _Writer()
    w.line(0, f'<edXML xmlns="{ns.EDXML}">')
    w.line(1, f'<edXML:edXMLEnvelope xmlns:edXML="{ns.EDXML}">')
    w.open(2, "edXMLHeader")
    if isinstance(package, DocumentPackage):
        _document_header(w, package)
    else:
        _status_header(w, package)
    w.close(2, "edXMLHeader")
    if isinstance(package, DocumentPackage):
        w.open(2, "edXMLBody")
        w.open(3, "edXMLManifest", ' version="1.0"')
        for m in package.manifest:
            w.open(4, "Reference")
            w.leaf(5, "ContentId", f"cid:{m.content_id}")
            w.leaf(5, "ContentType", m.content_type)
            w.leaf(5, "Description", m.description)
            w.leaf(5, "AttachmentName", m.attachment_name)
            w.close(4, "Reference")
        w.close(3, "edXMLManifest")
        w.close(2, "edXMLBody")
    w.line(1, "</edXML:edXMLEnvelope>")
    if isinstance(package, DocumentPackage) and package.attachments:
        w.line(1, "<AttachmentEncoded>")
        for a in package.attachments:
            w.line(2, "<Attachment>")
            w.leaf(3, "ContentId", f"cid:{a.content_id}", prefix="")
            w.leaf(3, "AttachmentName", a.attachment_name, prefix="")
            w.leaf(3, "Description", a.description, prefix="")
            w.leaf(3, "ContentType", a.content_type, prefix="")
            payload = a.loader() or ""
            w.line(
                3,
                f'<edXML:ContentTransferEncoded xmlns:edXML="{ns.EDXML}">'
                f"{payload}</edXML:ContentTransferEncoded>",
            )
            w.line(2, "</Attachment>")
        w.line(1, "</AttachmentEncoded>")
    w.line(0, "</edXML>")
    return w.bytes()
