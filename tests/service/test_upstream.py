"""Taking packages from the upstream axis (the in-process double) through the same
intake pipeline, directory synchronisation, and the circuit breaker."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from adapters.vxp_axis import VxpAxis
from adapters.vxp_client import VxpClient
from hub.edxml import demo
from hub.edxml.builder import build
from hub.errors import NotFound, PackageTooLarge, Unavailable, UpstreamRejected
from hub.ports import RemoteItem, RemoteOrgan
from hub.service.breaker import CircuitBreaker
from tests.service.harness import A, B, C, HubUnderTest, eventually


def _axis(hut: HubUnderTest) -> object:
    axis = hut.hub.parts.upstream
    assert axis is not None
    return axis


async def test_a_package_from_upstream_is_delivered_locally_then_confirmed(
    hut: HubUnderTest,
) -> None:
    axis = _axis(hut)
    poller = hut.hub.poller
    assert poller is not None
    # C (upstream) writes to B (ours) and to another upstream organ: only B is ours.
    data = demo.document_bytes(sender=C, to=(B, "000.00.00.G09"))
    axis.waiting["up-1"] = ("edoc", data)  # type: ignore[attr-defined]
    assert await poller.take(RemoteItem("up-1", "edoc")) == "accepted"
    assert axis.confirmed == {"up-1": "done"}  # type: ignore[attr-defined]
    items = await eventually(lambda: hut.inbox("sys-b"), lambda xs: len(xs) == 1)
    assert items[0]["sender"] == C
    pid = items[0]["id"]
    assert [d.recipient for d in await hut.hub.store.deliveries(pid)] == [B]
    received = next(e for e in await hut.hub.store.events(pid) if e.type == "received")
    assert received.data["source"] == "upstream" and received.data["upstream_id"] == "up-1"
    # Taken again (we crashed before confirming): nothing new, confirmed done.
    axis.waiting["up-1b"] = ("edoc", data)  # type: ignore[attr-defined]
    assert await poller.take(RemoteItem("up-1b", "edoc")) == "duplicate"
    assert len(await hut.inbox("sys-b")) == 1


async def test_refused_packages_are_answered_fail_and_recorded(hut: HubUnderTest) -> None:
    axis = _axis(hut)
    poller = hut.hub.poller
    assert poller is not None
    cases = {
        "bad-xml": b"<edXML",
        "not-ours": demo.document_bytes(sender=C, to=("000.00.00.G09",)),
        "as-local": demo.document_bytes(sender=A, to=(B,)),  # upstream may not speak for A
    }
    for doc_id, data in cases.items():
        axis.waiting[doc_id] = ("edoc", data)  # type: ignore[attr-defined]
        assert await poller.take(RemoteItem(doc_id, "edoc")) == "refused"
        assert axis.confirmed[doc_id] == "fail"  # type: ignore[attr-defined]
    codes = {e.data["code"] for e in await hut.hub.store.ledger(0, 10_000) if e.type == "refused"}
    assert {"not_well_formed", "no_local_recipient", "sender_not_allowed"} <= codes
    assert await hut.inbox("sys-b", state="all") == []


async def test_an_answer_over_the_size_limit_is_refused_and_answered_fail(
    hut: HubUnderTest,
) -> None:
    """The axis's bytes are bounded like an agency's: one oversized document is refused,
    recorded and answered ``fail`` (it must not stall the documents behind it)."""
    axis = _axis(hut)
    poller = hut.hub.poller
    assert poller is not None
    axis.answer_limit = 4096  # type: ignore[attr-defined]
    big = demo.document_bytes(sender=C, to=(B,), payload=b"x" * 8192, number="big")
    small = demo.document_bytes(sender=C, to=(B,), number="small")
    axis.waiting.update({"big": ("edoc", big), "small": ("edoc", small)})  # type: ignore[attr-defined]
    assert await poller.poll_once() == 2
    assert axis.confirmed == {"big": "fail", "small": "done"}  # type: ignore[attr-defined]
    refusals = await hut.refusals()
    assert [(r["code"], r["source"], r["actor"]) for r in refusals] == [
        ("upstream_answer_too_large", "upstream", f"system:{poller.caller().system_id}")
    ]
    await eventually(lambda: hut.inbox("sys-b"), lambda xs: len(xs) == 1)


async def test_the_vxp_client_reads_an_answer_only_up_to_its_limit(hut: HubUnderTest) -> None:
    client = hut.vxp("sys-a")
    try:
        assert await client.agencies()  # the directory's answer is a few hundred bytes
        client.max_answer_bytes = 64
        with pytest.raises(PackageTooLarge) as err:
            await client.agencies()
        assert err.value.error_code == "upstream_answer_too_large"
    finally:
        await client.close()


async def test_an_answer_of_unknown_length_is_cut_at_the_limit() -> None:
    """A chunked answer (no Content-Length) is counted as it arrives."""

    async def endless(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)  # chunked: no length announced
        for _ in range(64):
            await resp.write(b"x" * 65536)  # 4 MB in all
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_post("/getAgenciesList", endless)
    async with TestServer(app) as server:
        client = VxpClient(str(server.make_url("")).rstrip("/"), "sys-a", "secret")
        client.max_answer_bytes = 300_000
        try:
            with pytest.raises(PackageTooLarge) as err:
                await client.agencies()
        finally:
            await client.close()
    assert err.value.error_code == "upstream_answer_too_large"


async def test_documents_are_taken_with_download_edoc_into_a_spool(hut: HubUnderTest) -> None:
    """``[upstream] take = downloadEdoc``: raw bytes, a large document written to a spool
    as it arrives (this hub's own VXP face plays the axis, sys-b the taking hub)."""
    big = demo.document_bytes(sender=A, to=(B,), number="big", payload=bytes(range(256)) * 6000)
    small = demo.document_bytes(sender=A, to=(B,), number="small")
    for data in (big, small):
        assert (await hut.submit("sys-a", data)).status == 202
    axis = VxpAxis(hut.vxp("sys-b"), CircuitBreaker(3, 1.0), take="downloadEdoc")
    try:
        items = await eventually(lambda: axis.pending("edoc"), lambda xs: len(xs) == 2)
        taken = {}
        for item in items:
            t = await axis.fetch(item.doc_id, hut.hub.blobs)
            taken[t.size] = t
        large, little = taken[len(big)], taken[len(small)]
        assert large.spool is not None and large.body == b""  # never whole in memory
        assert large.spool.path.read_bytes() == big
        assert large.sha256 == hashlib.sha256(big).hexdigest()
        assert little.spool is None and little.body == small
        large.spool.discard()
        with pytest.raises(NotFound):
            await axis.fetch("no-such-document", hut.hub.blobs)
    finally:
        await axis.close()
    spool = Path(hut.cfg.blobs.path) / ".spool"
    assert not spool.exists() or list(spool.iterdir()) == []


async def test_nothing_is_confirmed_when_the_store_cannot_commit(hut: HubUnderTest) -> None:
    axis = _axis(hut)
    poller = hut.hub.poller
    assert poller is not None
    axis.waiting["st-1"] = ("status", build(demo.status("01", addressee=B, sender=C)))  # type: ignore[attr-defined]

    async def down(*_a: object, **_k: object) -> None:
        raise Unavailable("store down for the test")

    original = hut.hub.store.commit_intake
    hut.hub.store.commit_intake = down  # type: ignore[method-assign]
    poller.intake._committed_anyway = lambda *_a, **_k: _false()  # type: ignore[method-assign]
    try:
        with pytest.raises(Unavailable):
            await poller.take(RemoteItem("st-1", "status"))
    finally:
        hut.hub.store.commit_intake = original  # type: ignore[method-assign]
    assert "st-1" not in axis.confirmed  # type: ignore[attr-defined]
    assert await poller.take(RemoteItem("st-1", "status")) == "accepted"


async def _false() -> bool:
    return False


async def test_directory_sync_adds_and_updates_upstream_organs(hut: HubUnderTest) -> None:
    axis = _axis(hut)
    poller = hut.hub.poller
    assert poller is not None
    axis.directory = [  # type: ignore[attr-defined]
        RemoteOrgan("000.00.00.G09", "Bo Y te", aliases=("G09",)),
        RemoteOrgan(C, "Bo Ngoai giao (renamed)"),
        RemoteOrgan(B, "not theirs to rename"),  # ours: untouched
    ]
    counts = await poller.sync()
    assert counts == {"added": 1, "updated": 1, "unchanged": 0, "ours": 1}
    d = hut.hub.directory.current
    assert d.resolve("G09") is not None and d.resolve("G09").location == "upstream"  # type: ignore[union-attr]
    assert d.organs[C].name == "Bo Ngoai giao (renamed)"
    assert d.organs[B].location == "local" and d.organs[B].system_id == "sys-b"
    assert (await poller.sync())["unchanged"] == 2  # incremental: nothing rewritten
    axis.directory = [RemoteOrgan(C, "Bo Ngoai giao (renamed)", deleted=True)]  # type: ignore[attr-defined]
    await poller.sync()
    assert hut.hub.directory.current.organs[C].closed


async def test_circuit_breaker_opens_and_half_opens() -> None:
    now = [0.0]
    changes: list[bool] = []
    breaker = CircuitBreaker(2, 10.0, clock=lambda: now[0], on_change=changes.append)

    async def down() -> str:
        raise Unavailable("down")

    async def up() -> str:
        return "ok"

    for _ in range(2):
        with pytest.raises(Unavailable):
            await breaker.call(down)
    assert breaker.is_open and changes == [True]
    with pytest.raises(Unavailable) as err:
        await breaker.call(up)  # open: not even tried
    assert err.value.error_code == "upstream_circuit_open"
    now[0] = 11.0
    with pytest.raises(Unavailable):
        await breaker.call(down)  # the half-open trial fails: open again
    assert breaker.is_open
    now[0] = 22.0
    assert await breaker.call(up) == "ok"  # the trial succeeds: closed
    assert not breaker.is_open and changes == [True, False]


async def test_a_half_open_trial_that_is_refused_or_cancelled_does_not_stick() -> None:
    """Only ``Unavailable`` is a failure: a refusal is an answer from a live axis, and a
    cancelled trial leaves the next call to be the trial (it used to stay open for good)."""
    now = [0.0]
    breaker = CircuitBreaker(1, 10.0, clock=lambda: now[0])

    async def down() -> str:
        raise Unavailable("down")

    async def refused() -> str:
        raise UpstreamRejected("no such organ", code="upstream_rejected")

    async def hangs() -> str:
        await asyncio.sleep(3600)
        return "never"

    with pytest.raises(Unavailable):
        await breaker.call(down)
    now[0] = 11.0
    with pytest.raises(UpstreamRejected):
        await breaker.call(refused)  # the trial got an answer: closed
    assert not breaker.is_open
    with pytest.raises(Unavailable):
        await breaker.call(down)
    now[0] = 22.0
    trial = asyncio.create_task(breaker.call(hangs))
    await asyncio.sleep(0)
    trial.cancel()
    with pytest.raises(asyncio.CancelledError):
        await trial
    with pytest.raises(UpstreamRejected):  # tried, not "circuit open"
        await breaker.call(refused)
    assert not breaker.is_open


async def test_a_large_first_sync_is_one_directory_change(hut: HubUnderTest) -> None:
    """A national directory of a thousand organs lands in one transaction, one version."""
    axis = _axis(hut)
    poller = hut.hub.poller
    assert poller is not None
    axis.directory = [  # type: ignore[attr-defined]
        RemoteOrgan(f"000.00.{i % 100:02d}.G{10 + i // 100:02d}", f"Organ {i}") for i in range(1000)
    ] + [RemoteOrgan("bad id", "refused, skipped")]
    before = await hut.hub.store.directory_version()
    counts = await poller.sync()
    assert counts["added"] == 1000
    assert await hut.hub.store.directory_version() == before + 1
    assert (
        len([o for o in hut.hub.directory.current.organs.values() if o.name.startswith("Organ ")])
        == 1000
    )
    saved = [e for e in await hut.hub.store.ledger(0, 100_000) if e.type == "directory_organ_saved"]
    assert sum(1 for e in saved if e.actor == "upstream-sync") == 1000


async def test_the_circuit_gauge_follows_the_breaker(hut: HubUnderTest) -> None:
    breaker = CircuitBreaker(1, 60.0)
    hut.hub._breaker = breaker  # as the factory wires one around a real upstream axis
    gauge = hut.hub.metrics.upstream_circuit
    await hut.hub.update_gauges()
    assert gauge._value.get() == 0.0

    async def down() -> str:
        raise Unavailable("down")

    with pytest.raises(Unavailable):
        await breaker.call(down)
    await hut.hub.update_gauges()
    assert gauge._value.get() == 1.0
