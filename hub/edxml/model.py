"""The edXML package model (EDXML.md sections 3, 4, 6, 7).

Plain frozen dataclasses: no XML types leak out. Optional text is ``None`` when
the element is absent or empty (empty elements mean "absent"). Integer codes that
producers disagree on (DocumentType, SteeringType, Priority) stay opaque strings.
"""

from __future__ import annotations

import base64
import binascii
import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hub.edxml.dates import EdDate, EdTimestamp


@dataclass(frozen=True, slots=True)
class Organization:
    organ_id: str | None
    organ_name: str | None = None
    organization_in_charge: str | None = None
    organ_add: str | None = None
    email: str | None = None
    telephone: str | None = None
    fax: str | None = None
    website: str | None = None


@dataclass(frozen=True, slots=True)
class Code:
    number: str | None
    notation: str | None

    @property
    def text(self) -> str:
        """Written together as số/ký hiệu, e.g. ``7816/VPCP-TTĐT``."""
        return "/".join(p for p in (self.number, self.notation) if p)


@dataclass(frozen=True, slots=True)
class PromulgationInfo:
    place: str | None
    date: EdDate | None


@dataclass(frozen=True, slots=True)
class DocumentType:
    type: str | None
    type_detail: str | None
    type_name: str | None


@dataclass(frozen=True, slots=True)
class SignerInfo:
    competence: str | None
    position: str | None
    full_name: str | None


@dataclass(frozen=True, slots=True)
class OtherInfo:
    priority: str | None = None
    sphere_of_promulgation: str | None = None
    typer_notation: str | None = None
    promulgation_amount: str | None = None
    page_amount: str | None = None
    direction: str | None = None
    appendixes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ResponseFor:
    organ_id: str | None
    code: Code | None
    promulgation_date: EdDate | None
    document_id: str | None


@dataclass(frozen=True, slots=True)
class TraceHeader:
    organ_id: str | None
    timestamp: EdTimestamp | None


@dataclass(frozen=True, slots=True)
class StaffInfo:
    department: str | None = None
    staff: str | None = None
    mobile: str | None = None
    email: str | None = None


class BusinessDocType(enum.IntEnum):
    NEW = 0
    REVOCATION = 1  # thu hồi
    UPDATE = 2  # cập nhật
    REPLACEMENT = 3  # thay thế


@dataclass(frozen=True, slots=True)
class ReceiverChange:
    organ_id: str | None
    receiver_type: str | None  # "0" removed, "1" added


@dataclass(frozen=True, slots=True)
class BusinessDocumentInfo:
    document_info: str | None = None
    document_receiver: str | None = None
    receivers: tuple[ReceiverChange, ...] = ()


@dataclass(frozen=True, slots=True)
class ReplacementInfo:
    document_id: str | None
    organ_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Business:
    doc_type: BusinessDocType | None
    reason: str | None = None
    document_info: BusinessDocumentInfo | None = None
    document_id: str | None = None
    staff_info: StaffInfo | None = None
    paper: str | None = None
    replacements: tuple[ReplacementInfo, ...] = ()


@dataclass(frozen=True, slots=True)
class ManifestReference:
    content_id: str  # normalised: leading "cid:" stripped
    content_type: str | None
    description: str | None
    attachment_name: str | None


@dataclass(frozen=True, slots=True)
class _Detached:
    """The loader of an attachment whose model crossed a process boundary."""

    content_id: str

    def __call__(self) -> str | None:
        raise RuntimeError(
            f"attachment {self.content_id!r} was examined in another process; its payload "
            "is read from the package's bytes, not from this model"
        )


@dataclass(frozen=True, slots=True, eq=False)
class Attachment:
    """An attachment whose payload is decoded only when ``data()`` is called.

    Holding a loader instead of the bytes keeps a 20 MB package from being
    copied into Python objects just to be routed.
    """

    content_id: str  # normalised
    attachment_name: str | None
    description: str | None
    content_type: str | None  # never trusted (EDXML.md section 7)
    loader: Callable[[], str | None] = field(repr=False)

    def data(self) -> bytes:
        """The decoded payload; ``ValueError`` when it is not base64."""
        text = self.loader() or ""
        compact = "".join(text.split())  # producers may wrap lines
        try:
            return base64.b64decode(compact, validate=True)
        except binascii.Error as exc:
            raise ValueError(f"attachment {self.content_id!r} is not valid base64") from exc

    @classmethod
    def of(
        cls,
        content_id: str,
        data: bytes,
        *,
        attachment_name: str | None = None,
        description: str | None = None,
        content_type: str | None = None,
    ) -> Attachment:
        encoded = base64.b64encode(data).decode("ascii")
        return cls(content_id, attachment_name, description, content_type, lambda: encoded)

    def _key(self) -> tuple[object, ...]:
        return (self.content_id, self.attachment_name, self.description, self.content_type)

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled (a package model handed back by another process) without its payload,
        # which stays with the tree it was parsed into: routing needs none of it.
        return (Attachment, (*self._key(), _Detached(self.content_id)))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Attachment):
            return NotImplemented
        return self._key() == other._key() and self.data() == other.data()

    def __hash__(self) -> int:
        return hash(self._key())


@dataclass(frozen=True, slots=True)
class DocumentPackage:
    """A document package (gói tin văn bản), messagetype ``edoc``."""

    from_: Organization
    to: tuple[Organization, ...]
    code: Code | None
    promulgation: PromulgationInfo | None
    document_type: DocumentType | None
    subject: str | None
    signer_info: SignerInfo | None
    document_id: str | None
    content: str | None = None
    due_date: EdDate | None = None
    to_places: tuple[str, ...] = ()
    other_info: OtherInfo | None = None
    response_for: tuple[ResponseFor, ...] = ()
    steering_type: str | None = None
    traces: tuple[TraceHeader, ...] = ()
    business: Business | None = None
    manifest: tuple[ManifestReference, ...] = ()
    attachments: tuple[Attachment, ...] = ()

    kind = "edoc"

    @property
    def business_type(self) -> BusinessDocType:
        """Absent business information means a new document."""
        if self.business is None or self.business.doc_type is None:
            return BusinessDocType.NEW
        return self.business.doc_type

    @property
    def recipients(self) -> tuple[str, ...]:
        return tuple(o.organ_id for o in self.to if o.organ_id)


@dataclass(frozen=True, slots=True)
class StatusPackage:
    """A status package (gói tin trạng thái), messagetype ``status``."""

    from_: Organization
    response_for: ResponseFor | None
    status_code: str | None  # normalised to two digits
    timestamp: EdTimestamp | None
    staff_info: StaffInfo | None = None
    description: str | None = None

    kind = "status"

    @property
    def addressee(self) -> str | None:
        """Status packages are routed by ``ResponseFor/OrganId``."""
        return self.response_for.organ_id if self.response_for else None


Package = DocumentPackage | StatusPackage
