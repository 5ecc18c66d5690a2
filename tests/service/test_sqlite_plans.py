"""Query plans on SQLite for what runs on the event loop again and again: they must not
read a table whose size grows with the hub's history."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from adapters.sql.store import OPEN_DELIVERIES, OVERDUE_COUNT
from adapters.sqlite_store import SqliteStore
from hub.records import OPEN_STATES
from tests.service import harness


def _plan(db: Path, sql: str, params: tuple[object, ...]) -> list[str]:
    con = sqlite3.connect(db)
    try:
        return [str(row[-1]) for row in con.execute("EXPLAIN QUERY PLAN " + sql, params)]
    finally:
        con.close()


async def test_the_gauges_find_open_deliveries_by_index_not_by_reading_them_all(
    tmp_path: Path,
) -> None:
    db = tmp_path / "hub.db"
    async with harness.opened(SqliteStore(db)):
        pass  # the schema, as migrations leave it
    for sql, params in ((OPEN_DELIVERIES, ()), (OVERDUE_COUNT, (2**62,))):
        plan = _plan(db, sql, params)
        # Driven by the delivery-state index: the open deliveries, not the whole history.
        assert plan[0].startswith("SEARCH d USING INDEX deliveries_state"), (sql, plan)
        assert not any(step.startswith("SCAN") for step in plan), (sql, plan)
    assert set(OPEN_STATES) == {"pending", "available", "fetched", "retrying"}
