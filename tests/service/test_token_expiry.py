"""Bearer tokens that expire: issued for ``[auth] token_days`` (or ``days``), refused past
it with 401 ``token_expired``, the console session opened with one ending with it, and
when each system's token access ends as a metric (both backends for the HTTP tests)."""

from __future__ import annotations

import math
import re
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from hub.errors import AuthenticationFailed, InputError
from hub.ports import Directory, SystemClock
from hub.records import Credential, System
from hub.service.audit import iso
from hub.service.auth import access_ends, authenticate, new_token
from hub.service.sessions import Sessions
from tests.service.harness import HubUnderTest, LaterClock

DAY_US = 86_400_000_000


async def _issue(h: HubUnderTest, system: str, body: dict[str, Any]) -> tuple[int, Any]:
    r = await h.client.post(
        f"/api/v1/admin/systems/{system}/tokens", json=body, headers=h.auth("admin")
    )
    return r.status, await r.json()


async def _inbox(h: HubUnderTest, token: str) -> tuple[int, str | None]:
    r = await h.client.get("/api/v1/inbox", headers={"Authorization": f"Bearer {token}"})
    body = await r.json()
    return r.status, body["error"]["code"] if r.status != 200 else None


async def _token_expiry(h: HubUnderTest) -> dict[str, float]:
    r = await h.client.get("/metrics", headers=h.auth("auditor"))
    return {
        s.labels["system"]: s.value
        for f in text_string_to_metric_families(await r.text())
        for s in f.samples
        if s.name == "lienthong_token_expiry_timestamp_seconds"
    }


async def test_a_token_is_refused_past_its_expiry_and_its_successor_works(
    hut: HubUnderTest, http_warnings: list[dict[str, Any]]
) -> None:
    before = SystemClock().now_us()
    status, month = await _issue(hut, "sys-b", {"days": 30})
    assert status == 201 and month["token"].startswith(month["token_id"] + ".")
    status, forever = await _issue(hut, "sys-b", {"days": 0})
    assert status == 201 and forever["expires"] is None
    for bad, code in (({"days": -1}, "bad_days"), ({"days": "30"}, "bad_parameter")):
        status, body = await _issue(hut, "sys-b", bad)
        assert (status, body["error"]["code"]) == (400, code), bad

    events = await hut.hub.store.ledger(0, 10_000)
    by_id = {e.data["token_id"]: e.data for e in events if e.type == "directory_token_issued"}
    expires_us = by_id[month["token_id"]]["expires_us"]
    assert before + 30 * DAY_US <= expires_us <= SystemClock().now_us() + 30 * DAY_US
    assert by_id[forever["token_id"]]["expires_us"] is None
    assert month["expires"] == iso(expires_us)
    assert await _inbox(hut, month["token"]) == (200, None)

    listed = await hut.client.get("/api/v1/admin/directory", headers=hut.auth("auditor"))
    tokens = {t["token_id"]: t for t in (await listed.json())["tokens"]}
    assert tokens[month["token_id"]]["expires"] == month["expires"]
    assert tokens[forever["token_id"]]["expires"] is None

    # A month and a day later: the 30-day token is refused with its own code; the one
    # without an end and the harness's (the 365-day default) still work.
    hut.hub.clock = LaterClock(31)
    assert await _inbox(hut, month["token"]) == (401, "token_expired")
    assert await _inbox(hut, forever["token"]) == (200, None)
    assert await _inbox(hut, hut.tokens["sys-b"]) == (200, None)
    assert [w["code"] for w in http_warnings if w["event"] == "authentication_failed"] == [
        "token_expired"
    ]
    # A year and more: the default's end too.
    hut.hub.clock = LaterClock(366)
    assert await _inbox(hut, hut.tokens["sys-a"]) == (401, "token_expired")
    assert await _inbox(hut, forever["token"]) == (200, None)


async def test_when_each_systems_token_access_ends_is_a_metric(hut: HubUnderTest) -> None:
    ends = await _token_expiry(hut)
    cred = {c.system_id: c for c in hut.hub.directory.current.credentials.values()}
    assert ends["sys-a"] == pytest.approx(cred["sys-a"].expires_us / 1e6)  # type: ignore[operator]
    assert ends["sys-a"] > SystemClock().now_us() / 1e6 + 364 * 86_400

    # A token without an end: the system's access does not end (+Inf, no alert).
    status, forever = await _issue(hut, "sys-a", {"days": 0})
    assert status == 201
    assert math.isinf((await _token_expiry(hut))["sys-a"])
    # Revoked, it no longer counts; the 365-day token sets the end again.
    r = await hut.client.post(
        f"/api/v1/admin/tokens/{forever['token_id']}/revoke", json={}, headers=hut.auth("admin")
    )
    assert r.status == 200
    assert (await _token_expiry(hut))["sys-a"] == pytest.approx(ends["sys-a"])


def _directory(*creds: Credential) -> Directory:
    return Directory(
        1,
        {},
        {},
        {"sys-a": System("sys-a", "A", "auditor"), "sys-b": System("sys-b", "B")},
        {c.token_id: c for c in creds},
        (),
    )


def test_access_ends_takes_the_latest_live_token_of_each_system() -> None:
    now = 1_800_000_000_000_000
    _, old = new_token("sys-a", now, 10)
    _, new = new_token("sys-a", now, 40)
    _, gone = new_token("sys-b", now, 0)
    ends = access_ends([old, new, Credential(gone.token_id, "sys-b", "x", now, revoked=True)])
    assert ends == {"sys-a": (now + 40 * DAY_US) / 1e6, "sys-b": None}  # b: every one revoked
    assert access_ends([old, gone]) == {"sys-a": (now + 10 * DAY_US) / 1e6, "sys-b": math.inf}
    with pytest.raises(InputError) as err:
        new_token("sys-a", now, -5)
    assert err.value.error_code == "bad_days"


def test_a_console_session_ends_with_its_token() -> None:
    t0 = 1_800_000_000.0
    token, cred = new_token("sys-a", int(t0 * 1e6), 1)
    directory = _directory(cred)
    caller = authenticate(directory, f"Bearer {token}", peer=None, now_us=int(t0 * 1e6))
    sessions = Sessions(b"k" * 32)
    cookie = sessions.issue(caller, now=t0 + 86_400 - 60)  # a minute before the token's end
    assert sessions.open(directory, cookie, peer=None, now=t0 + 86_400 - 30).token_id
    with pytest.raises(AuthenticationFailed) as err:
        sessions.open(directory, cookie, peer=None, now=t0 + 86_400 + 1)
    assert err.value.error_code == "token_expired"
    with pytest.raises(AuthenticationFailed) as err:
        authenticate(directory, f"Bearer {token}", peer=None, now_us=int((t0 + 86_400) * 1e6))
    assert err.value.error_code == "token_expired"


async def test_the_console_shows_when_each_systems_tokens_end(hut: HubUnderTest) -> None:
    r = await hut.client.post(
        "/admin/login", data={"token": hut.tokens["auditor"]}, allow_redirects=False
    )
    cookie = {"lt_console": r.cookies["lt_console"].value}

    async def cell(system: str) -> str:
        html = await (await hut.client.get("/admin/directory?lang=en", cookies=cookie)).text()
        found = re.search(rf'<tr id="system-{system}">.*?<td class="tokens">(.*?)</td>', html, re.S)
        assert found is not None, html
        return found.group(1)

    creds = {c.system_id: c for c in hut.hub.directory.current.credentials.values()}
    assert await cell("sys-a") == iso(creds["sys-a"].expires_us)
    assert (await _issue(hut, "sys-a", {"days": 0}))[0] == 201
    assert await cell("sys-a") == "No end"
    x_token = hut.tokens["sys-x"].split(".")[0]
    r = await hut.client.post(
        f"/api/v1/admin/tokens/{x_token}/revoke", json={}, headers=hut.auth("admin")
    )
    assert r.status == 200
    assert await cell("sys-x") == "—"  # every token revoked: no access to end
    status, lasting = await _issue(hut, "auditor", {"days": 0})
    assert status == 201
    hut.hub.clock = LaterClock(366)
    # The session runs on the hub's clock too: a year on, it has ended; the auditor's
    # token of a year has as well, so it logs in with the new one, which has no end.
    html = await (await hut.client.get("/admin/directory?lang=en", cookies=cookie)).text()
    assert 'action="/admin/login"' in html
    r = await hut.client.post(
        "/admin/login", data={"token": hut.tokens["auditor"]}, allow_redirects=False
    )
    assert r.status == 401 and "lt_console" not in r.cookies
    r = await hut.client.post(
        "/admin/login", data={"token": lasting["token"]}, allow_redirects=False
    )
    cookie = {"lt_console": r.cookies["lt_console"].value}
    assert await cell("sys-b") == f"<strong>Expired</strong> {iso(creds['sys-b'].expires_us)}"
