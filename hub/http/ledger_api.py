"""Ledger, audit and evidence endpoints (``/api/v1/ledger``, ``/api/v1/audit``).

Auditors and administrators read; only administrators place or lift legal holds.
Audit queries and exports are recorded as ledger events before they answer.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from hub.errors import InputError
from hub.http.app import HUB, json_answer, send_stream
from hub.http.native import authenticated, delivery_json, int_query, json_object, package_json
from hub.ledger import evidence, proofs
from hub.records import AuditQuery, AuditRow, LedgerEvent
from hub.service import audit
from hub.service.audit import iso
from hub.service.auth import Caller
from hub.service.hub import Hub

_READERS = ("admin", "auditor")


def audit_json(row: AuditRow) -> dict[str, Any]:
    return {
        **package_json(row.package),
        "purged_at": iso(row.package.purged_us),
        "legal_hold": row.held,
        "deliveries": [delivery_json(d) for d in row.deliveries],
    }


def event_json(e: LedgerEvent) -> dict[str, Any]:
    return {
        "seq": e.seq,
        "type": e.type,
        "at": iso(e.at_us),
        "delivery_id": e.delivery_id,
        "organ": e.organ,
        "actor": e.actor,
        "data": json.loads(e.data_json),
    }


async def checkpoint(request: web.Request) -> web.Response:
    hub, _ = authenticated(request)  # any authenticated system may see the signed tree head
    cp = await hub.store.latest_checkpoint()
    if cp is None:
        return json_answer({"checkpoint": None})
    return json_answer(
        {"checkpoint": proofs.checkpoint_json(cp), "certificates": hub.signer.chain_pem()}
    )


def _required_int(request: web.Request, name: str) -> int:
    value = int_query(request, name)
    if value is None:
        raise InputError(f"{name} is required", code="bad_parameter")
    return value


async def inclusion(request: web.Request) -> web.Response:
    hub, caller = authenticated(request)
    caller.require_role(*_READERS)
    seq = _required_int(request, "seq")
    return json_answer(
        (await proofs.inclusion(hub.store, seq, int_query(request, "size"))).as_dict()
    )


async def consistency(request: web.Request) -> web.Response:
    hub, caller = authenticated(request)
    caller.require_role(*_READERS)
    old = _required_int(request, "old")
    return json_answer(await proofs.consistency(hub.store, old, int_query(request, "new")))


async def events(request: web.Request) -> web.Response:
    hub, caller = authenticated(request)
    caller.require_role(*_READERS)
    rows = await hub.store.package_ledger_events(request.match_info["id"])
    return json_answer(
        {"package_id": request.match_info["id"], "events": [event_json(r) for r in rows]}
    )


async def evidence_bundle(request: web.Request) -> web.StreamResponse:
    hub, caller = authenticated(request)
    caller.require_role(*_READERS)
    return await send_evidence(request, hub, caller, request.match_info["id"])


async def send_evidence(
    request: web.Request, hub: Hub, caller: Caller, pid: str
) -> web.StreamResponse:
    """An evidence bundle as an attachment, written as the package's bytes are read (a
    64 MB package is never in memory whole); the export is an ``audit_query`` event."""
    bundle = await evidence.export_bundle(hub.store, hub.blobs, pid)
    actor = caller.actor
    await audit.record(hub.store, hub.clock, actor, AuditQuery(), f"evidence:{pid}")
    resp = web.StreamResponse(
        headers={
            "Content-Type": "application/json",
            "Content-Disposition": f'attachment; filename="evidence-{pid}.json"',
        }
    )
    resp.content_length = bundle.size
    return await send_stream(request, resp, bundle.chunks())


async def audit_packages(request: web.Request) -> web.Response:
    _, caller = authenticated(request)
    caller.require_role(*_READERS)
    limit = max(1, min(int_query(request, "limit", 100) or 100, 1000))
    rows, nxt = await audit_page(request, caller, request.query, limit)
    return json_answer({"items": [audit_json(r) for r in rows], "next": nxt})


def _overdue_before(hub: Hub) -> int:
    return hub.calendar.overdue_before(hub.clock.now_us())


async def audit_page(
    request: web.Request, caller: Caller, params: Mapping[str, str], limit: int
) -> tuple[list[AuditRow], str | None]:
    """One page of an audit query (recorded); the API and the console share it."""
    hub = request.app[HUB]
    return await audit.page(
        hub.store,
        hub.clock,
        caller.actor,
        audit.parse_query(params, overdue_before_us=_overdue_before(hub)),
        after=request.query.get("after"),
        limit=limit,
    )


async def stream_export(
    request: web.Request, caller: Caller, params: Mapping[str, str], filename: str
) -> web.StreamResponse:
    """Stream an audit export (CSV or JSON Lines); the API and the console share it."""
    hub = request.app[HUB]
    fmt = request.match_info["fmt"]
    query = audit.parse_query(params, overdue_before_us=_overdue_before(hub))
    chunks = audit.export(hub.store, hub.clock, caller.actor, query, fmt)
    # The first step validates the format and records the export; a JSON Lines export
    # that matches nothing ends there, an empty body.
    first = await anext(chunks, b"")
    resp = web.StreamResponse(
        headers={
            "Content-Type": "text/csv; charset=utf-8" if fmt == "csv" else "application/x-ndjson",
            "Content-Disposition": f'attachment; filename="{filename}.{fmt}"',
        }
    )
    return await send_stream(request, resp, chunks, first=first)


async def audit_export(request: web.Request) -> web.StreamResponse:
    _, caller = authenticated(request)
    caller.require_role(*_READERS)
    return await stream_export(request, caller, request.query, "audit")


async def hold(request: web.Request) -> web.Response:
    hub, caller = authenticated(request)
    caller.require_role("admin")
    pid = request.match_info["id"]
    reason = None
    if request.method == "POST":
        reason = str((await json_object(request)).get("reason") or "").strip()
        if not reason:
            raise InputError("a legal hold needs a reason", code="reason_required")
    changed = await hub.retention.hold(pid, reason, caller.actor)
    return json_answer({"package_id": pid, "legal_hold": reason is not None, "changed": changed})


def setup(app: web.Application) -> None:
    r = app.router
    r.add_get("/api/v1/ledger/checkpoint", checkpoint)
    r.add_get("/api/v1/ledger/proof/inclusion", inclusion)
    r.add_get("/api/v1/ledger/proof/consistency", consistency)
    r.add_get("/api/v1/packages/{id}/events", events)
    r.add_get("/api/v1/packages/{id}/evidence", evidence_bundle)
    r.add_get("/api/v1/audit/packages", audit_packages)
    r.add_get("/api/v1/audit/packages.{fmt}", audit_export)
    r.add_post("/api/v1/admin/packages/{id}/hold", hold)
    r.add_delete("/api/v1/admin/packages/{id}/hold", hold)
