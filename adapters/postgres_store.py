"""PostgreSQL store (asyncpg), for several hub processes on one database.

Each unit of work is its own transaction on a pooled connection. The hot paths —
delivery transitions, intake commits, a package read with its deliveries — go through
coalescers (``adapters.sql.batch``): calls that arrive while earlier ones are out leave
together as one statement. Queries are the shared ``?`` SQL, rewritten once to ``$n``
and cached. Connection failures become ``Unavailable`` (HTTP 503) at this seam.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from functools import lru_cache
from typing import Any, TypeVar

import asyncpg
import orjson
import structlog

from adapters.sql.batch import Coalescer
from adapters.sql.rows import (
    DELIVERY_WRITE_COLS,
    EVENT_WRITE_COLS,
    OUTBOX_WRITE_COLS,
    PACKAGE_JOIN,
    PACKAGE_WRITE_COLS,
    _event_params,
    delivery_values,
    outbox_values,
    package_values,
)
from adapters.sql.schema import MIGRATIONS, OnlineIndex, online_indexes, statements
from adapters.sql.store import SqlStore, _with_deliveries
from adapters.sql.tx import Row, Tx
from hub.errors import Unavailable
from hub.ports import Duplicate
from hub.records import DeliveryRow, Event, IntakeCommit, PackageRow

T = TypeVar("T")
log = structlog.get_logger(__name__)

_MIGRATION_LOCK = 0x6C69656E  # advisory lock id ("lien") held while migrating
_MIGRATION_POLL_S = 0.2  # how often a process waiting for another's migration asks again
# An index built online on a large table takes as long as it takes: not the 30 s allowed
# each statement (cut short, it would leave an invalid index behind, at every start).
_ONLINE_INDEX_S = 24 * 3600.0
_SEAL_LOCK = 0x6C740001  # held by the one process sealing the ledger
# Every write transaction holds this lock shared; the sealer takes it exclusively for an
# instant, so that no transaction that drew an event sequence number is still open when it
# reads the highest one (identity values are drawn before commit and can commit out of order).
_WRITE_BARRIER = 0x6C740002
_BEGIN = f"BEGIN; SELECT pg_advisory_xact_lock_shared({_WRITE_BARRIER})"


# The deliveries' own ``package_id = ANY`` repeats the join condition on purpose: the
# planner does not carry ``= ANY`` across a join, and on tables not yet analysed (a new
# database, before autovacuum's first ANALYZE) it then hash-joined a sequential scan of
# every delivery into each fetch (1.3 ms at 4,000 deliveries, growing with the table).
# With it, the deliveries are found through their (package_id, recipient) index either way.
# PACKAGE_JOIN ends in its ON clause, which this extends.
_PACKAGES_WITH_DELIVERIES = (
    PACKAGE_JOIN
    + " AND d.package_id = ANY($1::text[]) WHERE p.id = ANY($1::text[]) ORDER BY p.id, d.seq"
)


def _intake_item(commit: IntakeCommit) -> dict[str, Any]:
    """An intake commit as lt_intake's arguments (JSON objects, by argument name)."""

    def rows(cols: tuple[str, ...], values: Iterable[tuple[Any, ...]]) -> list[dict[str, Any]]:
        return [dict(zip(cols, v, strict=True)) for v in values]

    s = commit.status_update
    return {
        "p": dict(zip(PACKAGE_WRITE_COLS, package_values(commit.package), strict=True)),
        "ds": rows(DELIVERY_WRITE_COLS, map(delivery_values, commit.deliveries)),
        "es": rows(EVENT_WRITE_COLS, map(_event_params, commit.events)),
        "os": rows(OUTBOX_WRITE_COLS, map(outbox_values, commit.outbox)),
        "st": dataclasses.asdict(s) if s is not None else None,
    }


@lru_cache(maxsize=512)
def _pg(sql: str) -> str:
    counter = iter(range(1, 10_000))
    return re.sub(r"\?", lambda _m: f"${next(counter)}", sql)


def _rowcount(status: str) -> int:
    # asyncpg returns the command tag: "INSERT 0 1", "UPDATE 3", "DELETE 0"
    try:
        return int(status.rsplit(" ", 1)[-1])
    except ValueError:
        return 0


class _PgTx:
    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def execute(self, sql: str, *params: Any) -> int:
        return _rowcount(await self._conn.execute(_pg(sql), *params))

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            await self._conn.executemany(_pg(sql), rows)

    async def fetch(self, sql: str, *params: Any) -> list[Row]:
        return list(await self._conn.fetch(_pg(sql), *params))


_TRANSIENT = (
    OSError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.PostgresConnectionError,
)


_PACKAGE_LANES = 2  # package reads in flight at once, each on its own connection


async def _keep_session(_conn: Any) -> None:
    """The pool's reset on release. asyncpg rolls back an open transaction itself; its
    default reset then sends ``RESET ALL; UNLISTEN *; pg_advisory_unlock_all()...``, one
    more round trip on every release. The hub sets no session state and releases its
    session advisory locks itself (or drops the connection when it cannot), so there is
    nothing else to reset."""


class PostgresStore(SqlStore):
    commit_ambiguous = True

    def __init__(
        self, dsn: str, *, min_size: int = 2, max_size: int = 10, schema: str = "public"
    ) -> None:
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", schema):
            raise ValueError("schema must be a lower-case SQL identifier")
        self._dsn = dsn
        self.schema = schema
        self._min = min_size
        self._max = max_size
        self._pool: Any = None
        # Packages read by id go through connections of their own that plan each
        # statement for its arguments (``plan_cache_mode``). asyncpg prepares every query,
        # and after five runs PostgreSQL may keep one generic plan for all arguments,
        # costed for an array of ids of unknown length: while the tables hold fewer than
        # a few thousand rows, or have no statistics yet (a new hub, until autovacuum's
        # first ANALYZE), that plan reads both tables whole, and it stays in use as they
        # grow (3.6 ms a fetch at 4,000 deliveries, against 0.2 ms planned with the ids:
        # measured on the e2e benchmark). The other statements keep their cached plans:
        # planning the transition function's statements every time cost more than it
        # saved (0.75 ms per package, same benchmark).
        self._fresh_plans: Any = None
        # Group commits: PostgreSQL would group the fsyncs of concurrent commits itself,
        # but each statement is still a round trip, and on a busy hub those (the system
        # calls, the pool, asyncpg's per-query work) cost more than the statements do.
        # A call that goes alone is a batch of one: each hot path has one statement.
        self._transitions = Coalescer(self._transition_many)
        self._intakes = Coalescer(self._intake_many)
        self._packages = Coalescer(self._package_many, lanes=_PACKAGE_LANES)

    def __repr__(self) -> str:  # the DSN may carry a password
        return "PostgresStore(...)"

    async def _create_pool(self, min_size: int, max_size: int, **settings: str) -> Any:
        return await asyncpg.create_pool(
            self._dsn,
            min_size=min_size,
            max_size=max_size,
            command_timeout=30,
            server_settings={"search_path": self.schema, **settings},
            reset=_keep_session,
        )

    async def open(self) -> None:
        try:
            if self.schema != "public":
                conn = await asyncpg.connect(self._dsn)
                try:
                    await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {self.schema}")
                except asyncpg.UniqueViolationError:
                    pass  # made by another process at the same instant: IF NOT EXISTS races
                finally:
                    await conn.close()
            self._pool = await self._create_pool(self._min, self._max)
            self._fresh_plans = await self._create_pool(
                1, _PACKAGE_LANES, plan_cache_mode="force_custom_plan"
            )
        except _TRANSIENT as exc:
            if self._pool is not None:  # the second pool failed: no half-open store
                self._pool.terminate()
                self._pool = None
            raise Unavailable(f"PostgreSQL unreachable: {exc}", code="store_unavailable") from exc
        # The migration lock is asked for again and again, never waited for: building an
        # index online waits for every transaction older than the build, and a process
        # waiting in pg_advisory_lock is in one, itself waiting for the build's process.
        # Said once, so that a start held up by another process's long index build (it
        # waits as long as that takes) is not a silent hang.
        waited = False
        while True:
            take = "SELECT pg_try_advisory_lock($1)"
            async with self._session_lock(take, _MIGRATION_LOCK) as (conn, got):
                if got:
                    await self._migrate(conn)
                    return
            if not waited:
                log.info("store_migration_waiting", store="postgres", schema=self.schema)
                waited = True
            await asyncio.sleep(_MIGRATION_POLL_S)

    async def _migrate(self, conn: Any) -> None:
        """The migrations not applied yet, each committed with its version (a failure
        leaves the ones before it applied; the next start goes on from there)."""
        await conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        current = await conn.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_version")
        for version, migration in enumerate(MIGRATIONS, start=1):
            if version <= current:
                continue
            online = online_indexes(migration)
            if online:
                for index in online:
                    await self._build_online(conn, index)
                await conn.execute("INSERT INTO schema_version (version) VALUES ($1)", version)
            else:
                async with conn.transaction():
                    for sql in statements("postgres", migration):
                        await conn.execute(sql)
                    await conn.execute("INSERT INTO schema_version (version) VALUES ($1)", version)
            log.info("store_migrated", store="postgres", version=version)

    async def _build_online(self, conn: Any, index: OnlineIndex) -> None:
        """``CREATE INDEX CONCURRENTLY``: writes go on while it is built. One that was
        interrupted (the process stopped, the server restarted) left the index behind
        marked invalid: unused by queries, yet kept up by every write; it is dropped and
        built again."""
        valid = await conn.fetchval(
            "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE c.relname = $1 AND c.relnamespace = current_schema()::regnamespace",
            index.name,
        )
        if valid is False:
            log.warning("store_index_rebuilt", store="postgres", index=index.name)
            await conn.execute(f"DROP INDEX CONCURRENTLY {index.name}", timeout=_ONLINE_INDEX_S)
        (sql,) = statements("postgres", (index,))
        await conn.execute(sql, timeout=_ONLINE_INDEX_S)

    async def close(self) -> None:
        await self._transitions.close()
        await self._intakes.close()
        await self._packages.close()
        for pool in (self._fresh_plans, self._pool):
            if pool is not None:
                await pool.close()
        self._pool = self._fresh_plans = None

    @contextlib.asynccontextmanager
    async def _connection(self, *, fresh_plans: bool = False) -> AsyncIterator[Any]:
        """A pooled connection (``fresh_plans``: one that plans each statement for its
        arguments); connection failures become ``Unavailable`` (HTTP 503)."""
        pool = self._fresh_plans if fresh_plans else self._pool
        if pool is None:
            raise Unavailable("the PostgreSQL store is not open", code="store_unavailable")
        try:
            async with pool.acquire() as conn:
                yield conn
        except _TRANSIENT as exc:
            raise Unavailable(f"PostgreSQL unavailable: {exc}", code="store_unavailable") from exc

    async def _write(self, fn: Callable[[Tx], Awaitable[T]]) -> T:
        async with self._connection() as conn:
            # BEGIN and the barrier lock in one round trip (simple protocol); asyncpg rolls
            # back whatever is left open when the connection goes back to the pool.
            await conn.execute(_BEGIN)
            try:
                result = await fn(_PgTx(conn))
            except BaseException:
                if not conn.is_closed():
                    with contextlib.suppress(*_TRANSIENT, asyncpg.PostgresError):
                        await conn.execute("ROLLBACK")
                raise
            await conn.execute("COMMIT")
            return result

    async def _write_one(self, sql: str, *params: Any) -> int:
        async with self._connection() as conn:
            return _rowcount(await conn.execute(_pg(sql), *params))

    async def _read(self, fn: Callable[[Tx], Awaitable[T]]) -> T:
        async with self._connection() as conn:
            return await fn(_PgTx(conn))

    async def _intake_call(self, commit: IntakeCommit) -> bool:
        dup = await self._intakes(commit)
        if dup is not None:
            raise Duplicate(dup[0], dup[1])
        return True

    async def _intake_many(self, commits: Sequence[IntakeCommit]) -> list[list[str] | None]:
        # Concurrent intakes in one statement (migration 7): one transaction, each
        # package's commit exactly as lt_intake does it alone.
        async with self._connection() as conn:
            answers = await conn.fetchval(
                "SELECT lt_intakes($1::jsonb, $2)",
                orjson.dumps([_intake_item(c) for c in commits]).decode(),
                _WRITE_BARRIER,
            )
        return list(orjson.loads(answers))

    async def package_with_deliveries(
        self, package_id: str
    ) -> tuple[PackageRow, list[DeliveryRow]] | None:
        return await self._packages(package_id)

    async def _package_many(
        self, package_ids: Sequence[str]
    ) -> list[tuple[PackageRow, list[DeliveryRow]] | None]:
        # Concurrent fetches and acknowledgements read their packages in one query.
        async with self._connection(fresh_plans=True) as conn:
            rows = await conn.fetch(_PACKAGES_WITH_DELIVERIES, list(set(package_ids)))
        by_id: dict[str, list[Any]] = {}
        for r in rows:
            by_id.setdefault(r["id"], []).append(r)
        return [_with_deliveries(by_id.get(i, [])) for i in package_ids]

    async def _transition_call(self, update: tuple[Any, ...], event: Event) -> bool | None:
        return await self._transitions((update, event))

    async def _transition_many(self, items: Sequence[tuple[tuple[Any, ...], Event]]) -> list[bool]:
        # Concurrent transitions in one statement (migration 7), column by column.
        cols: list[list[Any]] = [[] for _ in range(13)]
        for update, event in items:
            ident, states, *rest = update
            for col, value in zip(
                cols, (ident, ",".join(states), *rest, *_event_params(event)), strict=True
            ):
                col.append(value)
        async with self._connection() as conn:
            changed = await conn.fetchval(
                "SELECT lt_transitions($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14)",
                *cols,
                _WRITE_BARRIER,
            )
        return [bool(c) for c in changed]

    @contextlib.asynccontextmanager
    async def _session_lock(self, take: str, key: int) -> AsyncIterator[tuple[Any, bool]]:
        """A session advisory lock on a pooled connection. Should taking or releasing it
        fail or be cancelled, the connection is dropped (the server then frees the lock)
        rather than handed back to the pool, whose reset no longer unlocks everything."""
        async with self._connection() as conn:
            try:
                got = await conn.fetchval(take, key)
                got = got is None or bool(got)  # pg_advisory_lock returns void
            except BaseException:
                conn.terminate()
                raise
            try:
                yield conn, got
            finally:
                if got:
                    try:
                        await conn.execute("SELECT pg_advisory_unlock($1)", key)
                    except BaseException:
                        conn.terminate()
                        raise

    @contextlib.asynccontextmanager
    async def seal_lock(self) -> AsyncIterator[bool]:
        async with self._session_lock("SELECT pg_try_advisory_lock($1)", _SEAL_LOCK) as (_, got):
            yield got

    async def seal_barrier(self) -> int:
        # One connection: a second one, while writers wait on the barrier holding theirs,
        # could find the pool empty.
        async with self._session_lock("SELECT pg_advisory_lock($1)", _WRITE_BARRIER) as (conn, _):
            return int(await conn.fetchval("SELECT COALESCE(MAX(seq), 0) FROM events"))

    async def drop_schema(self) -> None:
        """Tests only: remove this store's schema and everything in it."""
        if self.schema == "public":
            raise ValueError("refusing to drop the public schema")
        conn = await asyncpg.connect(self._dsn)
        try:
            await conn.execute(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")
        finally:
            await conn.close()
