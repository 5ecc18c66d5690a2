"""Read an edXML tree into the model: by element name, never by position.

Producers order children differently and some declare the namespace with other
prefixes, so lookups are namespace-aware and prefix-agnostic. Structural
problems met on the way (missing or repeated elements, bad dates) are collected
as ``Problem``s with the element path; ``hub.edxml.rules`` adds the semantic
rules and decides.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeVar

from lxml import etree

from hub.edxml import ns
from hub.edxml.dates import EdDate, EdTimestamp, parse_date, parse_timestamp
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
    Package,
    PromulgationInfo,
    ReceiverChange,
    ReplacementInfo,
    ResponseFor,
    SignerInfo,
    StaffInfo,
    StatusPackage,
    TraceHeader,
)
from hub.edxml.problems import Problem
from hub.edxml.xmlsafe import DEFAULT_LIMITS, XmlLimits, read_xml
from hub.errors import MalformedXml

Kind = Literal["edoc", "status"]
SignatureForm = Literal["xmldsig", "placeholder", "absent"]


def kind_of(value: str | None) -> Kind | None:
    """A kind a transport declared (``kind``, ``messagetype``), or ``None`` for anything
    else: the content then says what the package is."""
    if value == "edoc":
        return "edoc"
    if value == "status":
        return "status"
    return None


_OK_NS = (ns.EDXML, None)
T = TypeVar("T")


def normalise_cid(value: str) -> str:
    """``cid:209`` and ``209`` name the same attachment."""
    v = value.strip()
    return v[4:] if v[:4].lower() == "cid:" else v


class _Node:
    """An element with its children grouped by local name (edXML or no namespace).

    The element path is worked out only when a problem names it: most packages have
    none, and about fifty path strings per package were built for nothing."""

    __slots__ = ("el", "groups", "parent", "step")

    def __init__(self, el: etree._Element, parent: _Node | None, step: str) -> None:
        self.el = el
        self.parent = parent
        self.step = step  # "To" or "To[2]": this element's step in its path
        groups: dict[str, list[etree._Element]] = {}
        names = _LOCAL_NAMES
        for child in el.iterchildren(tag=etree.Element):
            tag = child.tag
            local = names.get(tag, _UNSEEN)
            if local is _UNSEEN:
                local = _local_name(tag)
            if local is not None:
                found = groups.get(local)
                if found is None:
                    groups[local] = [child]
                else:
                    found.append(child)
        self.groups = groups

    @property
    def path(self) -> str:
        return f"{self.parent.path}/{self.step}" if self.parent is not None else f"/{self.step}"


_UNSEEN = ""  # sentinel: a tag not yet looked at (no local name is empty)
_LOCAL_NAMES: dict[str, str | None] = {}  # "{ns}Name" -> "Name", None for other namespaces


def _local_name(tag: str) -> str | None:
    nsuri, _, local = tag.rpartition("}")
    result = local if (nsuri[1:] if nsuri else None) in _OK_NS else None
    if len(_LOCAL_NAMES) < 4096:  # bounded: tags come from outside
        _LOCAL_NAMES[tag] = result
    return result


@dataclass(slots=True)
class _Reader:
    problems: list[Problem] = field(default_factory=list)

    def problem(self, code: str, path: str, message: str) -> None:
        self.problems.append(Problem(code, path, message))

    def node(self, parent: _Node, name: str, *, required: bool = False) -> _Node | None:
        found = parent.groups.get(name)
        if found is None:
            if required:
                self.problem("missing_element", f"{parent.path}/{name}", f"{name} is required")
            return None
        if len(found) > 1:
            self.problem(
                "repeated_element", f"{parent.path}/{name}", f"{name} may appear only once"
            )
        return _Node(found[0], parent, name)

    def nodes(self, parent: _Node, name: str) -> list[_Node]:
        found = parent.groups.get(name)
        if found is None:
            return []
        if len(found) == 1:
            return [_Node(found[0], parent, name)]
        return [_Node(e, parent, f"{name}[{i}]") for i, e in enumerate(found, 1)]

    def text(self, parent: _Node, name: str, *, required: bool = False) -> str | None:
        found = parent.groups.get(name)
        if found is None:
            value = None
        else:
            if len(found) > 1:
                self.problem(
                    "repeated_element", f"{parent.path}/{name}", f"{name} may appear only once"
                )
            value = found[0].text
            if value is not None:
                value = value.strip() or None
        if value is None and required:
            self.problem(
                "missing_element",
                f"{parent.path}/{name}",
                f"{name} is required and must not be empty",
            )
        return value

    def texts(self, parent: _Node, name: str) -> tuple[str, ...]:
        return tuple(t for e in parent.groups.get(name, []) if (t := _text(e)) is not None)

    def typed(
        self,
        parent: _Node,
        name: str,
        conv: Callable[[str], T],
        code: str,
        *,
        required: bool = False,
    ) -> T | None:
        raw = self.text(parent, name, required=required)
        if raw is None:
            return None
        try:
            return conv(raw)
        except ValueError as exc:
            self.problem(code, f"{parent.path}/{name}", str(exc))
            return None

    def date(self, parent: _Node, name: str) -> EdDate | None:
        return self.typed(parent, name, parse_date, "invalid_date")

    def timestamp(self, parent: _Node, name: str, *, required: bool = False) -> EdTimestamp | None:
        return self.typed(parent, name, parse_timestamp, "invalid_timestamp", required=required)


def _text(el: etree._Element) -> str | None:
    t = el.text
    if t is None:
        return None
    t = t.strip()
    return t or None


@dataclass(frozen=True, slots=True)
class ParsedPackage:
    """The exact received bytes next to their parsed form (never re-serialised).

    ``data`` is empty when the package was parsed from the file it was spooled to (a
    large upload); ``given_sha256`` and ``source_size`` then describe that file."""

    data: bytes
    given_sha256: str | None  # computed while the bytes streamed in, when they did
    tree: etree._ElementTree
    kind: Kind
    package: Package
    signature_form: SignatureForm
    problems: tuple[Problem, ...]
    signatures: tuple[etree._Element, ...] = ()  # every ds:Signature, wherever it stands
    source_size: int | None = None  # of the spooled file, when parsed from one

    @property
    def size(self) -> int:
        return len(self.data) if self.source_size is None else self.source_size

    @property
    def sha256(self) -> str:
        """The package's SHA-256; hashed here only when the caller did not stream it."""
        return self.given_sha256 or hashlib.sha256(self.data).hexdigest()


def parse_package(
    data: bytes | Path,
    *,
    limits: XmlLimits = DEFAULT_LIMITS,
    expected_kind: Kind | None = None,
    sha256: str | None = None,
) -> ParsedPackage:
    """Parse and classify one package. Raises ``MalformedXml`` for non-edXML input.

    ``expected_kind`` is the transport's ``messagetype``; a package whose content
    disagrees is refused. ``sha256`` may be passed when it was computed while the
    bytes streamed in; it is required with a ``Path`` (a spooled upload, parsed as it is
    read, never held in memory whole).
    """
    if isinstance(data, Path) and sha256 is None:
        raise ValueError("a spooled package needs the SHA-256 computed while it was written")
    tree = read_xml(data, limits)
    root = tree.getroot()
    if root.tag != ns.q("edXML"):
        raise MalformedXml(
            f"root element is {root.tag!r}; expected edXML in namespace {ns.EDXML}",
            code="not_edxml",
        )
    r = _Reader()
    top = _Node(root, None, "edXML")
    envelope = r.node(top, "edXMLEnvelope", required=True)
    header = r.node(envelope, "edXMLHeader", required=True) if envelope else None
    mh = r.node(header, "MessageHeader", required=True) if header else None
    if mh is None:
        raise MalformedXml(
            "no edXMLEnvelope/edXMLHeader/MessageHeader: this is not an edXML package",
            code="not_edxml",
        )
    is_status = "StatusCode" in mh.groups
    kind: Kind = "status" if is_status else "edoc"
    if expected_kind is not None and expected_kind != kind:
        raise MalformedXml(
            f"messagetype says {expected_kind!r} but the content is a {kind!r} package "
            "(status packages carry StatusCode and ResponseFor, documents carry To)",
            code="kind_mismatch",
        )
    signatures = tuple(root.iter(f"{{{ns.DSIG}}}Signature"))
    package: Package
    if is_status:
        package = _status(r, mh)
    else:
        assert header is not None and envelope is not None
        package = _document(r, top, envelope, header, mh)
    return ParsedPackage(
        data=b"" if isinstance(data, Path) else data,
        source_size=data.stat().st_size if isinstance(data, Path) else None,
        given_sha256=sha256,
        tree=tree,
        kind=kind,
        package=package,
        signature_form=_signature_form(signatures, header),
        signatures=signatures,
        problems=tuple(r.problems),
    )


def _signature_form(signatures: tuple[etree._Element, ...], header: _Node | None) -> SignatureForm:
    # Any XML-DSig signature anywhere counts as a real one: one moved out of the
    # header must be refused as misplaced, never taken for "unsigned".
    if signatures:
        return "xmldsig"
    if header is not None and ("Signature" in header.groups or "DigitalSignature" in header.groups):
        return "placeholder"
    return "absent"


def _organization(r: _Reader, n: _Node) -> Organization:
    return Organization(
        organ_id=r.text(n, "OrganId", required=True),
        organ_name=r.text(n, "OrganName"),
        organization_in_charge=r.text(n, "OrganizationInCharge"),
        organ_add=r.text(n, "OrganAdd"),
        email=r.text(n, "Email"),
        telephone=r.text(n, "Telephone"),
        fax=r.text(n, "Fax"),
        website=r.text(n, "Website"),
    )


def _code(r: _Reader, n: _Node) -> Code:
    if n.groups:
        return Code(r.text(n, "CodeNumber"), r.text(n, "CodeNotation"))
    # Status packages often write the code as one text "7816/VPCP-TTĐT".
    text = _text(n.el)
    if text is None:
        return Code(None, None)
    number, sep, notation = text.partition("/")
    return Code(number or None, notation or None) if sep else Code(text, None)


def _staff(r: _Reader, n: _Node | None) -> StaffInfo | None:
    if n is None:
        return None
    return StaffInfo(
        department=r.text(n, "Department"),
        staff=r.text(n, "Staff"),
        mobile=r.text(n, "Mobile"),
        email=r.text(n, "Email"),
    )


def _response_for(r: _Reader, n: _Node) -> ResponseFor:
    code = r.node(n, "Code")
    return ResponseFor(
        organ_id=r.text(n, "OrganId"),
        code=_code(r, code) if code else None,
        promulgation_date=r.date(n, "PromulgationDate"),
        document_id=r.text(n, "DocumentId"),
    )


def _document(r: _Reader, top: _Node, envelope: _Node, header: _Node, mh: _Node) -> DocumentPackage:
    from_ = r.node(mh, "From", required=True)
    to_nodes = r.nodes(mh, "To")
    if not to_nodes:
        r.problem("missing_element", f"{mh.path}/To", "at least one recipient (To) is required")
    code = r.node(mh, "Code", required=True)
    prom = r.node(mh, "PromulgationInfo", required=True)
    dtype = r.node(mh, "DocumentType", required=True)
    signer = r.node(mh, "SignerInfo", required=True)
    other = r.node(mh, "OtherInfo")
    to_places = r.node(mh, "ToPlaces")
    thl = r.node(header, "TraceHeaderList")
    return DocumentPackage(
        from_=_organization(r, from_) if from_ else Organization(None),
        to=tuple(_organization(r, t) for t in to_nodes),
        code=_code(r, code) if code else None,
        promulgation=PromulgationInfo(r.text(prom, "Place"), r.date(prom, "PromulgationDate"))
        if prom
        else None,
        document_type=DocumentType(
            r.text(dtype, "Type"), r.text(dtype, "TypeDetail"), r.text(dtype, "TypeName")
        )
        if dtype
        else None,
        subject=r.text(mh, "Subject", required=True),
        signer_info=SignerInfo(
            r.text(signer, "Competence"), r.text(signer, "Position"), r.text(signer, "FullName")
        )
        if signer
        else None,
        document_id=r.text(mh, "DocumentId", required=True),
        content=r.text(mh, "Content"),
        due_date=r.date(mh, "DueDate"),
        to_places=r.texts(to_places, "Place") if to_places else (),
        other_info=_other_info(r, other) if other else None,
        response_for=tuple(_response_for(r, n) for n in r.nodes(mh, "ResponseFor")),
        steering_type=r.text(mh, "SteeringType"),
        traces=tuple(
            TraceHeader(r.text(t, "OrganId"), r.timestamp(t, "Timestamp"))
            for t in r.nodes(thl, "TraceHeader")
        )
        if thl
        else (),
        business=_business(r, b) if thl and (b := r.node(thl, "Bussiness")) else None,
        manifest=_manifest(r, envelope),
        attachments=_attachments(r, top),
    )


def _other_info(r: _Reader, n: _Node) -> OtherInfo:
    apps = r.node(n, "Appendixes")
    return OtherInfo(
        priority=r.text(n, "Priority"),
        sphere_of_promulgation=r.text(n, "SphereOfPromulgation"),
        typer_notation=r.text(n, "TyperNotation"),
        promulgation_amount=r.text(n, "PromulgationAmount"),
        page_amount=r.text(n, "PageAmount"),
        direction=r.text(n, "Direction"),
        appendixes=r.texts(apps, "Appendix") if apps else (),
    )


def _doc_type(value: str) -> BusinessDocType:
    try:
        return BusinessDocType(int(value))
    except ValueError:
        raise ValueError(f"BussinessDocType {value!r} is not 0, 1, 2 or 3") from None


def _business(r: _Reader, n: _Node) -> Business:
    info = r.node(n, "BussinessDocumentInfo")
    rl = r.node(info, "ReceiverList") if info else None
    ril = r.node(n, "ReplacementInfoList")
    doc_type = r.typed(n, "BussinessDocType", _doc_type, "invalid_business_type", required=True)
    return Business(
        doc_type=doc_type,
        reason=r.text(n, "BussinessDocReason"),
        document_info=BusinessDocumentInfo(
            document_info=r.text(info, "DocumentInfo"),
            document_receiver=r.text(info, "DocumentReceiver"),
            receivers=tuple(
                ReceiverChange(r.text(x, "OrganId"), r.text(x, "ReceiverType"))
                for x in r.nodes(rl, "Receiver")
            )
            if rl
            else (),
        )
        if info
        else None,
        document_id=r.text(n, "DocumentId"),
        staff_info=_staff(r, r.node(n, "StaffInfo")),
        paper=r.text(n, "Paper"),
        replacements=tuple(
            ReplacementInfo(
                r.text(ri, "DocumentId"),
                r.texts(oil, "OrganId") if (oil := r.node(ri, "OrganIdList")) else (),
            )
            for ri in r.nodes(ril, "ReplacementInfo")
        )
        if ril
        else (),
    )


def _manifest(r: _Reader, envelope: _Node) -> tuple[ManifestReference, ...]:
    body = r.node(envelope, "edXMLBody")
    man = r.node(body, "edXMLManifest") if body else None
    if man is None:
        return ()
    return tuple(
        ManifestReference(
            content_id=normalise_cid(r.text(ref, "ContentId", required=True) or ""),
            content_type=r.text(ref, "ContentType"),
            description=r.text(ref, "Description"),
            attachment_name=r.text(ref, "AttachmentName"),
        )
        for ref in r.nodes(man, "Reference")
    )


def _attachments(r: _Reader, top: _Node) -> tuple[Attachment, ...]:
    enc = r.node(top, "AttachmentEncoded")
    if enc is None:
        return ()
    out = []
    for att in r.nodes(enc, "Attachment"):
        payload = att.groups.get("ContentTransferEncoded")
        if not payload:
            r.problem(
                "missing_element",
                f"{att.path}/ContentTransferEncoded",
                "attachment has no ContentTransferEncoded payload",
            )
        el = payload[0] if payload else None
        out.append(
            Attachment(
                content_id=normalise_cid(r.text(att, "ContentId", required=True) or ""),
                attachment_name=r.text(att, "AttachmentName"),
                description=r.text(att, "Description"),
                content_type=r.text(att, "ContentType"),
                # Bound to the element: the base64 text is read only when asked for.
                loader=_text_loader(el),
            )
        )
    return tuple(out)


def _text_loader(el: etree._Element | None) -> Callable[[], str | None]:
    def load() -> str | None:
        return el.text if el is not None else None

    return load


def _status_code(value: str) -> str:
    if not value.isdigit() or len(value) > 2:
        raise ValueError(f"StatusCode {value!r} is not a one- or two-digit code")
    return value.zfill(2)  # "1" is normalised to "01" on input


def _status(r: _Reader, mh: _Node) -> StatusPackage:
    from_ = r.node(mh, "From", required=True)
    rf = r.node(mh, "ResponseFor", required=True)
    if "To" in mh.groups:
        r.problem("unexpected_element", f"{mh.path}/To", "status packages must not carry To")
    return StatusPackage(
        from_=_organization(r, from_) if from_ else Organization(None),
        response_for=_response_for(r, rf) if rf else None,
        status_code=r.typed(mh, "StatusCode", _status_code, "invalid_status_code", required=True),
        timestamp=r.timestamp(mh, "Timestamp", required=True),
        staff_info=_staff(r, r.node(mh, "StaffInfo")),
        description=r.text(mh, "Description"),
    )
