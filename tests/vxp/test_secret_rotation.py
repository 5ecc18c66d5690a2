"""Rotating a system's VXP secret: at once, or with an overlap during which the secret it
replaced is still accepted (and counted, so the administrator sees who has not changed
yet); both backends."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from adapters.vxp_client import VxpClient, VxpError
from hub.ports import SystemClock
from hub.service.audit import iso
from tests.service.harness import HubUnderTest, LaterClock

DAY_US = 86_400_000_000


async def _rotate(h: HubUnderTest, body: dict[str, Any]) -> tuple[int, Any]:
    r = await h.client.post(
        "/api/v1/admin/systems/sys-a/vxp-secret", json=body, headers=h.auth("admin")
    )
    return r.status, await r.json()


async def _works(h: HubUnderTest, secret: str) -> bool | str:
    """True when a VXP call signed with ``secret`` is accepted; else the refusal's code."""
    client = VxpClient(str(h.client.make_url(h.cfg.vxp.base_path)), "sys-a", secret)
    try:
        await client.agencies()
    except VxpError as exc:
        return exc.desc.split(":")[0]
    finally:
        await client.close()
    return True


async def _previous_used(h: HubUnderTest) -> float:
    r = await h.client.get("/metrics", headers=h.auth("auditor"))
    for family in text_string_to_metric_families(await r.text()):
        for s in family.samples:
            if s.name == "lienthong_vxp_previous_secret_total" and s.labels["system"] == "sys-a":
                return s.value
    return 0.0


async def test_a_rotation_with_an_overlap_accepts_both_secrets_until_it_ends(
    hut: HubUnderTest,
) -> None:
    first = hut.tokens["vxp:sys-a"]
    for bad, code in (({"overlap_days": -1}, "bad_days"), ({"overlap_days": "7"}, "bad_parameter")):
        status, body = await _rotate(hut, bad)
        assert (status, body["error"]["code"]) == (400, code), bad
    r = await hut.client.post(
        "/api/v1/admin/systems/sys-a/vxp-secret", json={}, headers=hut.auth("sys-b")
    )
    assert r.status == 403  # administrators only
    assert await _works(hut, first) is True

    before = SystemClock().now_us()
    status, body = await _rotate(hut, {"overlap_days": 7})
    assert status == 201 and body["secret"] != first
    second = body["secret"]
    until = hut.hub.directory.current.vxp_previous["sys-a"][1]
    assert before + 7 * DAY_US <= until <= SystemClock().now_us() + 7 * DAY_US
    assert body["previous_until"] == iso(until)
    assert await _works(hut, second) is True
    assert await _previous_used(hut) == 0
    assert await _works(hut, first) is True  # the agency has not changed yet: counted
    assert await _works(hut, first) is True
    assert await _previous_used(hut) == 2
    listed = await hut.client.get("/api/v1/admin/directory", headers=hut.auth("auditor"))
    systems = {s["system_id"]: s for s in (await listed.json())["systems"]}
    assert systems["sys-a"]["vxp_previous_until"] == iso(until)
    assert systems["sys-b"]["vxp_previous_until"] is None
    text = await listed.text()
    assert first not in text and second not in text

    # Past the overlap the old secret is refused; the new one works.
    hut.hub.clock = LaterClock(8)
    assert await _works(hut, first) == "vxp_bad_signature"
    assert await _works(hut, second) is True

    # A rotation without an overlap refuses the secret it replaces at once, and ends any
    # overlap still running.
    hut.hub.clock = SystemClock()
    status, body = await _rotate(hut, {"overlap_days": 3})
    third = body["secret"]
    assert await _works(hut, second) is True
    status, body = await _rotate(hut, {})
    assert status == 201 and body["previous_until"] is None
    assert await _works(hut, third) == "vxp_bad_signature"
    assert await _works(hut, second) == "vxp_bad_signature"
    assert await _works(hut, body["secret"]) is True

    events = [
        e.data
        for e in await hut.hub.store.ledger(0, 10_000)
        if e.type == "directory_vxp_secret_issued" and e.actor == "system:admin"
    ]
    assert [e["previous_until_us"] is not None for e in events] == [True, True, False]
    assert all(e["system_id"] == "sys-a" for e in events)


@pytest.mark.parametrize("days", [0, 5])
async def test_a_first_secret_has_nothing_to_overlap(hut: HubUnderTest, days: int) -> None:
    r = await hut.client.post(
        "/api/v1/admin/systems",
        json={"system_id": "sys-new", "name": "New"},
        headers=hut.auth("admin"),
    )
    assert r.status == 200, await r.text()
    r = await hut.client.post(
        "/api/v1/admin/systems/sys-new/vxp-secret",
        json={"overlap_days": days},
        headers=hut.auth("admin"),
    )
    body = await r.json()
    assert r.status == 201 and body["previous_until"] is None and len(body["secret"]) >= 32
    assert "sys-new" not in hut.hub.directory.current.vxp_previous
