"""PostgreSQL store (asyncpg), for several hub processes on one database.

Each unit of work is its own transaction on a pooled connection; PostgreSQL groups
concurrent commits itself. Queries are the shared ``?`` SQL, rewritten once to
``$n`` and cached. Connection failures become ``Unavailable`` (HTTP 503) at this seam.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from functools import lru_cache
from typing import Any, TypeVar

import asyncpg
import structlog

from adapters.sql.schema import MIGRATIONS, statements
from adapters.sql.store import SqlStore
from adapters.sql.tx import Row, Tx
from hub.errors import Unavailable

T = TypeVar("T")
log = structlog.get_logger(__name__)

_MIGRATION_LOCK = 0x6C69656E  # advisory lock id ("lien") held while migrating
_SEAL_LOCK = 0x6C740001  # held by the one process sealing the ledger
# Every write transaction holds this lock shared; the sealer takes it exclusively for an
# instant, so that no transaction that drew an event sequence number is still open when it
# reads the highest one (identity values are drawn before commit and can commit out of order).
_WRITE_BARRIER = 0x6C740002
_BEGIN = f"BEGIN; SELECT pg_advisory_xact_lock_shared({_WRITE_BARRIER})"


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

    def __repr__(self) -> str:  # the DSN may carry a password
        return "PostgresStore(...)"

    async def open(self) -> None:
        try:
            if self.schema != "public":
                conn = await asyncpg.connect(self._dsn)
                try:
                    await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {self.schema}")
                finally:
                    await conn.close()
            self._pool = await asyncpg.create_pool(
                self._dsn,
                min_size=self._min,
                max_size=self._max,
                command_timeout=30,
                server_settings={"search_path": self.schema},
            )
        except _TRANSIENT as exc:
            raise Unavailable(f"PostgreSQL unreachable: {exc}", code="store_unavailable") from exc
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"
            )
            current = await conn.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_version")
            for version, migration in enumerate(MIGRATIONS, start=1):
                if version <= current:
                    continue
                for sql in statements("postgres", migration):
                    await conn.execute(sql)
                await conn.execute("INSERT INTO schema_version (version) VALUES ($1)", version)
                log.info("store_migrated", store="postgres", version=version)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[Any]:
        """A pooled connection; connection failures become ``Unavailable`` (HTTP 503)."""
        if self._pool is None:
            raise Unavailable("the PostgreSQL store is not open", code="store_unavailable")
        try:
            async with self._pool.acquire() as conn:
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

    async def _read(self, fn: Callable[[Tx], Awaitable[T]]) -> T:
        async with self._connection() as conn:
            return await fn(_PgTx(conn))

    @contextlib.asynccontextmanager
    async def seal_lock(self) -> AsyncIterator[bool]:
        async with self._connection() as conn:
            got = bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", _SEAL_LOCK))
            try:
                yield got
            finally:
                if got:
                    await conn.execute("SELECT pg_advisory_unlock($1)", _SEAL_LOCK)

    async def seal_barrier(self) -> int:
        async with self._connection() as conn:
            await conn.execute("SELECT pg_advisory_lock($1)", _WRITE_BARRIER)
            try:
                return int(await conn.fetchval("SELECT COALESCE(MAX(seq), 0) FROM events"))
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", _WRITE_BARRIER)

    async def drop_schema(self) -> None:
        """Tests only: remove this store's schema and everything in it."""
        if self.schema == "public":
            raise ValueError("refusing to drop the public schema")
        conn = await asyncpg.connect(self._dsn)
        try:
            await conn.execute(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")
        finally:
            await conn.close()
