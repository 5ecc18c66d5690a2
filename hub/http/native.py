"""Native REST API (``/api/v1``): submit, inbox, fetch, metadata, acknowledge,
sender's view of deliveries, directory, and the administrator's resend.

Every handler authenticates first; access to a package is decided by
``_access``: the sending system, a system serving one of its recipients, or an
administrator / auditor. The OpenAPI document is ``schemas/openapi.json``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import structlog
from aiohttp import web

from hub.edxml.parser import kind_of, parse_package
from hub.edxml.summary import summarise
from hub.errors import Forbidden, Gone, HubError, InputError, NotFound
from hub.http.app import HUB, json_answer, peer_certificate, send_package
from hub.params import int_parameter
from hub.ports import STREAM_ABOVE, BlobStore, Outgoing, Spool
from hub.records import INBOX_STATES, DeliveryRow, InboxItem, PackageRow, State
from hub.service import delivery as dl
from hub.service.audit import iso
from hub.service.auth import Caller, authenticate
from hub.service.hub import Hub
from hub.service.intake import Submission
from hub.service.workdays import unanswered
from hub.streams import capped, check_declared, spool_hashed

log = structlog.get_logger(__name__)

OPENAPI = Path(__file__).resolve().parents[2] / "schemas" / "openapi.json"
_CHUNK = 256 * 1024


def authenticated(request: web.Request) -> tuple[Hub, Caller]:
    hub = request.app[HUB]
    caller = authenticate(
        hub.directory.current,
        request.headers.get("Authorization"),
        peer_certificate(request),
        peer=request.remote,
        now_us=hub.clock.now_us(),
    )
    structlog.contextvars.bind_contextvars(system=caller.system_id)
    return hub, caller


def _chunks(request: web.Request, limit: int) -> AsyncIterator[bytes]:
    return capped(request.content.iter_chunked(_CHUNK), request.content_length, limit)


async def _read_whole(request: web.Request, limit: int) -> bytes:
    """The body in memory, refused once over ``limit`` bytes."""
    return b"".join([chunk async for chunk in _chunks(request, limit)])


async def read_body(request: web.Request, limit: int) -> tuple[bytes, str]:
    """The body under ``limit`` bytes, and its SHA-256."""
    data = await _read_whole(request, limit)
    return data, hashlib.sha256(data).hexdigest()


async def read_spooled(
    request: web.Request, limit: int, blobs: BlobStore, *, crlf: bool = False
) -> tuple[Spool, str, str | None]:
    """Stream a large body to a spool file under ``limit`` bytes, hashing it as it arrives:
    memory holds one chunk, never the package. The caller discards the spool.

    Returns the spool, the body's SHA-256 and, with ``crlf``, the SHA-256 of the body
    without a final CRLF when it ends in one (the VXP SDK appends one to the file)."""
    check_declared(request.content_length, limit)  # before a spool file is made
    lagging = hashlib.sha256()  # everything but the last two bytes seen
    tail = b""

    async def watched() -> AsyncIterator[bytes]:
        nonlocal tail
        async for chunk in _chunks(request, limit):
            if crlf:
                held = tail + chunk
                lagging.update(held[:-2])
                tail = held[-2:]
            yield chunk

    spool, sha = await spool_hashed(watched(), blobs)
    trimmed = lagging.hexdigest() if crlf and tail == b"\r\n" else None
    return spool, sha, trimmed


@dataclass(slots=True)
class Received:
    """A request body: in memory when small, in a spool file when large (or of unknown
    length). ``trimmed_sha256``: of the body without its final CRLF, when asked for and it
    ends in one. Use it as a context manager: a spool not adopted by then is removed."""

    body: bytes
    spool: Spool | None
    sha256: str
    trimmed_sha256: str | None = None

    @property
    def size(self) -> int:
        return self.spool.size if self.spool is not None else len(self.body)

    async def trim_crlf(self) -> None:
        """Drop the final CRLF (the bytes' digest is then ``trimmed_sha256``)."""
        if self.spool is not None:
            await self.spool.trim(2)
        else:
            self.body = self.body[:-2]

    def __enter__(self) -> Received:
        return self

    def __exit__(self, *_exc: object) -> None:
        if self.spool is not None:
            self.spool.discard()  # refused or failed; after adoption the file has moved


def spooled(request: web.Request) -> bool:
    """A large body (or one of unknown length): it goes to a spool file, not to memory."""
    length = request.content_length
    return length is None or length > STREAM_ABOVE


async def receive(
    request: web.Request, limit: int, blobs: BlobStore, *, crlf: bool = False
) -> Received:
    """The body under ``limit`` bytes and its SHA-256; over ``STREAM_ABOVE`` (or of
    unknown length) it goes to disk and is never whole in memory."""
    if spooled(request):
        spool, sha, trimmed = await read_spooled(request, limit, blobs, crlf=crlf)
        return Received(b"", spool, sha, trimmed)
    if not crlf:
        body, sha = await read_body(request, limit)
        return Received(body, None, sha)
    # Both digests in one pass: of the body without its final two bytes, then of all.
    body = await _read_whole(request, limit)
    view = memoryview(body)
    digest = hashlib.sha256(view[:-2])
    trimmed = digest.hexdigest() if body.endswith(b"\r\n") else None
    digest.update(view[-2:] if len(body) >= 2 else view)
    return Received(body, None, digest.hexdigest(), trimmed)


def delivery_json(d: DeliveryRow) -> dict[str, Any]:
    return {
        "delivery_id": d.id,
        "recipient": d.recipient,
        "route": d.route,
        "state": str(d.state),
        "attempts": d.attempts,
        "next_attempt_at": iso(d.next_attempt_us),
        "updated_at": iso(d.updated_us),
        "last_error": d.last_error,
        "business_status": d.business_status,
        "business_status_at": iso(d.business_status_us),
    }


def package_json(p: PackageRow) -> dict[str, Any]:
    return {
        "id": p.id,
        "kind": p.kind,
        "sha256": p.sha256,
        "size": p.size,
        "sender": p.sender_organ,
        "received_at": iso(p.received_us),
        "document_id": p.document_id,
        "code": p.code,
        "subject": p.subject,
        "business_type": p.business_type,
        "status_code": p.status_code,
        "response_for_organ": p.response_for_organ,
        "related_package_id": p.related_package_id,
        "signature": p.signature,
    }


def _inbox_json(item: InboxItem) -> dict[str, Any]:
    return {
        **package_json(item.package),
        **delivery_json(item.delivery),
        "seq": item.delivery.seq,
    }


async def _access(
    hub: Hub, caller: Caller, package_id: str
) -> tuple[PackageRow, list[DeliveryRow]]:
    found = await hub.store.package_with_deliveries(package_id)
    if found is None:
        raise NotFound(f"no package {package_id}", code="package_not_found")
    p, ds = found
    if caller.system.role in ("admin", "auditor") or p.sender_organ in caller.organs:
        return p, ds
    mine = [d for d in ds if d.recipient in caller.organs]
    if not mine:
        # Same answer as for a missing package: do not reveal that it exists.
        raise NotFound(f"no package {package_id}", code="package_not_found")
    return p, mine


async def submit(request: web.Request) -> web.Response:
    started = time.perf_counter()
    hub, caller = authenticated(request)
    kind = request.query.get("kind")
    with contextlib.ExitStack() as held:  # the upload slot and the body, until answered
        try:
            caller.require_role("agency")
            if kind not in (None, "edoc", "status"):
                raise InputError("kind must be edoc or status", code="bad_kind")
            held.enter_context(hub.uploads.hold(caller.system_id, large=spooled(request)))
            got = held.enter_context(
                await receive(request, hub.cfg.server.max_body_bytes, hub.blobs)
            )
        except HubError as exc:  # refused before intake, which records its own refusals
            await hub.intake.record_refusal(
                caller,
                exc,
                source="native",
                declared_kind=kind_of(kind),
                size=request.content_length,
            )
            raise
        sub = Submission(
            got.body, got.sha256, kind_of(kind), hub.clock.now_us(), started, spool=got.spool
        )
        result = await hub.intake.submit(sub, caller)
    return json_answer(result.as_dict(), status=200 if result.duplicate else 202)


async def _json_body(request: web.Request) -> Any:
    try:
        return await request.json(loads=orjson.loads)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError("the body must be JSON", code="bad_json") from exc


async def json_object(request: web.Request) -> dict[str, Any]:
    """An optional JSON object body ({} when there is none)."""
    body = await _json_body(request) if request.can_read_body else {}
    if not isinstance(body, dict):
        raise InputError("the body must be a JSON object", code="bad_json")
    return body


def int_query(request: web.Request, name: str, default: int | None = None) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return default
    return int_parameter(name, raw)


async def inbox(request: web.Request) -> web.Response:
    hub, caller = authenticated(request)
    organ = request.query.get("organ")
    if organ:
        caller.require_organ(organ, action="read the inbox")
        organs = [organ]
    else:
        organs = sorted(caller.organs)
    since_us = None
    if since := request.query.get("since"):
        try:
            since_us = int(dt.datetime.fromisoformat(since).timestamp() * 1e6)
        except ValueError as exc:
            raise InputError("since must be an ISO 8601 date-time", code="bad_parameter") from exc
    kind = request.query.get("kind")
    if kind not in (None, "edoc", "status"):
        raise InputError("kind must be edoc or status", code="bad_parameter")
    limit = max(1, min(int_query(request, "limit", 100) or 100, 1000))
    states = INBOX_STATES
    if request.query.get("state") == "all":
        states = frozenset(State)
    items = await hub.store.inbox(
        organs,
        kind=kind,
        since_us=since_us,
        after_seq=int_query(request, "after"),
        limit=limit,
        states=states,
    )
    body = {
        "items": [_inbox_json(i) for i in items],
        "next": str(items[-1].delivery.seq) if len(items) == limit else None,
    }
    return json_answer(body)


async def fetch(request: web.Request) -> web.StreamResponse:
    hub, caller = authenticated(request)
    p, ds = await _access(hub, caller, request.match_info["id"])
    if p.purged_us is not None:
        raise Gone(
            f"the bytes of package {p.id} were purged under retention", code="package_purged"
        )
    headers = {
        "Content-Type": "application/xml",
        "X-Lienthong-Sha256": p.sha256,
        "X-Lienthong-Kind": p.kind,
        "ETag": f'"{p.sha256}"',
    }
    # A large package goes out in chunks straight from the blob store: memory stays at
    # one chunk per download, however many recipients fetch at once.
    body = await Outgoing.of(hub.blobs, p.sha256, p.size)
    await _mark_fetched(hub, caller, ds)
    return await send_package(request, body, headers)


async def _mark_fetched(hub: Hub, caller: Caller, ds: list[DeliveryRow]) -> None:
    for d in ds:
        if d.recipient in caller.organs:
            await dl.mark_fetched(hub.store, hub.clock, d, caller.actor)


_SUMMARIES: OrderedDict[str, dict[str, Any]] = OrderedDict()  # sha256 -> summary (LRU)
_SUMMARY_CACHE = 256


async def _summary(hub: Hub, p: PackageRow) -> dict[str, Any]:
    """The package's summary; bytes never change under a SHA-256, so it is cached."""
    cached = _SUMMARIES.get(p.sha256)
    if cached is not None:
        _SUMMARIES.move_to_end(p.sha256)
        return cached
    # A large package is parsed from its file, as it was on intake: never read whole.
    source: bytes | Path = (
        hub.blobs.local_path(p.sha256) if p.size > STREAM_ABOVE else await hub.blobs.get(p.sha256)
    )
    try:
        parsed = await asyncio.to_thread(parse_package, source, sha256=p.sha256)
    except FileNotFoundError as exc:
        raise NotFound("package bytes not found", code="blob_missing") from exc
    summary = summarise(parsed, decode_attachments=False)
    _SUMMARIES[p.sha256] = summary
    if len(_SUMMARIES) > _SUMMARY_CACHE:
        _SUMMARIES.popitem(last=False)
    return summary


async def metadata(request: web.Request) -> web.Response:
    hub, caller = authenticated(request)
    p, ds = await _access(hub, caller, request.match_info["id"])
    body = {
        **package_json(p),
        "summary": await _summary(hub, p),
        "deliveries": [delivery_json(d) for d in ds],
    }
    return json_answer(body)


async def deliveries(request: web.Request) -> web.Response:
    hub, caller = authenticated(request)
    p, ds = await _access(hub, caller, request.match_info["id"])
    # A document's notice of receipt is due by the end of a working day (Decree 30/2020).
    due = hub.calendar.due_us(p.received_us) if p.kind == "edoc" else None
    now = hub.clock.now_us()
    items = [
        {
            **delivery_json(d),
            "acknowledgement_overdue": due is not None
            and due <= now
            and unanswered(p.kind, d.business_status, str(d.state)),
        }
        for d in ds
    ]
    return json_answer(
        {"package_id": p.id, "acknowledgement_due_at": iso(due), "deliveries": items}
    )


async def ack(request: web.Request) -> web.Response:
    hub, caller = authenticated(request)
    body = await _json_body(request)
    if not isinstance(body, dict) or body.get("result") not in ("done", "fail"):
        raise InputError('result must be "done" or "fail"', code="bad_ack")
    if body["result"] == "fail" and not body.get("reason"):
        raise InputError("a failed acknowledgement needs a reason", code="reason_required")
    p, ds = await _access(hub, caller, request.match_info["id"])
    organ = body.get("organ")
    mine = [
        d for d in ds if d.recipient in caller.organs and (organ is None or d.recipient == organ)
    ]
    if not mine:
        raise Forbidden("only a recipient of this package may acknowledge it", code="not_recipient")
    out = [
        await dl.acknowledge(
            hub.store,
            hub.clock,
            d,
            caller.actor,
            result=body["result"],
            reason=body.get("reason"),
        )
        for d in mine
    ]
    return json_answer({"package_id": p.id, "deliveries": [delivery_json(d) for d in out]})


async def organs(request: web.Request) -> web.Response:
    hub, _ = authenticated(request)
    d = hub.directory.current
    items = [
        {
            "organ_id": o.organ_id,
            "name": o.name,
            "parent": o.parent,
            "location": o.location,
            "closed": o.closed,
            "aliases": list(o.aliases),
            "push": bool(o.push_url),
        }
        for o in sorted(d.organs.values(), key=lambda o: o.organ_id)
    ]
    return json_answer({"version": d.version, "organs": items})


async def resend(request: web.Request) -> web.Response:
    hub, caller = authenticated(request)
    caller.require_role("admin")
    body = await json_object(request)
    reason = str(body.get("reason") or "resent by an administrator")
    item = await dl.resend(hub.store, hub.clock, request.match_info["id"], caller.actor, reason)
    hub.relay.kick([item])
    d = await hub.store.delivery(request.match_info["id"])
    assert d is not None
    return json_answer(delivery_json(d), status=202)


async def openapi(request: web.Request) -> web.FileResponse:
    authenticated(request)
    return web.FileResponse(OPENAPI, headers={"Content-Type": "application/json"})


def setup(app: web.Application) -> None:
    r = app.router
    r.add_post("/api/v1/packages", submit)
    r.add_get("/api/v1/inbox", inbox)
    r.add_get("/api/v1/packages/{id}", fetch)
    r.add_get("/api/v1/packages/{id}/metadata", metadata)
    r.add_get("/api/v1/packages/{id}/deliveries", deliveries)
    r.add_post("/api/v1/packages/{id}/ack", ack)
    r.add_get("/api/v1/organs", organs)
    r.add_post("/api/v1/admin/deliveries/{id}/resend", resend)
    r.add_get("/api/v1/openapi.json", openapi)
