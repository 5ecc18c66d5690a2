"""Group commits: the coalescer on its own, and concurrent intakes and transitions on
each store giving every caller the answer it would have had alone."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from adapters.postgres_store import PostgresStore
from adapters.sql.batch import Coalescer
from adapters.sql.store import SqlStore
from adapters.sqlite_store import SqliteStore
from hub.errors import Unavailable
from hub.ports import Duplicate
from hub.records import DeliveryRow, Event, IntakeCommit, OutboxItem, PackageRow, State


class _Recorder:
    """A batch statement and its single form, recording what was sent."""

    def __init__(self, delay: float = 0.01) -> None:
        self.batches: list[list[int]] = []
        self.singles: list[int] = []
        self.delay = delay

    async def batch(self, items: Sequence[int]) -> list[int]:
        await asyncio.sleep(self.delay)
        if any(i < 0 for i in items):
            raise ValueError("a negative item")
        self.batches.append(list(items))
        return [i * 10 for i in items]

    async def one(self, item: int) -> int:
        await asyncio.sleep(self.delay)
        if item < 0:
            raise ValueError(f"negative: {item}")
        self.singles.append(item)
        return item * 10


async def test_calls_made_while_a_batch_is_out_leave_together() -> None:
    r = _Recorder()
    c = Coalescer(r.batch, r.one, lanes=1)
    alone = asyncio.create_task(c(0))
    await asyncio.sleep(0.001)  # out on the one lane
    at_once = [asyncio.create_task(c(i)) for i in range(1, 6)]
    await asyncio.sleep(0.001)
    later = [asyncio.create_task(c(i)) for i in range(6, 20)]
    got = await asyncio.gather(alone, *at_once, *later)
    assert got == [i * 10 for i in range(20)]
    assert r.singles == [0]  # the first found the lane free and went at once
    assert r.batches == [list(range(1, 20))]  # the rest gathered while it was out


async def test_one_bad_item_fails_alone() -> None:
    r = _Recorder()
    c = Coalescer(r.batch, r.one, lanes=1)
    got = await asyncio.gather(*(c(i) for i in (1, 2, -3, 4)), return_exceptions=True)
    assert got[:2] == [10, 20] and got[3] == 40
    assert isinstance(got[2], ValueError) and "negative: -3" in str(got[2])
    assert r.batches == []  # the batch failed as a whole, then each item ran alone
    assert sorted(r.singles) == [1, 2, 4]


async def test_an_unavailable_store_fails_the_batch_without_retrying_items() -> None:
    singles: list[int] = []

    async def batch(items: Sequence[int]) -> list[int]:
        raise Unavailable("down", code="store_unavailable")

    async def one(item: int) -> int:
        singles.append(item)
        await asyncio.sleep(0.01)
        return item

    c = Coalescer(batch, one, lanes=1)
    got = await asyncio.gather(*(c(i) for i in range(5)), return_exceptions=True)
    assert all(isinstance(g, Unavailable) for g in got)
    assert singles == []  # a store that is down is not asked again, item by item


async def test_a_cancelled_caller_leaves_its_batch_running() -> None:
    r = _Recorder(delay=0.05)
    c = Coalescer(r.batch, r.one, lanes=1)
    first = asyncio.create_task(c(1))
    await asyncio.sleep(0)
    second, third = asyncio.create_task(c(2)), asyncio.create_task(c(3))
    await asyncio.sleep(0.01)
    second.cancel()
    assert await first == 10 and await third == 30
    assert r.batches == [[2, 3]]  # the cancelled caller's item was still written


async def test_closing_tells_every_waiter_unavailable() -> None:
    r = _Recorder(delay=10)
    c = Coalescer(r.batch, r.one, lanes=1)
    calls = [asyncio.create_task(c(i)) for i in range(3)]
    await asyncio.sleep(0.01)
    await c.close()
    got = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(g, Unavailable) for g in got)


# ------------------------------------------------------------------ on the stores
def _commit(n: int, sha: str | None = None) -> IntakeCommit:
    pid = str(uuid.uuid4())
    p = PackageRow(
        pid,
        sha or f"{n:064x}",
        100,
        "edoc",
        "000.00.01.H01",
        "sys-a",
        n,
        document_id=f"doc-{n}",
        dedupe_key=f"key-{n}",
    )
    d = DeliveryRow(str(uuid.uuid4()), pid, "000.00.02.H02", "local", State.PENDING, updated_us=n)
    events = (Event("received", n, pid, organ=p.sender_organ, data={"n": n}),)
    outbox = (OutboxItem(str(uuid.uuid4()), "local", {"delivery_id": d.id}, n),)
    return IntakeCommit(p, (d,), events, outbox)


def _count_batches(store: SqlStore, lane: str, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The sizes of the grouped statements a PostgreSQL store's coalescer sends."""
    sizes: list[int] = []
    if isinstance(store, PostgresStore):
        coalescer = getattr(store, lane)
        many = coalescer._batch

        async def spy(items: Sequence[Any]) -> Sequence[Any]:
            sizes.append(len(items))
            return await many(items)

        monkeypatch.setattr(coalescer, "_batch", spy)
    return sizes


async def _stored(store: SqlStore, n: int) -> list[IntakeCommit]:
    commits = [_commit(i) for i in range(n)]
    for c in commits:
        await store.commit_intake(c)
    return commits


async def test_concurrent_intakes_each_get_their_own_answer(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    grouped = _count_batches(store, "_intakes", monkeypatch)
    commits = [_commit(i) for i in range(40)]
    again = _commit(999, sha=commits[7].package.sha256)  # same sender, same bytes
    got = await asyncio.gather(
        *(store.commit_intake(c) for c in [*commits, again]), return_exceptions=True
    )
    assert got[:40] == [None] * 40
    dup = got[40]
    assert isinstance(dup, Duplicate)
    assert (dup.key, dup.existing_id) == ("same_bytes", commits[7].package.id)
    for c in commits:
        assert await store.package(c.package.id) is not None
        events = await store.events(c.package.id)
        assert [e.type for e in events] == ["received"]
    assert await store.package(again.package.id) is None
    if isinstance(store, PostgresStore):
        assert grouped and max(grouped) > 1, "concurrent intakes were not grouped"


async def test_concurrent_transitions_each_get_their_own_answer(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    ds = [c.deliveries[0] for c in await _stored(store, 30)]
    grouped = _count_batches(store, "_transitions", monkeypatch)

    def move(d: DeliveryRow, to: State, frm: State) -> asyncio.Future[bool]:
        ev = Event(str(to), 5, d.package_id, d.id, d.recipient, "test", {"to": str(to)})
        return asyncio.ensure_future(store.transition(d.id, frozenset({frm}), to, ev))

    # Every delivery made available twice at once: exactly one of each pair changes it.
    first = await asyncio.gather(
        *(move(d, State.AVAILABLE, State.PENDING) for d in ds for _ in range(2))
    )
    assert [first[i] or first[i + 1] for i in range(0, 60, 2)] == [True] * 30
    assert sum(first) == 30
    # ...then acknowledged from the right state, and not from a wrong one.
    second = await asyncio.gather(
        *(move(d, State.DONE, State.AVAILABLE) for d in ds[:15]),
        *(move(d, State.DONE, State.FETCHED) for d in ds[15:]),
    )
    assert second == [True] * 15 + [False] * 15
    for d in ds[:15]:
        row = await store.delivery(d.id)
        assert row is not None and row.state == State.DONE
        events = await store.events(d.package_id)
        assert [e.type for e in events] == ["received", "available", "done"]
    for d in ds[15:]:
        row = await store.delivery(d.id)
        assert row is not None and row.state == State.AVAILABLE
    if isinstance(store, PostgresStore):
        assert grouped and max(grouped) > 1, "concurrent transitions were not grouped"


async def test_concurrent_package_reads_each_get_their_own_package(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    commits = await _stored(store, 20)
    grouped = _count_batches(store, "_packages", monkeypatch)
    wanted = [c.package.id for c in commits] * 2 + [str(uuid.uuid4())]  # repeats, a stranger
    got = await asyncio.gather(*(store.package_with_deliveries(i) for i in wanted))
    assert got[-1] is None
    for pid, found in zip(wanted[:-1], got[:-1], strict=True):
        assert found is not None
        p, ds = found
        assert p.id == pid and [d.package_id for d in ds] == [pid]
    if isinstance(store, PostgresStore):
        assert grouped and max(grouped) > 1, "concurrent reads were not grouped"


async def test_sqlite_a_unit_failing_after_writing_is_undone_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Units of a SQLite batch run without savepoints; one that fails after writing makes
    the batch run again unit by unit, so only its own writes vanish."""
    store = SqliteStore(tmp_path / "hub.db")
    await store.open()
    runs: list[bool] = []
    run_units = store._run_units

    async def spy(conn: Any, batch: Any, *, savepoints: bool) -> Any:
        runs.append(savepoints)
        return await run_units(conn, batch, savepoints=savepoints)

    monkeypatch.setattr(store, "_run_units", spy)
    try:
        commits = [_commit(i) for i in range(4)]
        dup = _commit(99, sha=commits[0].package.sha256)

        async def half_then_fail(tx: Any) -> None:
            await tx.execute(
                "INSERT INTO outbox (id, routing_key, body, created_us) VALUES (?,?,?,?)",
                "half",
                "local",
                "{}",
                1,
            )
            raise RuntimeError("failed after writing")

        # First a batch where the only failure wrote nothing (a duplicate): no rerun.
        await store.commit_intake(commits[0])
        assert runs == [False]
        got = await asyncio.gather(
            *(store.commit_intake(c) for c in commits[1:3]),
            store.commit_intake(dup),
            return_exceptions=True,
        )
        assert got[:2] == [None, None] and isinstance(got[2], Duplicate)
        assert True not in runs
        # Then one that failed half-way, among others: it alone is undone.
        runs.clear()
        got = await asyncio.gather(
            store._write(half_then_fail), store.commit_intake(commits[3]), return_exceptions=True
        )
        assert isinstance(got[0], RuntimeError) and got[1] is None
        assert runs == [False, True], runs
        for c in commits:
            assert await store.package(c.package.id) is not None
        assert await store.package(dup.package.id) is None
        leftover = await store._read(lambda tx: tx.fetch("SELECT id FROM outbox WHERE id = 'half'"))
        assert leftover == []
    finally:
        await store.close()
