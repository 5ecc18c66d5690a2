"""The SQLite store keeps the packages it read and follows its own committed changes:
after every kind of change, what it answers equals a fresh read of the file."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from adapters.package_cache import Move
from adapters.sql.store import SqlStore
from adapters.sqlite_store import SqliteStore
from hub.ports import Duplicate
from hub.records import (
    DeliveryRow,
    Event,
    IntakeCommit,
    OutboxItem,
    PackageRow,
    State,
    StatusUpdate,
)
from tests.service import harness

A, B, C = "000.00.01.H01", "000.00.02.H02", "000.00.03.H03"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    async with harness.opened(SqliteStore(tmp_path / "hub.db")) as s:
        yield s


def _intake(
    n: int, status_for: str | None = None, recipients: tuple[str, ...] = (B, C)
) -> IntakeCommit:
    pid = str(uuid.uuid4())
    p = PackageRow(
        pid,
        f"{n:064x}",
        100,
        "edoc",
        A,
        "sys-a",
        n,
        subject="Công văn",
        signature={"outcome": "verified", "chain": ["CN=a", "CN=ca"]},
        dedupe_key=f"key-{n}",
    )
    ds = tuple(
        DeliveryRow(str(uuid.uuid4()), pid, r, "local", State.PENDING, updated_us=n)
        for r in recipients
    )
    update = StatusUpdate(status_for, B, "03", n) if status_for else None
    return IntakeCommit(
        p,
        ds,
        (Event("received", n, pid, organ=A, data={"n": n}),),
        (OutboxItem(str(uuid.uuid4()), "local", {"package_id": pid}, n),),
        status_update=update,
    )


async def _same_as_the_file(store: SqliteStore, package_id: str) -> Any:
    kept = await store.package_with_deliveries(package_id)
    fresh = await SqlStore.package_with_deliveries(store, package_id)
    assert kept == fresh
    return kept


_FILE_READ = SqlStore.package_with_deliveries


def _file_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The packages read from the file from now on (the store's own reads, not kept)."""
    reads: list[str] = []

    async def counted(self: SqlStore, package_id: str) -> Any:
        reads.append(package_id)
        return await _FILE_READ(self, package_id)

    monkeypatch.setattr(SqlStore, "package_with_deliveries", counted)
    return reads


def _move(store: SqliteStore, d: DeliveryRow, frm: State, to: State, at: int, **kw: Any) -> Any:
    ev = Event(str(to), at, d.package_id, d.id, d.recipient, "test", {"to": str(to)})
    return store.transition(d.id, frozenset({frm}), to, ev, **kw)


async def test_kept_packages_follow_every_committed_change(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads = _file_reads(monkeypatch)
    commit = _intake(1)
    await store.commit_intake(commit)
    pid = commit.package.id
    b, c = commit.deliveries

    assert await store.package_with_deliveries(str(uuid.uuid4())) is None
    await _same_as_the_file(store, pid)
    reads.clear()
    for _ in range(3):
        await store.package_with_deliveries(pid)
    assert reads == [], "a kept package is answered without reading the file"

    # Transitions, as the SQL applies them: attempts and last error only when given.
    assert await _move(store, b, State.PENDING, State.AVAILABLE, 10)
    assert await _move(
        store, c, State.PENDING, State.RETRYING, 11, attempts=1, next_attempt_us=99, last_error="x"
    )
    assert await _move(store, c, State.RETRYING, State.AVAILABLE, 12)
    assert not await _move(store, b, State.PENDING, State.DONE, 13)  # from a wrong state
    kept = await _same_as_the_file(store, pid)
    assert [(d.state, d.attempts, d.next_attempt_us, d.last_error) for d in kept[1]] == [
        (State.AVAILABLE, 0, None, None),
        (State.AVAILABLE, 1, None, "x"),
    ]

    # Several at once, conflicting pairs among them, in one batch.
    got = await asyncio.gather(
        _move(store, b, State.AVAILABLE, State.FETCHED, 20),
        _move(store, b, State.AVAILABLE, State.FETCHED, 21),
        _move(store, c, State.AVAILABLE, State.FETCHED, 22),
    )
    assert sorted(got) == [False, True, True]
    await _same_as_the_file(store, pid)

    # A business status recorded by a later package's intake, then a purge.
    await store.commit_intake(_intake(2, status_for=pid))
    kept = await _same_as_the_file(store, pid)
    assert kept[1][0].business_status == "03"
    await store.mark_purged(pid, Event("purged", 30, pid, actor="retention", data={}))
    kept = await _same_as_the_file(store, pid)
    assert kept[0].purged_us == 30


async def test_a_package_is_kept_from_its_intake(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each recipient fetches a new package: the first fetch is answered without reading
    the file, with what a read would answer (the deliveries' numbers included), for
    packages committed together in one batch, beside a duplicate refused in it."""
    await store.commit_intake(_intake(10))  # numbers already taken before the batch
    commits = [_intake(11), _intake(12, recipients=(B,)), _intake(13, recipients=()), _intake(14)]
    duplicate = dataclasses.replace(
        _intake(99), package=dataclasses.replace(_intake(99).package, dedupe_key="key-11")
    )
    reads = _file_reads(monkeypatch)
    got = await asyncio.gather(
        *(store.commit_intake(c) for c in (commits[0], duplicate, *commits[1:])),
        return_exceptions=True,
    )
    assert isinstance(got[1], Duplicate) and [g for g in got if g is not got[1]] == [None] * 4
    kept = [await store.package_with_deliveries(c.package.id) for c in commits]
    assert reads == [], "a new package is answered without reading the file"
    for c, k in zip(commits, kept, strict=True):
        assert k == await _FILE_READ(store, c.package.id)
    seqs = [d.seq for k in kept if k is not None for d in k[1]]
    assert len(seqs) == 5 and seqs == sorted(set(seqs)) and seqs[0] > 2
    assert await store.package_with_deliveries(duplicate.package.id) is None


async def test_a_change_whose_caller_went_away_is_followed_all_the_same(
    store: SqliteStore,
) -> None:
    commit = _intake(3)
    await store.commit_intake(commit)
    pid = commit.package.id
    await _same_as_the_file(store, pid)
    b, c = commit.deliveries
    gone = asyncio.ensure_future(_move(store, b, State.PENDING, State.AVAILABLE, 40))
    await asyncio.sleep(0)  # queued for the writer
    gone.cancel()
    assert await _move(store, c, State.PENDING, State.AVAILABLE, 41)  # the writer went on
    kept = await _same_as_the_file(store, pid)
    assert [d.state for d in kept[1]] == [State.AVAILABLE, State.AVAILABLE]


async def test_changes_of_a_unit_that_failed_are_not_followed(store: SqliteStore) -> None:
    commit = _intake(4)
    await store.commit_intake(commit)
    pid = commit.package.id
    b, c = commit.deliveries
    await _same_as_the_file(store, pid)

    async def moves_then_fails(tx: Any) -> None:
        await tx.execute("UPDATE deliveries SET state = 'done' WHERE id = ?", b.id)
        store._written_move(Move(b.id, State.DONE, 50, None, None, None))
        raise RuntimeError("after writing")

    got = await asyncio.gather(
        store._write(moves_then_fails),
        _move(store, c, State.PENDING, State.AVAILABLE, 51),
        return_exceptions=True,
    )
    assert isinstance(got[0], RuntimeError) and got[1] is True
    kept = await _same_as_the_file(store, pid)
    assert [d.state for d in kept[1]] == [State.PENDING, State.AVAILABLE]
