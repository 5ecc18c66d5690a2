"""A readable, JSON-ready summary of a parsed package (for ``inspect`` and metadata)."""

from __future__ import annotations

from typing import Any

from hub.edxml import ns
from hub.edxml.model import DocumentPackage, Organization
from hub.edxml.parser import ParsedPackage
from hub.edxml.rules import check


def _org(o: Organization) -> dict[str, Any]:
    return {"organ_id": o.organ_id, "name": o.organ_name}


def summarise(parsed: ParsedPackage, *, decode_attachments: bool = True) -> dict[str, Any]:
    pkg = parsed.package
    out: dict[str, Any] = {
        "kind": parsed.kind,
        "size": parsed.size,
        "sha256": parsed.sha256,
        "signature_form": parsed.signature_form,
        "from": _org(pkg.from_),
    }
    if isinstance(pkg, DocumentPackage):
        out |= {
            "to": [_org(o) for o in pkg.to],
            "document_id": pkg.document_id,
            "code": pkg.code.text if pkg.code else None,
            "subject": pkg.subject,
            "document_type": pkg.document_type.type_name if pkg.document_type else None,
            "promulgation_date": pkg.promulgation.date.raw
            if pkg.promulgation and pkg.promulgation.date
            else None,
            "due_date": pkg.due_date.raw if pkg.due_date else None,
            "priority": pkg.other_info.priority if pkg.other_info else None,
            "business_type": pkg.business_type.name.lower(),
            "business_document_id": pkg.business.document_id if pkg.business else None,
            "signer": pkg.signer_info.full_name if pkg.signer_info else None,
            "attachments": [],
        }
        for a in pkg.attachments:
            item: dict[str, Any] = {
                "content_id": a.content_id,
                "name": a.attachment_name,
                "declared_type": a.content_type,
            }
            if decode_attachments:
                try:
                    item["decoded_size"] = len(a.data())
                except ValueError as exc:
                    item["error"] = str(exc)
            out["attachments"].append(item)
    else:
        rf = pkg.response_for
        out |= {
            "status_code": pkg.status_code,
            "status_meaning": ns.STATUS_MEANINGS.get(pkg.status_code or ""),
            "addressee": pkg.addressee,
            "response_for_document_id": rf.document_id if rf else None,
            "response_for_code": rf.code.text if rf and rf.code else None,
            "description": pkg.description,
            "timestamp": pkg.timestamp.raw if pkg.timestamp else None,
        }
    out["problems"] = [p.as_dict() for p in check(parsed)]
    return out
