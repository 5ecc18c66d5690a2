"""Small packages built in tests (the SDK samples are used where they exist)."""

from __future__ import annotations

import datetime as dt

from hub.edxml.builder import build
from hub.edxml.dates import EdDate, EdTimestamp
from hub.edxml.model import (
    Attachment,
    Business,
    BusinessDocType,
    Code,
    DocumentPackage,
    DocumentType,
    ManifestReference,
    Organization,
    PromulgationInfo,
    ResponseFor,
    SignerInfo,
    StatusPackage,
    TraceHeader,
)

TS = EdTimestamp.of(dt.datetime(2026, 11, 23, 9, 30, 0))


def document(
    sender: str = "000.00.00.G22",
    to: tuple[str, ...] = ("000.00.00.H53", "000.00.05.H53"),
    *,
    payload: bytes = b"%PDF-1.7 demo attachment",
    business: Business | None = None,
) -> DocumentPackage:
    return DocumentPackage(
        from_=Organization(sender, "Van phong Chinh phu"),
        to=tuple(Organization(t, f"Co quan {t}") for t in to),
        code=Code("7816", "VPCP-TTĐT"),
        promulgation=PromulgationInfo("Hà Nội", EdDate.of(dt.date(2026, 11, 23))),
        document_type=DocumentType("1", "0", "Công văn"),
        subject="V/v kết nối, liên thông phần mềm quản lý văn bản",
        signer_info=SignerInfo("KT. BỘ TRƯỞNG", "Thứ trưởng", "Nguyễn Văn A"),
        document_id=f"{sender},2026/11/23,7816/VPCP-TTĐT",
        traces=(TraceHeader(sender, TS),),
        business=business or Business(BusinessDocType.NEW, paper="0"),
        manifest=(ManifestReference("1", "application/pdf", "cong van", "congvan.pdf"),),
        attachments=(
            Attachment.of(
                "1",
                payload,
                attachment_name="congvan.pdf",
                description="cong van",
                content_type="application/pdf",
            ),
        ),
    )


def status(code: str = "01", addressee: str = "000.00.00.G22") -> StatusPackage:
    return StatusPackage(
        from_=Organization("000.00.00.H53", "UBND tinh Tay Ninh"),
        response_for=ResponseFor(
            addressee,
            Code("7816", "VPCP-TTĐT"),
            EdDate.of(dt.date(2026, 11, 23)),
            f"{addressee},2026/11/23,7816/VPCP-TTĐT",
        ),
        status_code=code,
        timestamp=TS,
        description="Đã đến",
    )


def document_bytes(**kw: object) -> bytes:
    return build(document(**kw))  # type: ignore[arg-type]
