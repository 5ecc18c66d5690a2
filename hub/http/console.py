"""The admin console (``/admin``): server-rendered pages for administrators and auditors.

Dashboard, message log search, package timeline (with resend and legal hold for
administrators), directory, ledger status and verification. Sessions are signed
cookies (``hub.service.sessions``); every form carries a CSRF token; every search and
timeline view is an ``audit_query`` event and every change an administrative event,
exactly as through the API.
"""

from __future__ import annotations

import asyncio
import functools
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web

from hub.errors import (
    AuthenticationFailed,
    Forbidden,
    HubError,
    InputError,
    NetworkForbidden,
    SystemSuspended,
)
from hub.http.app import HUB, log_credential_refusal
from hub.http.i18n import LANGS, translator
from hub.http.ledger_api import audit_page, send_evidence, stream_export
from hub.ledger.proofs import checkpoint_json
from hub.ledger.verify import Report, verify_ledger
from hub.records import AuditQuery, Event, State
from hub.service import audit
from hub.service import delivery as dl
from hub.service.audit import iso
from hub.service.auth import Caller, access_ends, authenticate
from hub.service.hub import Hub
from hub.service.sessions import COOKIE, LIFETIME_S, require_console_role

LANG_COOKIE = "lt_lang"
_HOUR_US = 3600 * 1_000_000


@dataclass
class VerifyState:
    running: bool = False
    report: Report | None = None
    at_us: int | None = None
    by: str | None = None
    task: asyncio.Task[None] | None = field(default=None, repr=False)


VERIFY = web.AppKey("console_verify", VerifyState)


def _lang(request: web.Request) -> str:
    lang = request.query.get("lang") or request.cookies.get(LANG_COOKIE) or "vi"
    return lang if lang in LANGS else "vi"


def _session(request: web.Request) -> tuple[Hub, Caller, str]:
    hub = request.app[HUB]
    cookie = request.cookies.get(COOKIE, "")
    try:
        caller = hub.sessions.open(
            hub.directory.current, cookie, peer=request.remote, now=hub.clock.now_us() / 1e6
        )
    except (NetworkForbidden, SystemSuspended):
        raise  # not a matter of logging in again: answered 403 and logged
    except (AuthenticationFailed, Forbidden) as exc:
        raise web.HTTPSeeOther(f"/admin/login?next={request.path}") from exc
    return hub, caller, cookie


def _render(
    request: web.Request,
    template: str,
    ctx: dict[str, Any],
    *,
    caller: Caller | None = None,
    cookie: str = "",
    status: int = 200,
) -> web.Response:
    hub = request.app[HUB]
    lang = _lang(request)
    base = {
        "t": translator(lang),
        "lang": lang,
        "caller": caller,
        "is_admin": caller is not None and caller.system.role == "admin",
        "csrf": hub.sessions.csrf(cookie) if cookie else "",
        "iso": iso,
        "path": request.path,
    }
    resp = aiohttp_jinja2.render_template(template, request, {**base, **ctx}, status=status)
    if "lang" in request.query and lang == request.query["lang"]:
        resp.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, samesite="Strict", httponly=True)
    return resp


async def _form(request: web.Request, cookie: str) -> dict[str, str]:
    form = await request.post()
    hub = request.app[HUB]
    if not hub.sessions.csrf_ok(cookie, str(form.get("csrf", ""))):
        raise Forbidden("the form expired; reload the page", code="csrf_failed")
    return {k: str(v) for k, v in form.items()}


# ------------------------------------------------------------------ login
async def login_page(request: web.Request) -> web.Response:
    return _render(request, "login.html", {"error": None, "next": request.query.get("next", "")})


async def login(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    form = await request.post()
    token = str(form.get("token", "")).strip()
    nxt = str(form.get("next", ""))
    try:
        caller = authenticate(
            hub.directory.current, f"Bearer {token}", peer=request.remote, now_us=hub.clock.now_us()
        )
        require_console_role(caller)
    except HubError as exc:
        await hub.store.append_events(
            [
                Event(
                    "refused",
                    hub.clock.now_us(),
                    actor="console",
                    data={"code": exc.error_code, "message": "console login refused"},
                )
            ]
        )
        ctx = {"error": exc.message, "next": nxt}
        return _render(request, "login.html", ctx, status=exc.http_status)
    await hub.store.append_events([Event("console_login", hub.clock.now_us(), actor=caller.actor)])
    resp = web.HTTPSeeOther(nxt if nxt.startswith("/admin/") else "/admin/")
    resp.set_cookie(
        COOKIE,
        hub.sessions.issue(caller, hub.clock.now_us() / 1e6),
        max_age=LIFETIME_S,
        httponly=True,
        samesite="Strict",
        secure=request.secure,
        path="/admin",
    )
    raise resp


async def logout(request: web.Request) -> web.Response:
    _, _, cookie = _session(request)
    await _form(request, cookie)
    resp = web.HTTPSeeOther("/admin/login")
    resp.del_cookie(COOKIE, path="/admin")
    raise resp


# ------------------------------------------------------------------ pages
async def dashboard(request: web.Request) -> web.Response:
    hub, caller, cookie = _session(request)
    now = hub.clock.now_us()
    stats = await hub.stats(now)
    hour = await hub.store.intake_counts(now - _HOUR_US)
    day = await hub.store.intake_counts(now - 24 * _HOUR_US)
    dead = await hub.store.audit(AuditQuery(state=str(State.DEAD)), after=None, limit=20)
    ctx = {
        "stats": stats,
        "hour": hour,
        "day": day,
        "dead": dead,
        "dead_letters": await hub.broker.dead_count(),
    }
    return _render(request, "dashboard.html", ctx, caller=caller, cookie=cookie)


def _log_params(request: web.Request) -> dict[str, str]:
    return {k: request.query[k] for k in audit.FILTER_NAMES if request.query.get(k)}


async def log_page(request: web.Request) -> web.Response:
    _, caller, cookie = _session(request)
    params = _log_params(request)
    rows: list[Any] = []
    nxt = None
    error = None
    searched = bool(params) or "search" in request.query
    if searched:
        try:
            rows, nxt = await audit_page(request, caller, params, 50)
        except InputError as exc:
            error = exc.message
    ctx = {
        "params": params,
        "rows": rows,
        "next": nxt,
        "searched": searched,
        "error": error,
        "states": [str(s) for s in State],
    }
    return _render(request, "log.html", ctx, caller=caller, cookie=cookie)


async def log_export(request: web.Request) -> web.StreamResponse:
    _, caller, _ = _session(request)
    return await stream_export(request, caller, _log_params(request), "lienthong-log")


async def package_page(request: web.Request) -> web.Response:
    hub, caller, cookie = _session(request)
    pid = request.match_info["id"]
    found = await hub.store.package_with_deliveries(pid)
    if found is None:
        raise web.HTTPNotFound(text=f"no package {pid}")
    p, deliveries = found
    await audit.record(hub.store, hub.clock, caller.actor, AuditQuery(), f"timeline:{pid}")
    ctx = {
        "p": p,
        "deliveries": deliveries,
        "events": await hub.store.package_ledger_events(pid),
        "hold": await hub.store.hold_reason(pid),
        "message": request.query.get("msg"),
    }
    return _render(request, "package.html", ctx, caller=caller, cookie=cookie)


async def resend(request: web.Request) -> web.Response:
    hub, caller, cookie = _session(request)
    caller.require_role("admin")
    form = await _form(request, cookie)
    pid, did = request.match_info["id"], request.match_info["delivery"]
    reason = form.get("reason") or "resent from the console"
    item = await dl.resend(hub.store, hub.clock, did, caller.actor, reason)
    hub.relay.kick([item])
    raise web.HTTPSeeOther(f"/admin/packages/{pid}?msg=resent")


async def hold(request: web.Request) -> web.Response:
    hub, caller, cookie = _session(request)
    caller.require_role("admin")
    form = await _form(request, cookie)
    pid = request.match_info["id"]
    reason = form.get("reason", "").strip() or None
    if form.get("action") == "place" and reason is None:
        raise InputError("a legal hold needs a reason", code="reason_required")
    await hub.retention.hold(pid, reason if form.get("action") == "place" else None, caller.actor)
    raise web.HTTPSeeOther(f"/admin/packages/{pid}?msg=hold")


async def evidence_download(request: web.Request) -> web.StreamResponse:
    hub, caller, _ = _session(request)
    return await send_evidence(request, hub, caller, request.match_info["id"])


async def directory_page(request: web.Request) -> web.Response:
    hub, caller, cookie = _session(request)
    d = hub.directory.current
    ctx = {
        "organs": sorted(d.organs.values(), key=lambda o: o.organ_id),
        "systems": sorted(d.systems.values(), key=lambda s: s.system_id),
        "version": d.version,
        # Per system, when its bearer tokens stop working (the alert's figure, as a date).
        "tokens_until": access_ends(d.credentials.values()),
        "now_s": hub.clock.now_us() / 1e6,
        "inf": math.inf,
    }
    return _render(request, "directory.html", ctx, caller=caller, cookie=cookie)


async def suspend_system(request: web.Request) -> web.Response:
    hub, caller, cookie = _session(request)
    caller.require_role("admin")
    form = await _form(request, cookie)
    admin = hub.directory_admin(caller.actor)
    await admin.suspend(request.match_info["id"], form.get("reason", ""))
    await hub.directory.refresh()
    raise web.HTTPSeeOther("/admin/directory")


async def resume_system(request: web.Request) -> web.Response:
    hub, caller, cookie = _session(request)
    caller.require_role("admin")
    await _form(request, cookie)
    await hub.directory_admin(caller.actor).resume(request.match_info["id"])
    await hub.directory.refresh()
    raise web.HTTPSeeOther("/admin/directory")


async def ledger_page(request: web.Request) -> web.Response:
    hub, caller, cookie = _session(request)
    cp = await hub.store.latest_checkpoint()
    stats = await hub.store.stats(hub.clock.now_us(), 0)
    ctx = {
        "cp": checkpoint_json(cp) if cp else None,
        "root_hex": cp.root.hex() if cp else "",
        "unsealed": stats.last_event_seq + 1 - (cp.size if cp else 0),
        "v": request.app[VERIFY],
    }
    return _render(request, "ledger.html", ctx, caller=caller, cookie=cookie)


async def ledger_verify(request: web.Request) -> web.Response:
    hub, caller, cookie = _session(request)
    await _form(request, cookie)
    state = request.app[VERIFY]
    if not state.running:
        state.running = True
        state.by = caller.system_id
        state.task = asyncio.create_task(_verify(hub, state, caller.actor))
    raise web.HTTPSeeOther("/admin/ledger")


async def _verify(hub: Hub, state: VerifyState, actor: str) -> None:
    anchors = list(hub.signer.chain[1:]) or list(hub.signer.chain[:1])
    started = time.time()
    try:
        r = await verify_ledger(hub.store, anchors)
        at_us = hub.clock.now_us()
        await hub.store.append_events(
            [
                Event(
                    "ledger_verified",
                    at_us,
                    actor=actor,
                    data={
                        "ok": r.ok,
                        "leaves": r.leaves,
                        "seconds": round(time.time() - started, 3),
                        "finding": r.findings[0].code if r.findings else None,
                    },
                )
            ]
        )
        state.report, state.at_us = r, at_us  # shown only once it is on the record
    finally:
        state.running = False


async def root(_request: web.Request) -> web.Response:
    raise web.HTTPSeeOther("/admin/")


Page = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _html_errors(handler: Page) -> Page:
    """Refusals on console pages render as a page (the API keeps its JSON shape)."""

    @functools.wraps(handler)
    async def run(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except HubError as exc:
            log_credential_refusal(request, exc)
            ctx = {"code": exc.error_code, "message": exc.message}
            return _render(request, "error.html", ctx, status=exc.http_status)

    return run


class _HtmlRouter:
    def __init__(self, router: web.UrlDispatcher) -> None:
        self.router = router

    def add_get(self, path: str, handler: Page) -> None:
        self.router.add_get(path, _html_errors(handler))

    def add_post(self, path: str, handler: Page) -> None:
        self.router.add_post(path, _html_errors(handler))

    def add_static(self, prefix: str, path: Path) -> None:
        self.router.add_static(prefix, path)


def setup(app: web.Application) -> None:
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.PackageLoader("hub.http", "templates"),
        autoescape=jinja2.select_autoescape(default=True),
    )
    app[VERIFY] = VerifyState()
    r = _HtmlRouter(app.router)
    r.add_get("/admin", root)
    r.add_get("/admin/login", login_page)
    r.add_post("/admin/login", login)
    r.add_post("/admin/logout", logout)
    r.add_get("/admin/", dashboard)
    r.add_get("/admin/log", log_page)
    r.add_get("/admin/log.{fmt:csv|jsonl}", log_export)
    r.add_get("/admin/packages/{id}", package_page)
    r.add_post("/admin/packages/{id}/deliveries/{delivery}/resend", resend)
    r.add_post("/admin/packages/{id}/hold", hold)
    r.add_get("/admin/packages/{id}/evidence", evidence_download)
    r.add_get("/admin/directory", directory_page)
    r.add_post("/admin/systems/{id}/suspend", suspend_system)
    r.add_post("/admin/systems/{id}/resume", resume_system)
    r.add_get("/admin/ledger", ledger_page)
    r.add_post("/admin/ledger/verify", ledger_verify)
    r.add_static("/admin/static", Path(__file__).parent / "static")
