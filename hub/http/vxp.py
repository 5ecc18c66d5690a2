"""The VXP face: the national axis's wire contract, served by the hub (VXP-API.md).

An agency's existing SDK works against the hub by changing its endpoint URL to
``http(s)://hub<base_path>``. Every operation authenticates with the VXP HMAC
(``hub.vxp.auth``) and takes its parameters from the signed JSON. Behind the face
are the same intake pipeline, inbox, delivery transitions and ledger as the native
API: this module only translates.

Identifiers: ``DocId`` returned by ``sendEdoc`` (and used by ``getSentEdocList``) is
the package id; the ``docId`` of a received item (``getEdoc``, ``updateStatus``,
``downloadEdoc``) is the delivery id. Both are UUIDs, so filename-safe.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any

import structlog
from aiohttp import web

from hub.edxml.ns import STATUS_MEANINGS
from hub.edxml.organ import classify
from hub.edxml.parser import Kind, kind_of
from hub.errors import (
    AuthenticationFailed,
    Forbidden,
    HubError,
    InputError,
    NetworkForbidden,
    NotFound,
)
from hub.http.app import HUB, error_headers, send_package, send_stream
from hub.http.native import read_body, receive, spooled
from hub.ports import Outgoing
from hub.records import INBOX_STATES, DeliveryRow, Event, Organ, PackageRow, State
from hub.service import delivery as dl
from hub.service.directory_admin import DirectoryAdmin
from hub.service.hub import Hub
from hub.service.intake import Submission
from hub.vxp import protocol as vxp
from hub.vxp.auth import SYSTEM_HEADER, VxpCaller, authenticate, header

log = structlog.get_logger(__name__)

Op = Callable[[Hub, VxpCaller, web.Request], Awaitable[web.StreamResponse]]
_STATE_DESC = {
    State.PENDING: "accepted, being routed",
    State.AVAILABLE: "waiting for the recipient",
    State.FETCHED: "taken by the recipient",
    State.DONE: "acknowledged by the recipient",
    State.FAILED_BY_RECIPIENT: "refused by the recipient",
    State.RETRYING: "delivery being retried",
    State.DEAD: "undeliverable",
}


def _time(us: int | None) -> str | None:
    if not us:
        return None
    return dt.datetime.fromtimestamp(us / 1e6, dt.UTC).isoformat(timespec="seconds")


def answer(body: dict[str, Any], status: int = 200) -> web.Response:
    return web.Response(
        body=vxp.dumps(body), status=status, content_type="application/json", charset="utf-8"
    )


def vxp_code(exc: HubError) -> str:
    return vxp.ERROR_CODES.get(exc.error_code, exc.vxp_code)


def _kind(params: dict[str, str]) -> Kind | None:
    return kind_of(vxp.pick(params, "messagetype"))


def _doc_id(params: dict[str, str]) -> str:
    exact, lower = params.get("docId"), params.get("docid")
    if exact and lower and exact != lower:
        # Both spellings, different values: the SDK leaked one from an earlier call.
        log.warning("vxp_doc_id_conflict", docId=exact, docid=lower, chosen=exact)
    value = exact or vxp.pick(params, "docId")
    if not value:
        raise InputError("docId is required", code="vxp_missing_doc_id")
    return value


async def _my_delivery(hub: Hub, vc: VxpCaller, doc_id: str) -> tuple[DeliveryRow, PackageRow]:
    d = await hub.store.delivery(doc_id)
    if d is None or d.recipient not in vc.caller.organs or d.route != "local":
        raise NotFound(f"no received document {doc_id}", code="document_not_found")
    p = await hub.store.package(d.package_id)
    if p is None:  # pragma: no cover - committed together
        raise NotFound(f"no received document {doc_id}", code="document_not_found")
    return d, p


# ---------------------------------------------------------------------- documents
def _file_of(raw_sha: str, trimmed_sha: str | None, declared: str, size: int) -> str:
    """Which bytes are the package, as the SHA-256 of the whole body (``raw_sha``) or of
    the body without its final CRLF (``trimmed_sha``, None when it does not end in one).

    The SDK appends one CRLF to the file; its hash-file covers the file alone. A client
    that did not append it, to a file that ends in one, is recognised by its hash-file.
    """
    sha = trimmed_sha or raw_sha
    if declared and vxp.hash_file_of(sha) != declared and vxp.hash_file_of(raw_sha) == declared:
        sha = raw_sha
    if size - (2 if sha != raw_sha else 0) <= 0:
        raise InputError("the request has no package", code="vxp_empty_body")
    if not declared:
        raise InputError("hash-file is required", code="vxp_hash_missing")
    if vxp.hash_file_of(sha) != declared:
        raise InputError("hash-file does not match the body", code="vxp_hash_mismatch")
    return sha


async def send_edoc(hub: Hub, vc: VxpCaller, request: web.Request) -> web.Response:
    started = time.perf_counter()
    caller, params = vc.caller, vc.params
    caller.require_role("agency")
    declared = (vxp.pick(params, "hash-file") or "").strip().lower()
    limit = hub.cfg.server.max_body_bytes + 2
    with (
        hub.uploads.hold(caller.system_id, large=spooled(request)),
        await receive(request, limit, hub.blobs, crlf=True) as got,
    ):
        sha = _file_of(got.sha256, got.trimmed_sha256, declared, got.size)
        if sha != got.sha256:
            await got.trim_crlf()
        sub = Submission(
            got.body, sha, None, hub.clock.now_us(), started, source="vxp", spool=got.spool
        )
        return await _send(hub, vc, sub)


async def _send(hub: Hub, vc: VxpCaller, sub: Submission) -> web.Response:
    """The checks after the bytes, then intake (the content says what it is: a leaked
    ``messagetype`` must not decide)."""
    caller, params = vc.caller, vc.params
    from_ = vxp.pick(params, "from")
    if from_:
        organ = hub.directory.current.resolve(from_)
        if organ is None or organ.organ_id not in caller.organs:
            raise Forbidden(
                f"system {caller.system_id} may not send as organ {from_!r}",
                code="sender_not_allowed",
            )
    result = await hub.intake.submit(sub, caller)
    return answer(vxp.ok(DocId=result.package.id))


def _received_item(d: DeliveryRow, p: PackageRow) -> dict[str, Any]:
    return {
        "docId": d.id,
        "serviceType": "eDoc",
        "messageType": p.kind,
        "created_time": _time(p.received_us),
        "updated_time": _time(d.updated_us),
        "from": p.sender_organ,
        "to": d.recipient,
        "status": str(d.state),
        "status_desc": _STATE_DESC[d.state],
    }


async def received_list(hub: Hub, vc: VxpCaller, request: web.Request) -> web.Response:
    items = await hub.store.inbox(
        sorted(vc.caller.organs),
        kind=_kind(vc.params),
        since_us=None,
        after_seq=None,
        limit=hub.cfg.vxp.list_limit,
        states=INBOX_STATES,
    )
    return answer(vxp.ok(data=[_received_item(i.delivery, i.package) for i in items]))


async def _take(hub: Hub, vc: VxpCaller) -> Outgoing:
    """The received document's bytes; the delivery becomes ``fetched``."""
    d, p = await _my_delivery(hub, vc, _doc_id(vc.params))
    body = await Outgoing.of(hub.blobs, p.sha256, p.size)
    await dl.mark_fetched(hub.store, hub.clock, d, vc.caller.actor)
    return body


async def get_edoc(hub: Hub, vc: VxpCaller, request: web.Request) -> web.StreamResponse:
    body = await _take(hub, vc)
    encoded = body.base64()
    if isinstance(encoded, bytes):
        return answer(vxp.ok(data=encoded.decode("ascii")))
    # A large package: the same JSON envelope, its base64 ``data`` encoded as the bytes
    # stream from the blob store (base64 needs no JSON escaping).
    head = vxp.dumps(vxp.ok(data=""))
    cut = head.rindex(b'"data":""') + len(b'"data":"')
    prefix, suffix = head[:cut], head[cut:]

    async def pieces() -> AsyncIterator[bytes]:
        yield prefix
        async for piece in encoded:
            yield piece
        yield suffix

    resp = web.StreamResponse(headers={"Content-Type": "application/json; charset=utf-8"})
    resp.content_length = len(prefix) + body.base64_size + len(suffix)
    return await send_stream(request, resp, pieces())


async def download_edoc(hub: Hub, vc: VxpCaller, request: web.Request) -> web.StreamResponse:
    return await send_package(request, await _take(hub, vc), {"Content-Type": "application/xml"})


async def update_status(hub: Hub, vc: VxpCaller, request: web.Request) -> web.Response:
    status = (vxp.pick(vc.params, "status") or "").lower()
    if status not in ("done", "fail", "processing"):
        raise InputError("status must be done, fail or processing", code="vxp_bad_status")
    d, _ = await _my_delivery(hub, vc, _doc_id(vc.params))
    actor = vc.caller.actor
    if status == "processing":
        if d.state not in INBOX_STATES:
            raise StatusBackwards(d.state)
        await dl.mark_fetched(hub.store, hub.clock, d, actor)
    else:
        reason = "updateStatus fail (VXP)" if status == "fail" else None
        await dl.acknowledge(hub.store, hub.clock, d, actor, result=status, reason=reason)
    return answer(vxp.ok())


class StatusBackwards(InputError):
    code = "vxp_status_backwards"
    http_status = 409
    vxp_code = "20"

    def __init__(self, state: State) -> None:
        super().__init__(f"the document is already {state}; a status cannot go backwards")


def _sent_items(p: PackageRow, ds: list[DeliveryRow]) -> list[dict[str, Any]]:
    out = []
    for d in ds:
        received = d.state in (State.FETCHED, State.DONE, State.FAILED_BY_RECIPIENT)
        out.append(
            {
                "serviceType": "eDoc",
                "messageType": p.kind,
                "senderDocId": p.id,
                "receiverDocId": d.id,
                "fromCode": p.sender_organ,
                "toCode": d.recipient,
                "title": p.subject,
                "notation": p.code,
                "sentTime": _time(p.received_us),
                "receivedTime": _time(d.updated_us) if received else None,
                "sendStatus": str(d.state),
                "sendStatusDesc": _STATE_DESC[d.state],
                "receiveStatus": d.business_status,
                "receiveStatusDesc": STATUS_MEANINGS.get(d.business_status or ""),
            }
        )
    return out


async def sent_list(hub: Hub, vc: VxpCaller, request: web.Request) -> web.Response:
    doc_id = vc.params.get("docId") or vxp.pick(vc.params, "docId")
    packages: list[PackageRow] = []
    if doc_id:
        p = await hub.store.package(doc_id)
        if p is not None and p.system_id == vc.caller.system_id:
            packages = [p]
        elif await _is_received(hub, vc, doc_id):
            # A docId leaked from an earlier getEdoc/updateStatus on the same SDK
            # object (§2.1): it names a received document, so it is not a filter.
            log.info("vxp_stale_parameter", name="docId", value=doc_id)
            doc_id = None
        else:
            raise NotFound(f"no sent document {doc_id}", code="document_not_found")
    if not doc_id:
        packages = await hub.store.sent(
            vc.caller.system_id, kind=_kind(vc.params), limit=hub.cfg.vxp.list_limit
        )
    items: list[dict[str, Any]] = []
    by_package = await hub.store.deliveries_of([p.id for p in packages])  # one query, not N
    for p in packages:
        items += _sent_items(p, by_package.get(p.id, []))
    return answer(vxp.ok(data=items))


async def _is_received(hub: Hub, vc: VxpCaller, doc_id: str) -> bool:
    d = await hub.store.delivery(doc_id)
    return d is not None and d.recipient in vc.caller.organs


async def count_edoc(hub: Hub, vc: VxpCaller, request: web.Request) -> web.Response:
    return await _count(hub, vc, "edoc")


async def count_status(hub: Hub, vc: VxpCaller, request: web.Request) -> web.Response:
    return await _count(hub, vc, "status")


async def _count(hub: Hub, vc: VxpCaller, kind: str) -> web.Response:
    n = await hub.store.inbox_count(sorted(vc.caller.organs), kind=kind, states=INBOX_STATES)
    return answer(vxp.ok(count=n))


# ---------------------------------------------------------------------- directory
def _forms(o: Organ) -> tuple[str | None, str | None]:
    """(QCVN 102 code, QĐ 20 code) of an organ, from its id and aliases."""
    c102 = qd20 = None
    for value in (o.organ_id, *o.aliases):
        try:
            form = classify(value).form
        except ValueError:
            continue
        if form == "qcvn102" and c102 is None:
            c102 = value
        elif form == "qd20" and qd20 is None:
            qd20 = value
    return c102, qd20


def _organs(hub: Hub, *, closed: bool = False) -> list[Organ]:
    d = hub.directory.current
    return sorted(
        (o for o in d.organs.values() if closed or not o.closed), key=lambda o: o.organ_id
    )


async def agencies(hub: Hub, vc: VxpCaller, request: web.Request) -> web.Response:
    items = [
        {
            "id": o.organ_id,
            "pid": o.parent,
            "code": o.organ_id,
            "name": o.name,
            "oldCode": next((a for a in o.aliases if a != o.organ_id), None),
        }
        for o in _organs(hub)
    ]
    return answer(vxp.ok(data=items))


async def agencies_qd20(hub: Hub, vc: VxpCaller, request: web.Request) -> web.Response:
    level = vxp.pick(vc.params, "level")
    items = []
    for o in _organs(hub):
        c102, qd20 = _forms(o)
        code = qd20 or o.organ_id
        if level and level.isdigit():
            try:
                if classify(code).level != int(level):
                    continue
            except ValueError:
                continue
        items.append({"id": o.organ_id, "code": code, "name": o.name, "code102": c102})
    return answer(vxp.ok(data=items))


async def units(hub: Hub, vc: VxpCaller, request: web.Request) -> web.Response:
    items = [
        {
            "id": o.organ_id,
            "pid": o.parent,
            "code": o.organ_id,
            "name": o.name,
            "centerCode": o.system_id,
            "modifyDate": _time(o.modified_us),
            "version": o.version,
            "deleted": o.closed,
            "isAgency": True,
        }
        for o in _organs(hub, closed=True)
    ]
    return answer(vxp.ok(data=items))


def _admin(hub: Hub, vc: VxpCaller) -> DirectoryAdmin:
    if not vc.caller.system.may_register:
        raise Forbidden(
            f"system {vc.caller.system_id} may not register or delete agencies",
            code="register_not_allowed",
        )
    return hub.directory_admin(vc.caller.actor)


async def register_agency(hub: Hub, vc: VxpCaller, request: web.Request) -> web.Response:
    admin = _admin(hub, vc)
    raw, _ = await read_body(request, 64 * 1024)
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"the agency is not valid JSON: {exc}", code="vxp_bad_agency") from exc
    if not isinstance(data, dict) or not str(data.get("code") or "").strip():
        raise InputError("the agency needs a code", code="vxp_bad_agency")
    code = str(data["code"]).strip()
    existing = hub.directory.current.resolve(code)
    if existing is not None and existing.system_id != vc.caller.system_id:
        raise Forbidden(f"organ {code} belongs to another system", code="organ_not_allowed")
    name = str(data.get("name") or code).strip()
    parent = str(data.get("pcode") or "").strip() or None
    if existing is not None and existing.organ_id == code:
        # Registered again (an SDK may do so at every start, or after deleteAgency): the
        # name and parent are the caller's; the aliases and push endpoint an administrator
        # set stay, and a deleted agency is open again.
        organ = replace(existing, name=name, parent=parent, location="local", closed=False)
    else:
        organ = Organ(code, name, vc.caller.system_id, "local", parent=parent)
    await admin.put_organ(organ)
    await hub.directory.load()
    return answer(vxp.ok())


async def delete_agency(hub: Hub, vc: VxpCaller, request: web.Request) -> web.Response:
    admin = _admin(hub, vc)
    code = vxp.pick(vc.params, "AgencyCode") or ""
    organ = hub.directory.current.resolve(code)
    if organ is None or organ.system_id != vc.caller.system_id:
        raise NotFound(f"no agency {code!r} of this system", code="organ_not_found")
    if not organ.closed:
        await admin.put_organ(replace(organ, closed=True))
        await hub.directory.load()
    return answer(vxp.ok())


OPS: dict[str, Op] = {
    "sendEdoc": send_edoc,
    "getReceivedEdocList": received_list,
    "getEdoc": get_edoc,
    "updateStatus": update_status,
    "getSentEdocList": sent_list,
    "countReceiveEdoc": count_edoc,
    "countReceiveStatus": count_status,
    "downloadEdoc": download_edoc,
    "getAgenciesList": agencies,
    "getAgenciesListQD20": agencies_qd20,
    "getSynchronizeUnit": units,
    "registerAgency": register_agency,
    "deleteAgency": delete_agency,
}
assert set(OPS) == set(vxp.OPERATIONS)


async def dispatch(request: web.Request) -> web.StreamResponse:
    hub = request.app[HUB]
    op = request.match_info["op"]
    download = op == "downloadEdoc"
    handler = OPS.get(op)
    try:
        if handler is None:
            raise NotFound(f"no VXP operation {op!r}", code="vxp_unknown_operation")
        if request.method not in (("GET", "POST") if download else ("POST",)):
            raise InputError(f"{op} is called with POST", code="vxp_bad_method")
        vc = await authenticate(
            request.raw_headers,
            hub.directory.current,
            hub.vxp_box,
            hub.store,
            now_us=hub.clock.now_us(),
            strict_window_s=hub.cfg.vxp.strict_window_s,
            peer=request.remote,
        )
        structlog.contextvars.bind_contextvars(system=vc.caller.system_id, vxp_op=op)
        if vc.previous_secret:
            hub.metrics.vxp_previous_secret.labels(vc.caller.system_id).inc()
            log.info("vxp_previous_secret_used")
        return await handler(hub, vc, request)
    except HubError as exc:
        if request.can_read_body and not request.content.at_eof():
            # Never drop the connection after a refusal: the SDK would re-POST blindly.
            await request.content.read(64 * 1024)
        await _record(hub, request, op, exc)
        headers = error_headers(exc)
        if download:  # the status is the SDK's only failure signal
            return web.Response(status=exc.http_status, headers=headers)
        desc = f"{exc.error_code}: {exc.message}"
        resp = answer(vxp.fail(vxp_code(exc), desc, DocId=""), exc.http_status)
        resp.headers.update(headers)
        return resp


async def _record(hub: Hub, request: web.Request, op: str, exc: HubError) -> None:
    """A ledger record of a refused VXP call (intake records its own refusals), and a
    refused ``sendEdoc`` of an authenticated system counted as the native face counts it."""
    if exc.recorded:
        return
    if op == "sendEdoc" and not isinstance(exc, AuthenticationFailed | NetworkForbidden):
        hub.intake.count_refusal(exc)
    claimed = header(request.raw_headers, SYSTEM_HEADER)
    signed_system = claimed.decode("utf-8", "replace")[:64] if claimed else None
    event = Event(
        "refused",
        hub.clock.now_us(),
        actor=f"vxp:{signed_system or 'unknown'}",
        data={"code": exc.error_code, "message": exc.message[:500], "op": op, "source": "vxp"},
    )
    try:
        await hub.store.append_events([event])
    except HubError as err:
        log.warning("refusal_not_recorded", code=exc.error_code, error=err.error_code)


def setup(app: web.Application, base_path: str) -> None:
    # Repeated slashes are collapsed: an endpoint with a trailing slash makes the SDK
    # send ``//sendEdoc``. Registered last so the native routes win.
    app.router.add_route("*", base_path.rstrip("/") + "{sep:/+}{op:[A-Za-z0-9]+}", dispatch)
