"""Demonstration packages: ``make run``'s first package, tests and benchmarks.

Real-looking content (Vietnamese text, a PDF attachment) with parameters for the
parts that routing and de-duplication depend on.
"""

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
NOTATION = "VPCP-TTĐT"


def document_id(sender: str, number: str = "7816") -> str:
    return f"{sender},2026/11/23,{number}/{NOTATION}"


def document(
    sender: str = "000.00.00.G22",
    to: tuple[str, ...] = ("000.00.00.H53", "000.00.05.H53"),
    *,
    number: str = "7816",
    payload: bytes = b"%PDF-1.7 demo attachment",
    business: Business | None = None,
) -> DocumentPackage:
    return DocumentPackage(
        from_=Organization(sender, "Van phong Chinh phu"),
        to=tuple(Organization(t, f"Co quan {t}") for t in to),
        code=Code(number, NOTATION),
        promulgation=PromulgationInfo("Hà Nội", EdDate.of(dt.date(2026, 11, 23))),
        document_type=DocumentType("1", "0", "Công văn"),
        subject="V/v kết nối, liên thông phần mềm quản lý văn bản",
        signer_info=SignerInfo("KT. BỘ TRƯỞNG", "Thứ trưởng", "Nguyễn Văn A"),
        document_id=document_id(sender, number),
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


def status(
    code: str = "01",
    addressee: str = "000.00.00.G22",
    *,
    sender: str = "000.00.00.H53",
    number: str = "7816",
    timestamp: EdTimestamp = TS,
) -> StatusPackage:
    """A status from ``sender`` about ``addressee``'s document number ``number``."""
    return StatusPackage(
        from_=Organization(sender, "UBND tinh Tay Ninh"),
        response_for=ResponseFor(
            addressee,
            Code(number, NOTATION),
            EdDate.of(dt.date(2026, 11, 23)),
            document_id(addressee, number),
        ),
        status_code=code,
        timestamp=timestamp,
        description="Đã đến",
    )


def document_bytes(**kw: object) -> bytes:
    return build(document(**kw))  # type: ignore[arg-type]
