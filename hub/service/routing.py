"""Routing: which deliveries a package makes, and what it is linked to.

* Document packages: one delivery per ``To``. A local organ goes to its inbox (or its
  push endpoint when it has one); an organ known as upstream goes to the national
  axis; an unknown or closed organ refuses the whole package (``unknown_recipient``,
  ``recipient_closed``), since a partial send would be hard for the clerk to see.
* Status packages: one delivery, to ``ResponseFor/OrganId``.
Aliases (old and new organ codes) resolve to the organ that now holds the code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from hub.edxml.model import BusinessDocType, DocumentPackage, Package, StatusPackage
from hub.errors import ValidationFailed
from hub.ports import Directory
from hub.records import Route


@dataclass(frozen=True, slots=True)
class Target:
    recipient: str  # the directory's organ id (aliases resolved)
    route: Route
    addressed_as: str  # the id as written in the package


def _problem(code: str, path: str, message: str) -> dict[str, str]:
    return {"code": code, "path": path, "message": message, "severity": "error"}


def targets(pkg: Package, directory: Directory, *, from_upstream: bool = False) -> list[Target]:
    """The deliveries to make. A package that came from the upstream axis is delivered
    only to this hub's own organs: the axis delivers to everyone else itself."""
    if isinstance(pkg, StatusPackage):
        wanted = [
            (pkg.addressee or "", "/edXML/edXMLEnvelope/edXMLHeader/MessageHeader/ResponseFor")
        ]
    else:
        wanted = [
            (o.organ_id or "", f"/edXML/edXMLEnvelope/edXMLHeader/MessageHeader/To[{i + 1}]")
            for i, o in enumerate(pkg.to)
        ]
    out: list[Target] = []
    problems: list[Mapping[str, str]] = []
    seen: set[str] = set()
    for organ_id, path in wanted:
        organ = directory.resolve(organ_id)
        if from_upstream and (organ is None or organ.location == "upstream"):
            continue
        if organ is None:
            problems.append(
                _problem("unknown_recipient", path, f"organ {organ_id!r} is not in the directory")
            )
            continue
        if organ.closed:
            problems.append(
                _problem(
                    "recipient_closed", path, f"organ {organ_id!r} is closed (merged or dissolved)"
                )
            )
            continue
        if organ.organ_id in seen:  # two aliases of one organ: one delivery
            continue
        seen.add(organ.organ_id)
        route: Route
        if organ.location == "upstream":
            route = "upstream"
        elif organ.push_url:
            route = "push"
        else:
            route = "local"
        out.append(Target(organ.organ_id, route, organ_id))
    if problems:
        # One routing code for the whole refusal: unknown wins over closed.
        codes = {p["code"] for p in problems}
        raise ValidationFailed(
            problems,
            code="unknown_recipient" if "unknown_recipient" in codes else "recipient_closed",
        )
    if not out:
        raise ValidationFailed(
            [_problem("no_local_recipient", wanted[0][1] if wanted else "", "no recipient here")],
            code="no_local_recipient",
        )
    return out


def dedupe_key(pkg: DocumentPackage | StatusPackage, sender: str) -> str | None:
    """Second de-duplication key (the first is the bytes' SHA-256 per sender).

    New documents: (sender, DocumentId). Types 1/2/3 reuse a known DocumentId on
    purpose, so they have none. Statuses: (From, ResponseFor document, code), except
    05 ("being processed"), which may repeat.
    """
    if isinstance(pkg, DocumentPackage):
        if pkg.business_type is BusinessDocType.NEW and pkg.document_id:
            return f"doc|{sender}|{pkg.document_id}"
        return None
    rf = pkg.response_for
    if pkg.status_code == "05" or rf is None:
        return None
    code = rf.code.text if rf.code else ""
    return f"status|{sender}|{rf.organ_id}|{rf.document_id}|{code}|{pkg.status_code}"
