"""Audit queries, retention and legal hold in portable SQL (a mixin of ``SqlStore``).

Audit results are packages, newest first, keyset-paginated on (received_us, id);
delivery-level filters are ``EXISTS`` sub-queries so each package appears once. The
indexes of migration 3 keep a sender + date-range query on an index range scan.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from adapters.sql.rows import (
    _EVENT_INSERT,
    _PACKAGE_COLS,
    _event_params,
    _package,
    deliveries_by_package,
)
from adapters.sql.tx import Tx
from hub.records import OPEN_STATES, AuditQuery, AuditRow, Event, PackageRow

T = TypeVar("T")

# A delivery whose notice of receipt is awaited (``hub.service.workdays.unanswered``):
# a document's, still open (neither acknowledged by the recipient's system nor dead), no
# business status; with ``p.received_us < <the calendar's instant>``, an overdue
# acknowledgement. Open states by name: the state index finds them, however long the
# history.
OPEN_LIST = ", ".join(f"'{s}'" for s in OPEN_STATES)  # the open states, as SQL literals
UNANSWERED = f"p.kind = 'edoc' AND d.business_status IS NULL AND d.state IN ({OPEN_LIST})"

_P_COLS = ", ".join(f"p.{c.strip()}" for c in _PACKAGE_COLS.split(","))


def _equal(pairs: tuple[tuple[str, Any], ...], where: list[str], params: list[Any]) -> None:
    """``column = ?`` for each pair whose value is given."""
    for column, value in pairs:
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)


def _where(q: AuditQuery) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    _equal(
        (
            ("p.sender_organ", q.sender),
            ("p.document_id", q.document_id),
            ("p.code", q.code),
            ("p.kind", q.kind),
            ("p.business_type", q.business_type),
            ("p.signature_outcome", q.signature),
        ),
        where,
        params,
    )
    if q.since_us is not None:
        where.append("p.received_us >= ?")
        params.append(q.since_us)
    if q.until_us is not None:
        where.append("p.received_us < ?")
        params.append(q.until_us)
    for word in (q.subject or "").split():
        where.append("LOWER(p.subject) LIKE ?")
        params.append(f"%{word.lower()}%")
    sub: list[str] = []
    if q.overdue_before_us is not None:
        where.append("p.received_us < ?")
        params.append(q.overdue_before_us)
        sub.append(UNANSWERED)
    _equal(
        (
            ("d.recipient", q.recipient),
            ("d.state", q.state),
            ("d.business_status", q.business_status),
        ),
        sub,
        params,
    )
    if sub:
        where.append(
            "EXISTS (SELECT 1 FROM deliveries d WHERE d.package_id = p.id AND "
            + " AND ".join(sub)
            + ")"
        )
    return where, params


class SqlAudit(abc.ABC):
    @abc.abstractmethod
    async def _write(self, fn: Callable[[Tx], Awaitable[T]]) -> T: ...

    @abc.abstractmethod
    async def _read(self, fn: Callable[[Tx], Awaitable[T]]) -> T: ...

    def _written_change(self, package_id: str) -> None:  # noqa: B027 - a hook, a no-op here
        """A write unit changed a package or its deliveries other than by a transition
        (called inside the unit, before it commits; see ``SqlStore._written_move``)."""

    async def audit(
        self, query: AuditQuery, *, after: tuple[int, str] | None, limit: int
    ) -> list[AuditRow]:
        where, params = _where(query)
        if after is not None:
            where.append("(p.received_us < ? OR (p.received_us = ? AND p.id < ?))")
            params += [after[0], after[0], after[1]]
        sql = (
            f"SELECT {_P_COLS}, h.package_id AS held FROM packages p "
            "LEFT JOIN legal_holds h ON h.package_id = p.id "
            f"WHERE {' AND '.join(where) or '1 = 1'} "
            "ORDER BY p.received_us DESC, p.id DESC LIMIT ?"
        )

        async def q(tx: Tx) -> list[AuditRow]:
            rows = await tx.fetch(sql, *params, limit)
            if not rows:
                return []
            by_package = await deliveries_by_package(tx, [r["id"] for r in rows])
            return [
                AuditRow(
                    _package(r),
                    tuple(by_package.get(r["id"], ())),
                    r["held"] is not None,
                )
                for r in rows
            ]

        return await self._read(q)

    async def purge_due(self, received_before_us: int, limit: int) -> list[PackageRow]:
        async def q(tx: Tx) -> list[PackageRow]:
            rows = await tx.fetch(
                f"SELECT {_P_COLS} FROM packages p WHERE p.received_us < ? "
                "AND p.purged_us IS NULL AND NOT EXISTS "
                "(SELECT 1 FROM legal_holds h WHERE h.package_id = p.id) "
                "ORDER BY p.received_us LIMIT ?",
                received_before_us,
                limit,
            )
            return [_package(r) for r in rows]

        return await self._read(q)

    async def mark_purged(self, package_id: str, event: Event) -> bool:
        async def w(tx: Tx) -> bool:
            changed = await tx.execute(
                "UPDATE packages SET purged_us = ? WHERE id = ? AND purged_us IS NULL "
                "AND NOT EXISTS (SELECT 1 FROM legal_holds h WHERE h.package_id = ?)",
                event.at_us,
                package_id,
                package_id,
            )
            if changed:
                await tx.execute(_EVENT_INSERT, *_event_params(event))
                self._written_change(package_id)
            return changed > 0

        return await self._write(w)

    async def sha256_in_use(self, sha256: str) -> bool:
        async def q(tx: Tx) -> bool:
            rows = await tx.fetch(
                "SELECT 1 AS x FROM packages WHERE sha256 = ? AND purged_us IS NULL LIMIT 1", sha256
            )
            return bool(rows)

        return await self._read(q)

    async def set_hold(self, package_id: str, reason: str | None, event: Event) -> bool:
        async def w(tx: Tx) -> bool:
            if reason is None:
                changed = await tx.execute(
                    "DELETE FROM legal_holds WHERE package_id = ?", package_id
                )
            else:
                changed = await tx.execute(
                    "INSERT INTO legal_holds (package_id, reason, actor, at_us) VALUES (?,?,?,?) "
                    "ON CONFLICT DO NOTHING",
                    package_id,
                    reason,
                    event.actor or "",
                    event.at_us,
                )
            if changed:
                await tx.execute(_EVENT_INSERT, *_event_params(event))
            return changed > 0

        return await self._write(w)

    async def holds(self) -> dict[str, str]:
        async def q(tx: Tx) -> dict[str, str]:
            rows = await tx.fetch("SELECT package_id, reason FROM legal_holds ORDER BY at_us")
            return {r["package_id"]: r["reason"] for r in rows}

        return await self._read(q)

    async def hold_reason(self, package_id: str) -> str | None:
        async def q(tx: Tx) -> str | None:
            rows = await tx.fetch("SELECT reason FROM legal_holds WHERE package_id = ?", package_id)
            return str(rows[0]["reason"]) if rows else None

        return await self._read(q)

    async def intake_counts(self, since_us: int) -> dict[str, int]:
        async def q(tx: Tx) -> dict[str, int]:
            accepted = await tx.fetch(
                "SELECT COUNT(*) AS n FROM packages WHERE received_us >= ?", since_us
            )
            refused = await tx.fetch(
                "SELECT COUNT(*) AS n FROM events WHERE type = 'refused' AND at_us >= ?", since_us
            )
            return {"accepted": int(accepted[0]["n"]), "refused": int(refused[0]["n"])}

        return await self._read(q)
