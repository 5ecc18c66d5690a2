"""PostgreSQL migrations: an index on a busy table is built online (writes go on while it
is built), an interrupted build is redone, and processes starting together migrate once."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import asyncpg
import pytest

from adapters import postgres_store
from adapters.postgres_store import PostgresStore
from adapters.sql.schema import MIGRATIONS, OnlineIndex, online_indexes, statements
from tests.logged import record_logs
from tests.service import harness

ONLINE = next(v for v, m in enumerate(MIGRATIONS, start=1) if online_indexes(m))
INDEX = online_indexes(MIGRATIONS[ONLINE - 1])[0].name


@contextlib.asynccontextmanager
async def _before_online(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[PostgresStore]:
    """A store's schema as a hub one version before the online index left it (closed);
    the schema is dropped afterwards."""
    store = harness.pg_store()
    with monkeypatch.context() as m:
        m.setattr(postgres_store, "MIGRATIONS", MIGRATIONS[: ONLINE - 1])
        await store.open()
        await store.close()
    try:
        yield store
    finally:
        await store.close()
        await store.drop_schema()


async def _connect(store: PostgresStore) -> asyncpg.Connection:
    return await asyncpg.connect(harness.PG_DSN, server_settings={"search_path": store.schema})


async def _index(conn: asyncpg.Connection) -> tuple[bool, str] | None:
    row = await conn.fetchrow(
        "SELECT i.indisvalid, t.relname FROM pg_index i "
        "JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid "
        "WHERE c.relname = $1 AND c.relnamespace = current_schema()::regnamespace",
        INDEX,
    )
    return None if row is None else (row[0], row[1])


async def _versions(conn: asyncpg.Connection) -> list[int]:
    return [r[0] for r in await conn.fetch("SELECT version FROM schema_version ORDER BY 1")]


async def test_writes_go_on_while_the_index_is_built(monkeypatch: pytest.MonkeyPatch) -> None:
    """While the build waits for a writer's open transaction (as it waits for any), a new
    writer still gets its lock on the table: a plain CREATE INDEX, queued for its share
    lock, would hold every new writer back behind it until it ended."""
    async with _before_online(monkeypatch) as store:
        writer, other, watch = [await _connect(store) for _ in range(3)]
        try:
            await writer.execute("BEGIN; LOCK TABLE deliveries IN ROW EXCLUSIVE MODE")
            upgrade = asyncio.create_task(store.open())
            for _ in range(200):  # until the build waits for the open transaction
                waiting = await watch.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND query LIKE 'CREATE INDEX%'"
                )
                if waiting or upgrade.done():
                    break
                await asyncio.sleep(0.05)
            assert waiting == 1, "the build never waited for the writer's transaction"
            await other.execute("SET lock_timeout = '2s'")
            await other.execute("BEGIN; LOCK TABLE deliveries IN ROW EXCLUSIVE MODE; COMMIT")
            assert not upgrade.done()
            await writer.execute("COMMIT")
            await asyncio.wait_for(upgrade, 30)
            assert await _index(watch) == (True, "deliveries")
            assert await _versions(watch) == list(range(1, len(MIGRATIONS) + 1))
        finally:
            for conn in (writer, other, watch):
                await conn.close()


async def test_an_interrupted_build_is_dropped_and_built_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A build cut short leaves its index behind, invalid (here: a unique build that
    failed on duplicates); the next start drops it and builds the index again."""
    async with _before_online(monkeypatch) as store:
        conn = await _connect(store)
        try:
            await conn.execute(
                "CREATE TABLE leftover (x INTEGER); INSERT INTO leftover VALUES (1), (1)"
            )
            with pytest.raises(asyncpg.UniqueViolationError):
                await conn.execute(f"CREATE UNIQUE INDEX CONCURRENTLY {INDEX} ON leftover (x)")
            assert await _index(conn) == (False, "leftover")
            logged = record_logs(monkeypatch, postgres_store)
            await store.open()
            assert await _index(conn) == (True, "deliveries")
            assert logged.by_level["warning"] == [
                {"event": "store_index_rebuilt", "store": "postgres", "index": INDEX}
            ]
        finally:
            await conn.close()


async def test_processes_starting_together_migrate_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """While one process migrates (here: holds the lock), the others wait for it and say
    so; then one migrates and the rest find nothing to do."""
    logged = record_logs(monkeypatch, postgres_store).by_level["info"]

    def said() -> list[str]:
        return [e["event"] for e in logged]

    stores = [harness.pg_store() for _ in range(3)]
    schema = stores[0].schema
    for s in stores[1:]:
        s.schema = schema
    holder = await asyncpg.connect(harness.PG_DSN)  # the lock, as a migrating process has it
    try:
        await holder.execute("SELECT pg_advisory_lock($1)", postgres_store._MIGRATION_LOCK)
        opening = asyncio.gather(*(s.open() for s in stores))
        for _ in range(200):
            if said().count("store_migration_waiting") == len(stores) or opening.done():
                break
            await asyncio.sleep(0.05)
        assert said() == ["store_migration_waiting"] * len(stores)
        await holder.execute("SELECT pg_advisory_unlock($1)", postgres_store._MIGRATION_LOCK)
        await asyncio.wait_for(opening, 60)
        assert said().count("store_migrated") == len(MIGRATIONS)
        conn = await _connect(stores[0])
        try:
            assert await _versions(conn) == list(range(1, len(MIGRATIONS) + 1))
            assert await _index(conn) == (True, "deliveries")
        finally:
            await conn.close()
    finally:
        await holder.close()
        for s in stores:
            await s.close()
        await stores[0].drop_schema()


def test_an_online_index_is_a_plain_one_on_sqlite_and_stands_alone() -> None:
    index = OnlineIndex("ix", "ON t (a)")
    assert statements("sqlite", (index,)) == ["CREATE INDEX ix ON t (a)"]
    assert statements("postgres", (index,)) == [
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS ix ON t (a)"
    ]
    with pytest.raises(ValueError, match="nothing else"):
        online_indexes((index, "CREATE TABLE t (a INTEGER)"))
