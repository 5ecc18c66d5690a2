"""``/healthz`` (the process answers), ``/readyz`` (store and broker answer) and
``/metrics`` (Prometheus; needs an admin, auditor or metrics credential)."""

from __future__ import annotations

import contextlib

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from hub.errors import HubError
from hub.http.app import HUB, json_answer
from hub.http.native import authenticated
from hub.service.metrics import exposition


async def healthz(_request: web.Request) -> web.Response:
    return json_answer({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    checks = await request.app[HUB].ready()
    ok = all(v == "ok" for v in checks.values())
    return json_answer(
        {"status": "ok" if ok else "unavailable", "checks": checks}, status=200 if ok else 503
    )


async def metrics_handler(request: web.Request) -> web.Response:
    hub, caller = authenticated(request)  # as every authenticated route
    caller.require_role("admin", "auditor")
    with contextlib.suppress(HubError):  # store down: serve the last values; /readyz says why
        await hub.update_gauges()
    body = exposition(hub.metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def setup(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_handler)
