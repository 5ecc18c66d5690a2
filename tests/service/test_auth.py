"""Least privilege: authentication everywhere but the health checks; a system acts
only for its own organs; roles limit what administrators and auditors may do."""

from __future__ import annotations

from typing import Any

from hub.edxml import demo
from hub.ports import Store
from hub.records import Event
from tests.service.harness import A, B, HubUnderTest, eventually, signed


async def test_nothing_but_health_checks_answers_without_credentials(hut: HubUnderTest) -> None:
    open_paths = {"/healthz", "/readyz"}
    checked = 0
    for resource in hut.client.app.router.resources():
        info = resource.get_info()
        path = info.get("path") or info.get("formatter") or info.get("prefix", "")
        concrete = path.replace("{id}", "00000000-0000-0000-0000-000000000000").replace(
            "{fmt}", "csv"
        )
        if "{op}" in path:  # the VXP face: every operation, VXP error shape
            checked += await _vxp_needs_credentials(hut)
            continue
        if path.startswith("/admin"):
            checked += await _console_needs_a_session(hut, resource, concrete)
            continue
        for route in resource:
            if route.method == "HEAD":
                continue
            r = await hut.client.request(route.method, concrete)
            if path in open_paths:
                assert r.status == 200, path
            else:
                assert r.status == 401, (route.method, path, r.status)
                assert (await r.json())["error"]["code"] == "missing_credentials"
            checked += 1
    assert checked >= 10
    bad = await hut.client.get("/api/v1/inbox", headers={"Authorization": "Bearer ltx.nope"})
    assert bad.status == 401 and (await bad.json())["error"]["code"] == "bad_credentials"


async def _console_needs_a_session(hut: HubUnderTest, resource: Any, concrete: str) -> int:
    """Console pages send whoever has no session to the login page; only it is open."""
    concrete = concrete.replace("{delivery}", "d")
    if concrete.startswith(("/admin/static", "/admin/login")):
        return 0
    checked = 0
    for route in resource:
        if route.method == "HEAD":
            continue
        r = await hut.client.request(route.method, concrete, allow_redirects=False)
        assert r.status == 303, (route.method, concrete, r.status)
        expected = "/admin/" if concrete == "/admin" else "/admin/login"
        assert r.headers["Location"].startswith(expected), (concrete, r.headers["Location"])
        checked += 1
    return checked


async def _vxp_needs_credentials(hut: HubUnderTest) -> int:
    from hub.vxp.protocol import OPERATIONS  # noqa: PLC0415

    for op in OPERATIONS:
        method = "GET" if op == "downloadEdoc" else "POST"
        r = await hut.client.request(method, f"{hut.cfg.vxp.base_path}/{op}", data=b"{}")
        assert r.status == 401, (op, r.status)
        if op == "downloadEdoc":
            assert await r.read() == b""
        else:
            body = await r.json()
            assert body["ErrorCode"] == "15" and body["status"] == "FAIL", (op, body)
    return len(OPERATIONS)


async def test_a_system_cannot_send_as_another_systems_organ(hut: HubUnderTest) -> None:
    data = signed(hut.pki_dir, A, demo.document_bytes(sender=A, to=(B,)))
    r = await hut.submit("sys-x", data)
    assert r.status == 403
    body = await r.json()
    assert body["error"]["code"] == "sender_not_allowed"
    assert await hut.inbox("sys-b", state="all") == []


async def test_a_system_cannot_read_or_ack_another_organs_packages(hut: HubUnderTest) -> None:
    data = signed(hut.pki_dir, A, demo.document_bytes(sender=A, to=(B,)))
    pid = (await (await hut.submit("sys-a", data)).json())["id"]
    await eventually(lambda: hut.inbox("sys-b"), lambda xs: len(xs) == 1)
    h = hut.auth("sys-x")
    r = await hut.client.get("/api/v1/inbox", params={"organ": B}, headers=h)
    assert r.status == 403 and (await r.json())["error"]["code"] == "organ_not_allowed"
    assert await hut.inbox("sys-x") == []
    for path in (
        f"/api/v1/packages/{pid}",
        f"/api/v1/packages/{pid}/metadata",
        f"/api/v1/packages/{pid}/deliveries",
    ):
        r = await hut.client.get(path, headers=h)
        assert r.status == 404, path  # not even told that the package exists
    r = await hut.client.post(f"/api/v1/packages/{pid}/ack", json={"result": "done"}, headers=h)
    assert r.status == 404
    # The sender may read its own package but not acknowledge it as a recipient.
    r = await hut.client.post(
        f"/api/v1/packages/{pid}/ack", json={"result": "done"}, headers=hut.auth("sys-a")
    )
    assert r.status == 403 and (await r.json())["error"]["code"] == "not_recipient"
    items = await hut.inbox("sys-b")
    assert items[0]["state"] == "available", "nothing above changed B's delivery"


async def test_roles_auditor_reads_only_admin_resends(hut: HubUnderTest) -> None:
    data = signed(hut.pki_dir, A, demo.document_bytes(sender=A, to=(B,)))
    r = await hut.submit("auditor", data)
    assert r.status == 403 and (await r.json())["error"]["code"] == "role_forbidden"
    r = await hut.client.post("/api/v1/admin/deliveries/nope/resend", headers=hut.auth("auditor"))
    assert r.status == 403
    r = await hut.client.post("/api/v1/admin/deliveries/nope/resend", headers=hut.auth("sys-a"))
    assert r.status == 403
    r = await hut.client.get("/metrics", headers=hut.auth("sys-a"))
    assert r.status == 403
    r = await hut.client.get("/metrics", headers=hut.auth("auditor"))
    assert r.status == 200 and "lienthong_intake_total" in await r.text()


async def test_refusals_are_recorded_in_the_ledger(hut: HubUnderTest) -> None:
    data = signed(hut.pki_dir, A, demo.document_bytes(sender=A, to=(B,)))
    await hut.submit("sys-x", data)
    store = hut.hub.store
    refused = await _refusals(store)
    assert any(
        e.data["code"] == "sender_not_allowed" and e.actor == "system:sys-x" for e in refused
    )


async def test_failed_authentication_is_logged_without_the_secret(
    hut: HubUnderTest, http_warnings: list[dict[str, Any]]
) -> None:
    forged = "lt_forged-token-value-0123456789"
    r = await hut.client.get("/api/v1/inbox")
    assert r.status == 401
    r = await hut.client.get(
        "/api/v1/packages/x%0Afake", headers={"Authorization": f"Bearer {forged}"}
    )
    assert r.status == 401
    logs = http_warnings
    failed = [e for e in logs if e["event"] == "authentication_failed"]
    assert [(e["code"], e["method"]) for e in failed] == [
        ("missing_credentials", "GET"),
        ("bad_credentials", "GET"),
    ]
    assert failed[1]["path"] == "/api/v1/packages/x%0Afake"  # as sent: no line break to forge
    assert forged not in repr(logs)
    assert not [e for e in await _refusals(hut.hub.store)]  # no caller: not in the ledger


async def _refusals(store: Store) -> list[Event]:
    return [e for e in await store.ledger(0, 10_000) if e.type == "refused"]


async def test_openapi_document_lists_every_route(hut: HubUnderTest) -> None:
    r = await hut.client.get("/api/v1/openapi.json", headers=hut.auth("sys-a"))
    assert r.status == 200
    spec = await r.json()
    documented = {p.replace("{id}", "*") for p in spec["paths"]}
    for resource in hut.client.app.router.resources():
        info = resource.get_info()
        path = (info.get("path") or info.get("formatter") or info.get("prefix", "")).replace(
            "{id}", "*"
        )
        if "{op}" in path or path.startswith("/admin"):
            continue  # the VXP face follows the SDK's contract (docs/vxp.md); /admin is HTML
        assert path in documented, path
