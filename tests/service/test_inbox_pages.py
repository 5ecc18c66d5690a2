"""Inbox pages on both stores: what each page holds, in delivery order, for one organ or
several, with every filter; and on SQLite, that a page of waiting deliveries reads no
more than its own rows (the plan), however long the backlog."""

from __future__ import annotations

import itertools
import random
import sqlite3
import uuid
from pathlib import Path

from adapters.sql.store import INBOX_ARMS, SqlStore, _inbox_page
from adapters.sql.tx import Row, Tx
from adapters.sqlite_store import SqliteStore
from hub.records import INBOX_STATES, DeliveryRow, Event, IntakeCommit, PackageRow, State
from tests.service import harness

ORGANS = ("000.00.01.H01", "000.00.02.H02", "000.00.03.H03")
SENDER = "000.00.09.H09"


Expected = list[tuple[int, str, str, str, int, State]]  # seq, delivery, recipient, kind, at, state


async def _traffic(store: SqlStore, n: int) -> Expected:
    """``n`` packages to random subsets of the organs (some upstream), of both kinds,
    their deliveries then moved to every state; what the store holds, as plain rows."""
    rng = random.Random(7)
    made: dict[str, tuple[str, str, int, State]] = {}  # local delivery -> recipient, kind, ...
    for i in range(n):
        pid = str(uuid.uuid4())
        kind = "status" if i % 3 == 0 else "edoc"
        p = PackageRow(pid, f"{i:064x}", 10, kind, SENDER, "sys-a", 1_000 + i)
        to = [o for o in ORGANS if rng.random() < 0.6] or [ORGANS[0]]
        ds = tuple(
            DeliveryRow(
                str(uuid.uuid4()),
                pid,
                o,
                "upstream" if rng.random() < 0.1 else "local",
                State.PENDING,
                updated_us=1_000 + i,
            )
            for o in to
        )
        await store.commit_intake(IntakeCommit(p, ds, (Event("received", 1_000 + i, pid),), ()))
        for d in ds:
            to_state = rng.choice(list(State))
            if to_state is not State.PENDING:
                ev = Event(str(to_state), 2_000 + i, pid, d.id, d.recipient, "test")
                assert await store.transition(d.id, frozenset({State.PENDING}), to_state, ev)
            if d.route == "local":
                made[d.id] = (d.recipient, kind, 1_000 + i, to_state)

    async def numbers(tx: Tx) -> list[Row]:
        return await tx.fetch("SELECT seq, id FROM deliveries")

    seqs = {r["id"]: r["seq"] for r in await store._read(numbers)}
    return sorted((seqs[i], i, *made[i]) for i in made)


async def _pages(
    store: SqlStore,
    organs: list[str],
    states: frozenset[State],
    kind: str | None,
    since_us: int | None,
    limit: int,
) -> list[str]:
    got: list[str] = []
    after = None
    while True:
        page = await store.inbox(
            organs, kind=kind, since_us=since_us, after_seq=after, limit=limit, states=states
        )
        assert len(page) <= limit
        got += [i.delivery.id for i in page]
        if len(page) < limit:
            return got
        after = page[-1].delivery.seq


async def test_every_page_holds_the_right_deliveries_in_order(store: SqlStore) -> None:
    every = await _traffic(store, 60)
    assert {r[5] for r in every} == set(State)  # every state is represented (local ones)
    cases = itertools.product(
        ([ORGANS[0]], [ORGANS[1], ORGANS[2]], list(ORGANS)),
        (INBOX_STATES, frozenset(State), frozenset({State.DONE})),
        (None, "edoc"),
        (None, 1_030),
        (1, 7, 500),
    )
    for organs, states, kind, since_us, limit in cases:
        want = [
            r[1]
            for r in every
            if r[2] in organs
            and r[5] in states
            and (kind is None or r[3] == kind)
            and (since_us is None or r[4] >= since_us)
        ]
        got = await _pages(store, organs, states, kind, since_us, limit)
        assert got == want, (organs, sorted(states), kind, since_us, limit)
    # A system with more organs than one query has arms: the general query, same answer.
    many = [f"000.00.{i:02d}.X99" for i in range(INBOX_ARMS)] + list(ORGANS)
    for states in (INBOX_STATES, frozenset(State)):
        assert "UNION ALL" not in _inbox_page(many, states, [], [], 5)[0]
        want = [r[1] for r in every if r[5] in states]
        assert await _pages(store, many, states, None, None, 5) == want


async def test_a_page_reads_its_own_rows_only(tmp_path: Path) -> None:
    db = tmp_path / "hub.db"
    async with harness.opened(SqliteStore(db)):
        pass  # the schema, as migrations leave it
    con = sqlite3.connect(db)
    try:
        # The waiting deliveries, one range per organ; the whole history (``state=all``),
        # one per organ and state.
        for states, index, per_organ in (
            (INBOX_STATES, "deliveries_waiting (recipient=?", 1),
            (frozenset(State), "deliveries_inbox (recipient=? AND state=?", len(State)),
        ):
            for organs in ([ORGANS[0]], list(ORGANS)):
                for filters, params in (([], []), (["p.kind = ?", "d.seq > ?"], ["edoc", 5])):
                    sql, args = _inbox_page(organs, states, filters, params, 100)
                    plan = [str(r[-1]) for r in con.execute("EXPLAIN QUERY PLAN " + sql, args)]
                    searches = [s for s in plan if s.startswith("SEARCH d")]
                    # One index range each, in delivery order, stopped by the page's limit:
                    # the only sorts left are of each range's page (the arms' merge).
                    assert len(searches) == len(organs) * per_organ, plan
                    assert all(f"USING INDEX {index}" in s for s in searches), plan
                    assert not any(s.startswith("SCAN d") or s.startswith("SCAN p") for s in plan)
                    if len(organs) * per_organ == 1:
                        assert not any("TEMP B-TREE" in s for s in plan), plan
    finally:
        con.close()
