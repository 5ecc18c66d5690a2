"""The aiohttp application: shared state under typed keys, one error mapping.

Middleware here is only for cross-cutting concerns (request id, timing, turning
``HubError`` into its JSON shape); authentication and every intake step are
explicit calls in the handlers and the pipeline.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import orjson
import structlog
from aiohttp import web

from hub.errors import AuthenticationFailed, HubError, NetworkForbidden, SystemSuspended
from hub.ids import new_hex
from hub.ports import Outgoing
from hub.service.hub import Hub

HUB = web.AppKey("hub", Hub)
log = structlog.get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# Datetimes and dataclasses are written as ``str()`` gives them, as the standard library's
# ``default=str`` did; dict keys that are not strings are written as strings.
_JSON_OPTIONS = (
    orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
)


def json_bytes(body: Any) -> bytes:
    """A JSON body: UTF-8 with Vietnamese left readable (not \\u escapes), compact.

    orjson instead of the standard library: an inbox page of 50 items encodes in about a
    tenth of the time, and every answer of the hot paths is JSON. A string no UTF-8
    encoder can write (a lone surrogate, from bytes that were not UTF-8) is escaped."""
    try:
        return orjson.dumps(body, default=str, option=_JSON_OPTIONS)
    except TypeError:
        return json.dumps(body, default=str).encode()


def json_answer(body: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=json_bytes(body), status=status, content_type="application/json", charset="utf-8"
    )


def peer_certificate(request: web.Request) -> bytes | None:
    """The TLS client certificate (DER) the handshake verified, when the hub terminates
    TLS itself with ``[server] tls_client_ca`` set; otherwise None."""
    transport = request.transport
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    if ssl_object is None:
        return None
    der: bytes | None = ssl_object.getpeercert(binary_form=True)
    return der


async def send_stream(
    request: web.Request,
    resp: web.StreamResponse,
    chunks: AsyncIterator[bytes],
    *,
    first: bytes = b"",
) -> web.StreamResponse:
    """Send a response in chunks. The caller draws the first chunk before this (``first``,
    or an ``Outgoing`` stream's own), so a failure that comes before any byte is still an
    ordinary error answer."""
    await resp.prepare(request)
    if first:
        await resp.write(first)
    async for chunk in chunks:
        await resp.write(chunk)
    await resp.write_eof()
    return resp


async def send_package(
    request: web.Request, body: Outgoing, headers: Mapping[str, str]
) -> web.StreamResponse:
    """A stored package as the whole response body: small ones at once, large in chunks."""
    payload = body.body()
    if isinstance(payload, bytes):
        return web.Response(body=payload, headers=headers)
    resp = web.StreamResponse(headers=headers)
    resp.content_length = body.size
    return await send_stream(request, resp, payload)


# A caller's request id is echoed in logs, answers and a header: only a plain token is
# taken (bytes that are not UTF-8 reach us as lone surrogates, which no encoder writes).
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def _request_id(given: str) -> str:
    return given if _REQUEST_ID.fullmatch(given) else new_hex()


def error_headers(exc: HubError) -> dict[str, str]:
    """Headers every face sends with a refusal: ``Retry-After`` when retrying helps."""
    return {} if exc.retry_after_s is None else {"Retry-After": str(exc.retry_after_s)}


def error_response(exc: HubError, request_id: str) -> web.Response:
    body = {"error": exc.to_dict(), "request_id": request_id}
    resp = json_answer(body, status=exc.http_status)
    resp.headers.update(error_headers(exc))
    return resp


def log_credential_refusal(request: web.Request, exc: HubError) -> None:
    """No caller (or one suspended, or outside its networks): logged, not written to the
    ledger."""
    if isinstance(exc, AuthenticationFailed | NetworkForbidden | SystemSuspended):
        log.warning(
            "authentication_failed",
            code=exc.error_code,
            method=request.method,
            path=request.rel_url.raw_path[:200],  # still percent-encoded: one line
            peer=request.remote,
        )


@web.middleware
async def context_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    request_id = _request_id(request.headers.get("X-Request-Id", ""))
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=request_id)
    started = time.perf_counter()
    status = 500
    try:
        resp = await handler(request)
        status = resp.status
    except HubError as exc:
        status = exc.http_status
        resp = error_response(exc, request_id)
        log_credential_refusal(request, exc)
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        route = request.match_info.route.resource
        name = route.canonical if route is not None else "unmatched"
        request.app[HUB].metrics.http_seconds.labels(request.method, name, str(status)).observe(
            time.perf_counter() - started
        )
    resp.headers["X-Request-Id"] = request_id
    return resp


def build_app(hub: Hub, *, manage_lifecycle: bool = True) -> web.Application:
    from hub.http import admin_api, console, health, ledger_api, native, vxp  # noqa: PLC0415

    app = web.Application(
        middlewares=[context_middleware], client_max_size=hub.cfg.server.max_body_bytes
    )
    app[HUB] = hub

    if manage_lifecycle:

        async def lifecycle(_app: web.Application) -> AsyncIterator[None]:
            await hub.start()
            yield
            await hub.stop()

        app.cleanup_ctx.append(lifecycle)
    health.setup(app)
    native.setup(app)
    ledger_api.setup(app)
    admin_api.setup(app)
    console.setup(app)
    if hub.cfg.vxp.enabled:
        vxp.setup(app, hub.cfg.vxp.base_path)
    return app
