"""Admission: caps on the uploads one system may have in flight, and their refusals."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from hub.config import load
from hub.edxml import demo
from hub.errors import ConfigError, TooManyUploads, Unavailable
from hub.service.admission import UploadSlots
from hub.vxp import protocol as vxp
from tests.service.harness import A, B, HubUnderTest


def test_slots_cap_each_system_and_are_given_back() -> None:
    slots = UploadSlots(per_system=2, large_per_system=1, large_total=2)
    with slots.hold("s1", large=False), slots.hold("s1", large=True):
        assert slots.in_flight("s1") == (2, 1)
        with pytest.raises(TooManyUploads) as third, slots.hold("s1", large=False):
            pass
        assert third.value.error_code == "too_many_uploads"
        with slots.hold("s2", large=True):  # another system has its own slots
            # ...but the large ones of all systems are capped together
            with pytest.raises(Unavailable) as busy, slots.hold("s3", large=True):
                pass
            assert busy.value.error_code == "large_uploads_busy"
    assert slots.in_flight("s1") == (0, 0)
    with slots.hold("s1", large=True):
        with pytest.raises(TooManyUploads) as large, slots.hold("s1", large=True):
            pass
        assert large.value.error_code == "too_many_large_uploads"
        assert slots.in_flight("s1") == (1, 1)  # the refused one took nothing


def test_a_slot_is_given_back_when_the_upload_fails() -> None:
    slots = UploadSlots(per_system=1, large_per_system=1, large_total=1)
    with pytest.raises(RuntimeError), slots.hold("s1", large=True):
        raise RuntimeError("the client went away")
    assert slots.in_flight("s1") == (0, 0)
    with slots.hold("s1", large=True):  # usable again, by the same and by any system
        assert slots.in_flight("s1") == (1, 1)


def test_caps_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        UploadSlots(per_system=0, large_per_system=1, large_total=1)


class _Slow:
    """A request body that sends its first bytes, then waits to be released."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    async def body(self) -> AsyncIterator[bytes]:
        yield self.data[:100]
        self.started.set()
        await self.release.wait()
        yield self.data[100:]


async def _held(hut: HubUnderTest, slow: _Slow, *, length: bool) -> asyncio.Task[Any]:
    """An upload of sys-a left in flight (sized: a small one; chunked: a large one)."""
    headers = {**hut.auth("sys-a"), "Content-Type": "application/xml"}
    if length:
        headers["Content-Length"] = str(len(slow.data))
    task = asyncio.create_task(
        hut.client.post("/api/v1/packages", data=slow.body(), headers=headers)
    )
    await asyncio.wait_for(slow.started.wait(), 10)
    await asyncio.sleep(0.1)  # the hub has taken the slot and is reading the body
    return task


async def test_uploads_over_a_systems_cap_get_429_and_are_recorded(hut: HubUnderTest) -> None:
    hut.hub.uploads = UploadSlots(per_system=1, large_per_system=1, large_total=4)
    slow = _Slow(demo.document_bytes(sender=A, to=(B,), number="held"))
    first = await _held(hut, slow, length=True)

    r = await hut.submit("sys-a", demo.document_bytes(sender=A, to=(B,), number="second"))
    assert r.status == 429
    assert r.headers["Retry-After"] == "1"
    assert (await r.json())["error"]["code"] == "too_many_uploads"
    other = await hut.submit("sys-b", demo.document_bytes(sender=B, to=(A,), number="b1"))
    assert other.status == 202, await other.text()  # another system is not held back
    client = hut.vxp("sys-a")  # the VXP face shares the cap
    data = demo.document_bytes(sender=A, to=(B,), number="vxp")
    params = {"from": A, "servicetype": "eDoc", "messagetype": "edoc"}
    status, raw = await client.raw(
        "sendEdoc", {**params, "hash-file": vxp.hash_file(data)}, body=data + b"\r\n"
    )
    await client.close()
    answer = json.loads(raw)
    assert status == 429 and answer["status"] == "FAIL" and answer["ErrorCode"] == "20"
    assert answer["ErrorDesc"].startswith("too_many_uploads:")

    slow.release.set()
    held = await first
    assert held.status == 202, await held.text()
    again = await hut.submit("sys-a", demo.document_bytes(sender=A, to=(B,), number="second"))
    assert again.status == 202, await again.text()  # the slot was given back
    refusals = await hut.refusals()
    assert [(x["code"], x["actor"]) for x in refusals] == [
        ("too_many_uploads", "system:sys-a"),
        ("too_many_uploads", "vxp:sys-a"),
    ]
    assert refusals[0]["source"] == "native" and refusals[1]["op"] == "sendEdoc"
    assert hut.hub.uploads.in_flight("sys-a") == (0, 0)


async def test_large_uploads_have_their_own_cap(hut: HubUnderTest) -> None:
    hut.hub.uploads = UploadSlots(per_system=4, large_per_system=1, large_total=4)
    slow = _Slow(demo.document_bytes(sender=A, to=(B,), number="big"))
    first = await _held(hut, slow, length=False)  # no Content-Length: spooled, large
    assert hut.hub.uploads.in_flight("sys-a") == (1, 1)

    headers = {**hut.auth("sys-a"), "Content-Type": "application/xml"}

    async def chunked() -> AsyncIterator[bytes]:
        yield demo.document_bytes(sender=A, to=(B,), number="big2")

    r = await hut.client.post("/api/v1/packages", data=chunked(), headers=headers)
    assert r.status == 429
    assert (await r.json())["error"]["code"] == "too_many_large_uploads"
    small = await hut.submit("sys-a", demo.document_bytes(sender=A, to=(B,), number="small"))
    assert small.status == 202, await small.text()  # small uploads still pass
    slow.release.set()
    assert (await first).status == 202
    assert [x["code"] for x in await hut.refusals()] == ["too_many_large_uploads"]


@pytest.mark.parametrize(
    "key", ["max_uploads_per_system", "max_large_uploads_per_system", "max_large_uploads"]
)
def test_a_cap_of_zero_is_refused_at_start(key: str) -> None:
    with pytest.raises(ConfigError, match=f"{key} must be at least 1"):
        load(None, env={f"LIENTHONG_SERVER_{key.upper()}": "0"})
    assert getattr(load(None, env={f"LIENTHONG_SERVER_{key.upper()}": "3"}).server, key) == 3


async def test_large_packages_are_examined_a_few_at_a_time(
    hut: HubUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """However many large uploads are in flight, only ``[intake] large_examinations`` are
    parsed and verified at once: that, not the uploads, bounds their memory."""
    intake = hut.hub.intake
    monkeypatch.setattr(intake, "_large", asyncio.Semaphore(2))
    examine = intake._examine
    running, peak = [0], [0]
    lock = threading.Lock()

    def counted(*args: Any) -> Any:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        try:
            time.sleep(0.2)  # long enough for every upload to be waiting by now
            return examine(*args)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(intake, "_examine", counted)
    payload = bytes(range(256)) * 2400  # ~800 KB in base64: examined in a thread
    datas = [
        demo.document_bytes(sender=A, to=(B,), number=f"L{i}", payload=payload) for i in range(5)
    ]
    answers = await asyncio.gather(*(hut.submit("sys-a", d) for d in datas))
    assert [r.status for r in answers] == [202] * 5
    assert peak[0] == 2


def test_large_examinations_must_be_at_least_one() -> None:
    with pytest.raises(ConfigError, match="large_examinations must be at least 1"):
        load(None, env={"LIENTHONG_INTAKE_LARGE_EXAMINATIONS": "0"})
    assert (
        load(None, env={"LIENTHONG_INTAKE_LARGE_EXAMINATIONS": "1"}).intake.large_examinations == 1
    )
