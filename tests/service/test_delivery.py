"""Push delivery with retries, dead deliveries, the audited resend, an upstream outage,
and 503 while the store is down (both backends)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hub.edxml import demo
from hub.errors import Unavailable
from hub.ports import Message, SystemClock
from hub.records import DeliveryRow, State
from hub.service.delivery import Deliverer, RetryBudget, outbox_for_package, resume_pushes
from hub.service.metrics import Metrics
from tests.service import harness
from tests.service.harness import PUSHED, A, B, C, Endpoint, HubUnderTest, X, eventually


async def _delivery(h: HubUnderTest, pid: str, organ: str) -> dict[str, Any]:
    r = await h.client.get(f"/api/v1/packages/{pid}/deliveries", headers=h.auth("sys-a"))
    return next(d for d in (await r.json())["deliveries"] if d["recipient"] == organ)


async def test_push_posts_the_exact_bytes(pushed: tuple[HubUnderTest, Endpoint]) -> None:
    h, endpoint = pushed
    data = demo.document_bytes(sender=A, to=(PUSHED,))
    pid = (await (await h.submit("sys-a", data)).json())["id"]
    d = await eventually(lambda: _delivery(h, pid, PUSHED), lambda d: d["state"] == "fetched")
    assert d["route"] == "push"
    headers, body = endpoint.received[0]
    assert body == data and headers["X-Lienthong-Package-Id"] == pid


async def test_a_large_package_is_pushed_as_it_is_read(
    pushed: tuple[HubUnderTest, Endpoint],
) -> None:
    """Over 1 MB the push streams from the blob store, with its length declared."""
    h, endpoint = pushed
    data = demo.document_bytes(sender=A, to=(PUSHED,), payload=bytes(range(256)) * (8 * 1024))
    assert len(data) > 2 * 1024 * 1024
    pid = (await (await h.submit("sys-a", data)).json())["id"]
    await eventually(lambda: _delivery(h, pid, PUSHED), lambda d: d["state"] == "fetched")
    headers, body = endpoint.received[0]
    assert body == data
    assert headers["Content-Length"] == str(len(data)) and "Transfer-Encoding" not in headers


async def test_failing_push_retries_then_dies_and_admin_resend_delivers(
    pushed: tuple[HubUnderTest, Endpoint],
) -> None:
    h, endpoint = pushed
    endpoint.fail = True
    pid = (await (await h.submit("sys-a", demo.document_bytes(sender=A, to=(PUSHED,)))).json())[
        "id"
    ]
    dead = await eventually(
        lambda: _delivery(h, pid, PUSHED), lambda d: d["state"] == "dead", timeout=30
    )
    assert dead["attempts"] == h.cfg.delivery.max_attempts
    assert "503" in dead["last_error"]
    types = [e.type for e in await h.hub.store.events(pid)]
    assert types.count("retry") == h.cfg.delivery.max_attempts - 1 and "dead" in types

    endpoint.fail = False
    r = await h.client.post(
        f"/api/v1/admin/deliveries/{dead['delivery_id']}/resend",
        json={"reason": "endpoint repaired"},
        headers=h.auth("admin"),
    )
    assert r.status == 202, await r.text()
    await eventually(lambda: _delivery(h, pid, PUSHED), lambda d: d["state"] == "fetched")
    assert len(endpoint.received) == 1
    resent = [e for e in await h.hub.store.events(pid) if e.type == "resent"]
    assert resent and resent[0].actor == "system:admin"
    assert resent[0].data["reason"] == "endpoint repaired"
    again = await h.client.post(
        f"/api/v1/admin/deliveries/{dead['delivery_id']}/resend", headers=h.auth("admin")
    )
    assert again.status == 409, "only a dead delivery can be resent"


async def test_upstream_outage_is_retried_until_it_is_back(hut: HubUnderTest) -> None:
    axis: Any = hut.hub.parts.upstream
    axis.fail_next = 2
    data = demo.document_bytes(sender=A, to=(B, C))
    pid = (await (await hut.submit("sys-a", data)).json())["id"]
    d = await eventually(lambda: _delivery(hut, pid, C), lambda d: d["state"] == "available")
    assert d["attempts"] == 2
    assert axis.forwarded == [(pid, data)]
    await eventually(lambda: hut.inbox("sys-b"), lambda xs: len(xs) == 1)  # local unaffected
    failures = hut.hub.metrics.upstream_failures.labels("forward")._value.get()
    assert failures == 2


async def test_upstream_refusal_is_dead_at_once(hut: HubUnderTest) -> None:
    from hub.errors import UpstreamRejected  # noqa: PLC0415

    axis: Any = hut.hub.parts.upstream

    async def refuse(*_a: object) -> str:
        raise UpstreamRejected("sendEdoc: VXP error 22: not edXML")

    axis.forward = refuse
    pid = (await (await hut.submit("sys-a", demo.document_bytes(sender=A, to=(C,)))).json())["id"]
    d = await eventually(lambda: _delivery(hut, pid, C), lambda d: d["state"] == "dead")
    assert d["attempts"] == 1 and "VXP error 22" in d["last_error"]


async def test_store_down_answers_503_and_commits_nothing(hut: HubUnderTest) -> None:
    await hut.hub.store.close()
    r = await hut.submit("sys-a", demo.document_bytes(sender=A, to=(B,)))
    assert r.status == 503
    assert (await r.json())["error"]["code"] == "store_unavailable"
    ready = await hut.client.get("/readyz")
    assert ready.status == 503
    assert (await ready.json())["checks"]["store"] == "store_unavailable"
    await hut.hub.store.open()
    assert await hut.inbox("sys-b", state="all") == []
    ok = await hut.submit("sys-a", demo.document_bytes(sender=A, to=(B,)))
    assert ok.status == 202


async def test_worker_log_lines_carry_the_package_and_delivery() -> None:
    import structlog  # noqa: PLC0415

    from hub.ports import Message  # noqa: PLC0415
    from hub.service.hub import _with_context  # noqa: PLC0415

    seen: dict[str, Any] = {}

    async def handler(_msg: Message) -> None:
        seen.update(structlog.contextvars.get_contextvars())

    wrapped = _with_context(handler, "local")
    await wrapped(Message("delivery.local", {"package_id": "p1", "delivery_id": "d1"}))
    assert seen == {"package_id": "p1", "delivery_id": "d1", "route": "local"}
    assert "package_id" not in structlog.contextvars.get_contextvars()  # unbound after


async def test_a_plain_http_endpoint_is_refused_when_saved_and_dead_at_once_when_held(
    tmp_path: Path, pki_dir: tuple[Path, dict[str, str]]
) -> None:
    """A directory written while http was allowed (or by an earlier version) keeps an
    http endpoint; a hub that does not allow http neither saves a new one nor pushes
    to the old one: the delivery is dead at once, with the reason, for an administrator
    to fix the endpoint and resend."""
    async with harness.pushed_hub(tmp_path, pki_dir, "embedded", allow_http_push=False) as (
        h,
        endpoint,
    ):
        r = await h.client.post(
            "/api/v1/admin/organs",
            json={
                "organ_id": "000.00.11.H53",
                "name": "So Y te",
                "system_id": "sys-p",
                "push_url": "http://dms.example/inbox",
            },
            headers=h.auth("admin"),
        )
        assert r.status == 400 and (await r.json())["error"]["code"] == "push_url_not_https"
        assert h.hub.directory.current.resolve("000.00.11.H53") is None
        held = h.hub.directory.current.organs[PUSHED]
        r = await h.client.post(  # saved again for another reason: the held URL is no bar
            "/api/v1/admin/organs",
            json={
                "organ_id": PUSHED,
                "name": "Pushed organ (renamed)",
                "system_id": "sys-p",
                "push_url": held.push_url,
            },
            headers=h.auth("admin"),
        )
        assert r.status in (200, 201), await r.text()
        await h.hub.directory.load()

        data = demo.document_bytes(sender=A, to=(PUSHED,))
        pid = (await (await h.submit("sys-a", data)).json())["id"]
        dead = await eventually(lambda: _delivery(h, pid, PUSHED), lambda d: d["state"] == "dead")
        assert dead["attempts"] == 1 and "push_url_not_https" in dead["last_error"]
        assert endpoint.received == []  # nothing crossed the network in the clear
        assert "dead" in [e.type for e in await h.hub.store.events(pid)]


async def test_resuming_a_system_of_many_organs_asks_in_chunks_and_moves_every_push() -> None:
    """A system serving more organs than one query names: its parked pushes are found
    chunk by chunk, a page at a time, and each moved once with its outbox message."""
    organs = [f"000.00.{i // 100:02d}.H{i % 100:02d}" for i in range(1_203)]
    parked = {
        o: [DeliveryRow(f"d-{o}-{k}", "p", o, "push", State.AVAILABLE) for k in range(2)]
        for o in organs[::7]
    }

    class Store:
        def __init__(self) -> None:
            self.asked: list[int] = []
            self.moved: list[tuple[str, int]] = []

        async def parked_pushes(self, names: Any, mark: str, limit: int) -> list[DeliveryRow]:
            assert mark == "system_suspended"
            self.asked.append(len(names))
            found = [d for o in names for d in parked.get(o, [])]
            return found[:limit]

        async def transition(self, delivery_id: str, *_: Any, **kw: Any) -> bool:
            d = next(d for ds in parked.values() for d in ds if d.id == delivery_id)
            parked[d.recipient].remove(d)
            self.moved.append((delivery_id, len(kw["outbox"])))
            return True

    store = Store()
    n = await resume_pushes(store, SystemClock(), organs, "system:admin")  # type: ignore[arg-type]
    assert n == 2 * len(organs[::7]) == len(store.moved)
    assert {count for _, count in store.moved} == {1}
    assert max(store.asked) <= 500 and sum(1 for a in store.asked if a) >= 3
    assert all(not ds for ds in parked.values())


def test_a_package_starts_its_local_deliveries_with_one_message() -> None:
    """One broker message (and outbox row) for all of a package's local recipients; one
    per push or upstream delivery, each with its own retry budget."""
    rows = [
        DeliveryRow("d-b", "p", B, "local", State.PENDING),
        DeliveryRow("d-c", "p", C, "upstream", State.PENDING),
        DeliveryRow("d-x", "p", X, "local", State.PENDING),
        DeliveryRow("d-p", "p", PUSHED, "push", State.PENDING),
    ]
    items = outbox_for_package(rows, 7)
    assert [i.routing_key for i in items] == [
        "delivery.local",
        "delivery.upstream",
        "delivery.push",
    ]
    assert items[0].body == {
        "package_id": "p",
        "deliveries": [
            {"delivery_id": "d-b", "recipient": B},
            {"delivery_id": "d-x", "recipient": X},
        ],
    }
    assert items[1].body == {"delivery_id": "d-c", "package_id": "p", "recipient": C}
    assert len({i.id for i in items}) == 3 and {i.created_us for i in items} == {7}
    single = outbox_for_package(rows[:2], 7)  # one local recipient: the plain reference
    assert single[0].body == {"delivery_id": "d-b", "package_id": "p", "recipient": B}


async def test_one_message_makes_every_local_delivery_available_once(hut: HubUnderTest) -> None:
    """The grouped message moves each local delivery once; delivered again (a broker
    redelivery, a sweep) it changes nothing, and a plain per-delivery reference (what the
    sweeper re-announces, what an older hub left queued) is still understood."""
    pid = (await (await hut.submit("sys-a", demo.document_bytes(sender=A, to=(B, X, C)))).json())[
        "id"
    ]
    for organ in (B, X):
        await eventually(lambda o=organ: _delivery(hut, pid, o), lambda d: d["state"] != "pending")
    rows = [d for d in await hut.hub.store.deliveries(pid) if d.route == "local"]
    assert len(rows) == 2
    (grouped,) = [i for i in outbox_for_package(rows, 1) if i.routing_key == "delivery.local"]
    await hut.hub.deliverer.local(Message(grouped.routing_key, grouped.body))
    single = outbox_for_package(rows[:1], 1)[0]
    await hut.hub.deliverer.local(Message(single.routing_key, single.body))
    available = [e.delivery_id for e in await hut.hub.store.events(pid) if e.type == "available"]
    assert sorted(available) == sorted(d.id for d in rows)


async def test_a_grouped_message_that_fails_part_way_moves_the_rest_when_redelivered() -> None:
    """A transition that fails (the store went away) fails the message, so the broker
    delivers it again; the deliveries already moved are not moved twice."""

    class Store:
        def __init__(self) -> None:
            self.state = {"d-1": State.PENDING, "d-2": State.PENDING}
            self.down = {"d-2"}

        async def transition(
            self, delivery_id: str, allowed: Any, to: State, *_: Any, **__: Any
        ) -> bool:
            if delivery_id in self.down:
                raise Unavailable("store down", code="store_unavailable")
            if self.state[delivery_id] not in allowed:
                return False
            self.state[delivery_id] = to
            return True

    store = Store()
    deliverer = Deliverer(
        store=store,  # type: ignore[arg-type]
        blobs=None,  # type: ignore[arg-type]
        clock=SystemClock(),
        metrics=Metrics(),
        directory=None,  # type: ignore[arg-type]
        upstream=None,
        pusher=None,
        budget=RetryBudget(),
    )
    rows = [DeliveryRow(f"d-{i}", "p", o, "local", State.PENDING) for i, o in ((1, B), (2, X))]
    (msg,) = outbox_for_package(rows, 1)
    with pytest.raises(Unavailable):
        await deliverer.local(Message(msg.routing_key, msg.body))
    assert store.state == {"d-1": State.AVAILABLE, "d-2": State.PENDING}
    store.down.clear()
    await deliverer.local(Message(msg.routing_key, msg.body))
    assert store.state == {"d-1": State.AVAILABLE, "d-2": State.AVAILABLE}
