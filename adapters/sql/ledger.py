"""The ``LedgerStore`` queries in portable SQL (a mixin of ``SqlStore``).

Seal locking and the write barrier differ by database and live in the two adapters.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

from adapters.sql.tx import Row, Tx
from hub.records import Checkpoint, LedgerEvent

T = TypeVar("T")

_EVENT_COLS = "seq, type, at_us, package_id, delivery_id, organ, actor, data"
_CHECKPOINT_COLS = "size, root, at_us, origin, key_id, signature"


def _ledger_event(r: Row) -> LedgerEvent:
    # Positional (asyncpg records and sqlite3 rows iterate over their values, in the order
    # of _EVENT_COLS): the verifier turns every event into one of these.
    return LedgerEvent(*r)


def _checkpoint(r: Row) -> Checkpoint:
    return Checkpoint(
        origin=r["origin"],
        size=int(r["size"]),
        root=bytes(r["root"]),
        at_us=int(r["at_us"]),
        key_id=r["key_id"],
        signature=bytes(r["signature"]),
    )


class SqlLedger(abc.ABC):
    @abc.abstractmethod
    async def _write(self, fn: Callable[[Tx], Awaitable[T]]) -> T: ...

    @abc.abstractmethod
    async def _read(self, fn: Callable[[Tx], Awaitable[T]]) -> T: ...

    async def ledger_genesis(self, origin: str | None, now_us: int) -> tuple[str, int] | None:
        async def q(tx: Tx) -> tuple[str, int] | None:
            if origin is not None:
                await tx.execute(
                    "INSERT INTO ledger_info (id, origin, created_us) VALUES (1, ?, ?) "
                    "ON CONFLICT DO NOTHING",
                    origin,
                    now_us,
                )
            rows = await tx.fetch("SELECT origin, created_us FROM ledger_info WHERE id = 1")
            return (rows[0]["origin"], int(rows[0]["created_us"])) if rows else None

        return await (self._read(q) if origin is None else self._write(q))

    async def ledger_events(self, after_seq: int, upto_seq: int, limit: int) -> list[LedgerEvent]:
        async def q(tx: Tx) -> list[LedgerEvent]:
            rows = await tx.fetch(
                f"SELECT {_EVENT_COLS} FROM events WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?",
                after_seq,
                upto_seq,
                limit,
            )
            return [_ledger_event(r) for r in rows]

        return await self._read(q)

    async def package_ledger_events(self, package_id: str) -> list[LedgerEvent]:
        async def q(tx: Tx) -> list[LedgerEvent]:
            rows = await tx.fetch(
                f"SELECT {_EVENT_COLS} FROM events WHERE package_id = ? ORDER BY seq", package_id
            )
            return [_ledger_event(r) for r in rows]

        return await self._read(q)

    async def tiles(self, keys: Sequence[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        if not keys:
            return {}
        where = " OR ".join(["(level = ? AND idx = ?)"] * len(keys))
        params: list[Any] = [v for k in keys for v in k]

        async def q(tx: Tx) -> dict[tuple[int, int], bytes]:
            rows = await tx.fetch(
                f"SELECT level, idx, hashes FROM ledger_tiles WHERE {where}", *params
            )
            return {(int(r["level"]), int(r["idx"])): bytes(r["hashes"]) for r in rows}

        return await self._read(q)

    async def tile_range(self, level: int, first: int, last: int) -> dict[int, bytes]:
        async def q(tx: Tx) -> dict[int, bytes]:
            rows = await tx.fetch(
                "SELECT idx, hashes FROM ledger_tiles WHERE level = ? AND idx >= ? AND idx <= ?",
                level,
                first,
                last,
            )
            return {int(r["idx"]): bytes(r["hashes"]) for r in rows}

        return await self._read(q)

    async def put_seal(
        self, tiles: Mapping[tuple[int, int], bytes], checkpoint: Checkpoint, cert_pem: str
    ) -> None:
        cp = checkpoint

        async def w(tx: Tx) -> None:
            await tx.executemany(
                "INSERT INTO ledger_tiles (level, idx, hashes) VALUES (?,?,?) "
                "ON CONFLICT (level, idx) DO UPDATE SET hashes = excluded.hashes",
                [(level, idx, data) for (level, idx), data in tiles.items()],
            )
            await tx.execute(
                f"INSERT INTO checkpoints ({_CHECKPOINT_COLS}) VALUES (?,?,?,?,?,?)",
                cp.size,
                cp.root,
                cp.at_us,
                cp.origin,
                cp.key_id,
                cp.signature,
            )
            await tx.execute(
                "INSERT INTO ledger_keys (key_id, cert_pem) VALUES (?,?) ON CONFLICT DO NOTHING",
                cp.key_id,
                cert_pem,
            )

        await self._write(w)

    async def _checkpoint_query(self, sql: str, *params: Any) -> list[Checkpoint]:
        async def q(tx: Tx) -> list[Checkpoint]:
            return [_checkpoint(r) for r in await tx.fetch(sql, *params)]

        return await self._read(q)

    async def checkpoints(self, after_size: int, limit: int) -> list[Checkpoint]:
        return await self._checkpoint_query(
            f"SELECT {_CHECKPOINT_COLS} FROM checkpoints WHERE size > ? ORDER BY size LIMIT ?",
            after_size,
            limit,
        )

    async def latest_checkpoint(self) -> Checkpoint | None:
        rows = await self._checkpoint_query(
            f"SELECT {_CHECKPOINT_COLS} FROM checkpoints ORDER BY size DESC LIMIT 1"
        )
        return rows[0] if rows else None

    async def checkpoint_at_least(self, size: int) -> Checkpoint | None:
        rows = await self._checkpoint_query(
            f"SELECT {_CHECKPOINT_COLS} FROM checkpoints WHERE size >= ? ORDER BY size LIMIT 1",
            size,
        )
        return rows[0] if rows else None

    async def certificate(self, key_id: str) -> str | None:
        async def q(tx: Tx) -> str | None:
            rows = await tx.fetch("SELECT cert_pem FROM ledger_keys WHERE key_id = ?", key_id)
            return str(rows[0]["cert_pem"]) if rows else None

        return await self._read(q)
