"""Suspending a system, unbinding a signer certificate, and the directory as the admin
API shows it (both backends)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from hub.edxml import demo
from hub.errors import HubError
from hub.service.directory_admin import DirectoryAdmin
from tests.service.harness import PUSHED, A, B, Endpoint, HubUnderTest, eventually, signed


async def _post(h: HubUnderTest, path: str, body: dict[str, Any] | None = None) -> Any:
    r = await h.client.post(path, json=body or {}, headers=h.auth("admin"))
    return r.status, await r.json()


async def _events(h: HubUnderTest, type_: str) -> list[Any]:
    return [e for e in await h.hub.store.ledger(0, 10_000) if e.type == type_]


async def test_a_suspended_system_is_refused_everywhere_and_its_packages_wait(
    hut: HubUnderTest, http_warnings: list[dict[str, Any]]
) -> None:
    status, body = await _post(hut, "/api/v1/admin/systems/sys-b/suspend", {})
    assert (status, body["error"]["code"]) == (400, "bad_parameter")  # a reason is required
    status, body = await _post(hut, "/api/v1/admin/systems/nobody/suspend", {"reason": "x"})
    assert (status, body["error"]["code"]) == (404, "system_not_found")
    status, body = await _post(hut, "/api/v1/admin/systems/admin/suspend", {"reason": "oops"})
    assert (status, body["error"]["code"]) == (400, "cannot_suspend_self")
    r = await hut.client.post(
        "/api/v1/admin/systems/sys-a/suspend", json={"reason": "x"}, headers=hut.auth("sys-b")
    )
    assert r.status == 403 and (await r.json())["error"]["code"] == "role_forbidden"

    status, body = await _post(
        hut, "/api/v1/admin/systems/sys-b/suspend", {"reason": "token leaked (ticket 42)"}
    )
    assert status == 200 and body["changed"] is True
    status, body = await _post(hut, "/api/v1/admin/systems/sys-b/suspend", {"reason": "again"})
    assert status == 200 and body["changed"] is False  # already: nothing written

    # Its bearer token and its VXP secret are refused, with their own code.
    r = await hut.client.get("/api/v1/inbox", headers=hut.auth("sys-b"))
    assert r.status == 403 and (await r.json())["error"]["code"] == "system_suspended"
    assert [e["code"] for e in http_warnings if e["event"] == "authentication_failed"] == [
        "system_suspended"
    ]
    client = hut.vxp("sys-b")
    try:
        with pytest.raises(HubError) as err:
            await client.agencies()
        assert err.value.upstream_code == "15"  # type: ignore[attr-defined]
        assert "system_suspended" in err.value.desc  # type: ignore[attr-defined]
    finally:
        await client.close()
    assert [e.data["code"] for e in await _events(hut, "refused")] == ["system_suspended"]

    # Everyone else goes on; what is sent to its organs is accepted and waits.
    r = await hut.submit("sys-a", demo.document_bytes(sender=A, to=(B,)))
    assert r.status == 202, await r.text()
    pid = (await r.json())["id"]
    assert await hut.inbox("sys-x") == []

    # Saving the system's settings again does not lift the suspension.
    r = await hut.client.post(
        "/api/v1/admin/systems",
        json={"system_id": "sys-b", "name": "B renamed"},
        headers=hut.auth("admin"),
    )
    assert r.status == 200
    assert hut.hub.directory.current.systems["sys-b"].suspended == "token leaked (ticket 42)"
    r = await hut.client.get("/api/v1/inbox", headers=hut.auth("sys-b"))
    assert r.status == 403

    status, body = await _post(hut, "/api/v1/admin/systems/sys-b/resume")
    assert status == 200 and body["changed"] is True and body["pushes_resent"] == 0
    items = await eventually(lambda: hut.inbox("sys-b"), lambda items: len(items) == 1)
    assert items[0]["id"] == pid
    status, body = await _post(hut, "/api/v1/admin/systems/sys-b/resume")
    assert body["changed"] is False

    suspended = await _events(hut, "directory_system_suspended")
    assert [(e.actor, e.data) for e in suspended] == [
        ("system:admin", {"system_id": "sys-b", "reason": "token leaked (ticket 42)"})
    ]
    resumed = await _events(hut, "directory_system_resumed")
    assert [(e.actor, e.data["system_id"]) for e in resumed] == [("system:admin", "sys-b")]


async def test_a_console_session_ends_when_its_system_is_suspended(hut: HubUnderTest) -> None:
    r = await hut.client.post(
        "/admin/login", data={"token": hut.tokens["auditor"]}, allow_redirects=False
    )
    assert r.status == 303, await r.text()
    cookie = {"lt_console": r.cookies["lt_console"].value}
    page = await hut.client.get("/admin/directory", cookies=cookie, allow_redirects=False)
    assert page.status == 200 and "system-auditor" in await page.text()
    status, _ = await _post(hut, "/api/v1/admin/systems/auditor/suspend", {"reason": "left"})
    assert status == 200
    page = await hut.client.get("/admin/directory", cookies=cookie, allow_redirects=False)
    assert page.status == 403 and "system_suspended" in await page.text()
    r = await hut.client.post(
        "/admin/login", data={"token": hut.tokens["auditor"]}, allow_redirects=False
    )
    assert r.status == 403  # nor can it log in again
    refused = [e.data["code"] for e in await _events(hut, "refused")]
    assert refused == ["system_suspended"]  # the login attempt, on the ledger


async def _delivery(h: HubUnderTest, pid: str) -> dict[str, Any]:
    r = await h.client.get(f"/api/v1/packages/{pid}/deliveries", headers=h.auth("sys-a"))
    return next(d for d in (await r.json())["deliveries"] if d["recipient"] == PUSHED)


async def test_nothing_is_pushed_to_a_suspended_system_until_it_is_resumed(
    pushed: tuple[HubUnderTest, Endpoint],
) -> None:
    h, endpoint = pushed
    status, _ = await _post(h, "/api/v1/admin/systems/sys-p/suspend", {"reason": "audit"})
    assert status == 200
    data = demo.document_bytes(sender=A, to=(PUSHED,))
    pid = (await (await h.submit("sys-a", data)).json())["id"]
    parked = await eventually(lambda: _delivery(h, pid), lambda d: d["state"] == "available")
    assert parked["attempts"] == 0 and parked["last_error"] == "system_suspended"
    assert endpoint.received == []

    status, body = await _post(h, "/api/v1/admin/systems/sys-p/resume")
    assert status == 200 and body["pushes_resent"] == 1
    d = await eventually(lambda: _delivery(h, pid), lambda d: d["state"] == "fetched")
    assert not d["last_error"]
    assert [b for _, b in endpoint.received] == [data]
    types = [e.type for e in await h.hub.store.events(pid)]
    assert types.index("push_resumed") < types.index("pushed")
    status, body = await _post(h, "/api/v1/admin/systems/sys-p/resume")
    assert body["pushes_resent"] == 0  # nothing parked is left: run again, it sends nothing


async def test_an_unbound_certificate_no_longer_signs_for_its_organ(hut: HubUnderTest) -> None:
    fp = next(b.fingerprint for b in hut.hub.directory.current.bindings if b.organ_id == A)

    def package(number: str) -> bytes:
        return signed(hut.pki_dir, A, demo.document_bytes(sender=A, to=(B,), number=number))

    assert (await hut.submit("sys-a", package("1"))).status == 202

    status, body = await _post(
        hut, "/api/v1/admin/bindings/remove", {"fingerprint": fp.upper(), "organ_id": A}
    )
    assert status == 200 and body["removed"] is True
    r = await hut.submit("sys-a", package("2"))
    assert r.status == 422 and (await r.json())["error"]["code"] == "cert_not_bound"
    status, body = await _post(
        hut, "/api/v1/admin/bindings/remove", {"fingerprint": fp, "organ_id": A}
    )
    assert body["removed"] is False

    status, body = await _post(
        hut, "/api/v1/admin/bindings", {"fingerprint": "not-a-fingerprint", "organ_id": A}
    )
    assert (status, body["error"]["code"]) == (400, "bad_fingerprint")
    colons = ":".join(fp[i : i + 2] for i in range(0, 64, 2)).upper()  # as openssl prints it
    status, body = await _post(
        hut, "/api/v1/admin/bindings", {"fingerprint": colons, "organ_id": A}
    )
    assert status == 201
    assert (await hut.submit("sys-a", package("2"))).status == 202
    assert [e.type for e in await hut.hub.store.ledger(0, 10_000) if "cert_" in e.type][-2:] == [
        "directory_cert_unbound",
        "directory_cert_bound",
    ]


async def test_the_directory_is_shown_to_administrators_and_auditors_without_secrets(
    hut: HubUnderTest,
) -> None:
    await _post(hut, "/api/v1/admin/systems/sys-x/suspend", {"reason": "decommissioned"})
    r = await hut.client.get("/api/v1/admin/directory", headers=hut.auth("sys-a"))
    assert r.status == 403 and (await r.json())["error"]["code"] == "role_forbidden"
    for role in ("admin", "auditor"):
        r = await hut.client.get("/api/v1/admin/directory", headers=hut.auth(role))
        assert r.status == 200
        text = await r.text()
        d = await r.json()
        systems = {s["system_id"]: s for s in d["systems"]}
        assert systems["sys-x"]["suspended"] == "decommissioned"
        assert systems["sys-a"]["suspended"] is None and systems["sys-a"]["vxp_secret"]
        assert {b["organ_id"] for b in d["bindings"]} >= {A, B}
        assert d["version"] == hut.hub.directory.current.version
        for token in hut.tokens.values():  # bearer tokens' and VXP secrets' secret parts
            assert token.split(".")[-1] not in text


async def test_the_console_suspends_and_resumes_a_system(hut: HubUnderTest) -> None:
    r = await hut.client.post(
        "/admin/login", data={"token": hut.tokens["admin"]}, allow_redirects=False
    )
    cookie = {"lt_console": r.cookies["lt_console"].value}

    async def page() -> tuple[str, str]:
        html = await (await hut.client.get("/admin/directory?lang=en", cookies=cookie)).text()
        csrf = re.search(r'name="csrf" value="([^"]+)"', html)
        assert csrf is not None
        row = re.search(r'<tr id="system-sys-b">.*?</tr>', html, re.S)
        assert row is not None
        assert 'action="/admin/systems/admin/' not in html  # no form against oneself
        return row.group(0), csrf.group(1)

    row, csrf = await page()
    assert "Active" in row and 'action="/admin/systems/sys-b/suspend"' in row
    r = await hut.client.post(
        "/admin/systems/sys-b/suspend",
        data={"csrf": "forged", "reason": "x"},
        cookies=cookie,
        allow_redirects=False,
    )
    assert r.status == 403  # csrf_failed: nothing changed
    assert hut.hub.directory.current.systems["sys-b"].suspended is None
    r = await hut.client.post(
        "/admin/systems/sys-b/suspend",
        data={"csrf": csrf, "reason": "maintenance window"},
        cookies=cookie,
        allow_redirects=False,
    )
    assert r.status == 303
    row, csrf = await page()
    assert "Suspended</strong>: maintenance window" in row
    assert (await hut.client.get("/api/v1/inbox", headers=hut.auth("sys-b"))).status == 403
    r = await hut.client.post(
        "/admin/systems/sys-b/resume", data={"csrf": csrf}, cookies=cookie, allow_redirects=False
    )
    assert r.status == 303
    assert (await hut.client.get("/api/v1/inbox", headers=hut.auth("sys-b"))).status == 200
    actors = {e.actor for e in await _events(hut, "directory_system_suspended")}
    assert actors == {"system:admin"}


async def test_a_push_is_not_parked_on_a_snapshot_a_poll_behind_a_resume(
    pushed: tuple[HubUnderTest, Endpoint],
) -> None:
    """Another process may resume the system; this one's directory snapshot still says
    suspended until its next poll. The push looks at the store before parking."""
    h, endpoint = pushed
    for task in h.hub._tasks:  # no poll: the snapshot stays as it is
        if task.get_name() == "directory-refresh":
            task.cancel()
    status, _ = await _post(h, "/api/v1/admin/systems/sys-p/suspend", {"reason": "audit"})
    assert status == 200
    other = DirectoryAdmin(h.hub.store, h.hub.clock, "cli:other-process")
    assert (await other.resume("sys-p"))[0] is True
    assert h.hub.directory.current.systems["sys-p"].suspended == "audit"  # a poll behind
    data = demo.document_bytes(sender=A, to=(PUSHED,), number="77")
    pid = (await (await h.submit("sys-a", data)).json())["id"]
    d = await eventually(lambda: _delivery(h, pid), lambda d: d["state"] == "fetched")
    assert not d["last_error"] and [b for _, b in endpoint.received] == [data]
