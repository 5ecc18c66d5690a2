"""Administrator endpoints that change the directory and credentials (``/api/v1/admin``):
systems (and their suspension), organs, signer certificate bindings, bearer tokens and
TLS client certificates; and the directory as it stands (administrators and auditors).

Only the ``admin`` role; every change is a ledger event naming the administrator
(``DirectoryAdmin``), and the directory cache is refreshed before answering, so the
change is in force when the call returns. Tokens are shown once, in the answer.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from hub.errors import InputError
from hub.http.app import json_answer
from hub.http.native import authenticated, json_object
from hub.records import Organ, System
from hub.service.audit import iso
from hub.service.directory_admin import DirectoryAdmin, directory_json
from hub.service.hub import Hub


async def _admin(request: web.Request) -> tuple[Hub, DirectoryAdmin, dict[str, Any]]:
    hub, caller = authenticated(request)
    caller.require_role("admin")
    body = await json_object(request)
    admin = hub.directory_admin(caller.actor)
    return hub, admin, body


def _str(body: dict[str, Any], key: str, *, required: bool = False) -> str | None:
    value = body.get(key)
    if value is None or value == "":
        if required:
            raise InputError(f"{key} is required", code="bad_parameter")
        return None
    if not isinstance(value, str):
        raise InputError(f"{key} must be a string", code="bad_parameter")
    return value


def _days(body: dict[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        raise InputError(f"{key} must be a whole number of days", code="bad_parameter")
    return value


async def put_system(request: web.Request) -> web.Response:
    hub, admin, body = await _admin(request)
    system_id = _str(body, "system_id", required=True) or ""
    networks = body.get("networks") or []
    if not isinstance(networks, list) or not all(isinstance(n, str) for n in networks):
        raise InputError("networks must be a list of CIDRs", code="bad_parameter")
    system = System(
        system_id,
        _str(body, "name") or system_id,
        role=_str(body, "role") or "agency",  # type: ignore[arg-type]  # checked by put_system
        signature_policy=_str(body, "signature_policy"),
        vxp_strict=bool(body.get("vxp_strict")),
        may_register=bool(body.get("may_register")),
        networks=tuple(networks),
    )
    await admin.put_system(system)
    await hub.directory.refresh()
    return json_answer({"system_id": system_id, "saved": True})


async def put_organ(request: web.Request) -> web.Response:
    hub, admin, body = await _admin(request)
    aliases = body.get("aliases") or []
    if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
        raise InputError("aliases must be a list of organ ids", code="bad_parameter")
    organ = Organ(
        _str(body, "organ_id", required=True) or "",
        _str(body, "name", required=True) or "",
        _str(body, "system_id"),
        location=_str(body, "location") or "local",  # type: ignore[arg-type]  # checked
        parent=_str(body, "parent"),
        closed=bool(body.get("closed")),
        push_url=_str(body, "push_url"),
        aliases=tuple(aliases),
    )
    await admin.put_organ(organ)  # 400 unknown_system: it names a system there is not
    await hub.directory.refresh()
    return json_answer({"organ_id": organ.organ_id, "saved": True})


async def issue_token(request: web.Request) -> web.Response:
    hub, admin, body = await _admin(request)
    system_id = request.match_info["id"]  # 404 system_not_found: no such system
    token, cred = await admin.issue_token(system_id, _days(body, "days"))
    await hub.directory.refresh()
    return json_answer(
        {
            "system_id": system_id,
            "token_id": cred.token_id,
            "token": token,
            "expires": iso(cred.expires_us),
        },
        status=201,
    )


async def issue_vxp_secret(request: web.Request) -> web.Response:
    hub, admin, body = await _admin(request)
    system_id = request.match_info["id"]  # 404 system_not_found: no such system
    secret, until = await admin.issue_vxp_secret(system_id, _days(body, "overlap_days") or 0)
    await hub.directory.refresh()
    return json_answer(
        {"system_id": system_id, "secret": secret, "previous_until": iso(until)}, status=201
    )


async def revoke_token(request: web.Request) -> web.Response:
    hub, admin, _ = await _admin(request)
    changed = await admin.revoke_token(request.match_info["id"])
    await hub.directory.refresh()
    return json_answer({"token_id": request.match_info["id"], "revoked": True, "changed": changed})


async def add_client_cert(request: web.Request) -> web.Response:
    hub, admin, body = await _admin(request)
    pem = _str(body, "certificate", required=True) or ""
    fp = await admin.add_client_cert(request.match_info["id"], pem.encode())
    await hub.directory.refresh()
    return json_answer({"system_id": request.match_info["id"], "fingerprint": fp}, status=201)


async def remove_client_cert(request: web.Request) -> web.Response:
    hub, admin, _ = await _admin(request)
    removed = await admin.remove_client_cert(request.match_info["id"])
    await hub.directory.refresh()
    return json_answer({"fingerprint": request.match_info["id"], "removed": removed})


async def directory(request: web.Request) -> web.Response:
    """The directory as ``lienthong directory list`` prints it (no secrets); administrators
    and auditors, as the console's directory page."""
    hub, caller = authenticated(request)
    caller.require_role("admin", "auditor")
    return json_answer(directory_json(hub.directory.current))


def _binding(body: dict[str, Any]) -> tuple[str, str]:
    fp = _str(body, "fingerprint", required=True) or ""
    return fp, _str(body, "organ_id", required=True) or ""


async def bind(request: web.Request) -> web.Response:
    hub, admin, body = await _admin(request)
    fp, organ = _binding(body)
    await admin.bind(fp, organ)
    await hub.directory.refresh()
    return json_answer({"organ_id": organ, "bound": True}, status=201)


async def unbind(request: web.Request) -> web.Response:
    hub, admin, body = await _admin(request)
    fp, organ = _binding(body)
    removed = await admin.unbind(fp, organ)
    await hub.directory.refresh()
    return json_answer({"organ_id": organ, "removed": removed})


async def suspend(request: web.Request) -> web.Response:
    hub, admin, body = await _admin(request)
    system_id = request.match_info["id"]
    changed = await admin.suspend(system_id, _str(body, "reason", required=True) or "")
    await hub.directory.refresh()
    return json_answer({"system_id": system_id, "suspended": True, "changed": changed})


async def resume(request: web.Request) -> web.Response:
    hub, admin, _ = await _admin(request)
    system_id = request.match_info["id"]
    changed, moved = await admin.resume(system_id)
    await hub.directory.refresh()
    return json_answer(
        {"system_id": system_id, "suspended": False, "changed": changed, "pushes_resent": moved}
    )


def setup(app: web.Application) -> None:
    r = app.router
    r.add_post("/api/v1/admin/systems", put_system)
    r.add_post("/api/v1/admin/organs", put_organ)
    r.add_post("/api/v1/admin/systems/{id}/tokens", issue_token)
    r.add_post("/api/v1/admin/tokens/{id}/revoke", revoke_token)
    r.add_post("/api/v1/admin/systems/{id}/vxp-secret", issue_vxp_secret)
    r.add_post("/api/v1/admin/systems/{id}/client-certs", add_client_cert)
    r.add_post("/api/v1/admin/client-certs/{id}/remove", remove_client_cert)
    r.add_get("/api/v1/admin/directory", directory)
    r.add_post("/api/v1/admin/bindings", bind)
    r.add_post("/api/v1/admin/bindings/remove", unbind)
    r.add_post("/api/v1/admin/systems/{id}/suspend", suspend)
    r.add_post("/api/v1/admin/systems/{id}/resume", resume)
