"""The ``Store`` port in SQL, shared by the SQLite and PostgreSQL adapters.

Subclasses supply a transaction runner (``_write``) and a reader (``_read``); every
query here is written once with ``?`` placeholders and portable SQL
(``ON CONFLICT DO NOTHING``, no vendor functions). Times are integer microseconds
since the epoch in both databases.
"""

from __future__ import annotations

import abc
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from adapters.package_cache import Move
from adapters.sql.audit import OPEN_LIST, UNANSWERED, SqlAudit
from adapters.sql.ledger import SqlLedger
from adapters.sql.rows import (
    _DELIVERY_COLS,
    _DELIVERY_INSERT,
    _EVENT_INSERT,
    _INBOX_COLS,
    _OUTBOX_INSERT,
    _PACKAGE_COLS,
    _PACKAGE_INSERT,
    INBOX_DELIVERY_ID,
    INBOX_PACKAGE_AT,
    PACKAGE_JOIN,
    _delivery,
    _event,
    _event_params,
    _marks,
    _package,
    deliveries_by_package,
    delivery_values,
    outbox_values,
    package_values,
)
from adapters.sql.tx import Row, Tx
from hub.ports import Directory, Duplicate
from hub.records import (
    INBOX_STATES,
    CertBinding,
    Credential,
    DeliveryRow,
    Event,
    InboxItem,
    IntakeCommit,
    Organ,
    OutboxItem,
    PackageRow,
    State,
    Stats,
    System,
)

T = TypeVar("T")


async def _insert_outbox(tx: Tx, items: Sequence[OutboxItem]) -> None:
    if items:
        await tx.executemany(_OUTBOX_INSERT, [outbox_values(o) for o in items])


async def _directory_changed(tx: Tx, events: Sequence[Event]) -> None:
    """A new directory version (caches reload) and the change's ledger events."""
    await tx.execute("UPDATE meta SET value = value + 1 WHERE key = 'directory_version'")
    await tx.executemany(_EVENT_INSERT, [_event_params(e) for e in events])


def _organ_steps(organ: Organ, at_us: int) -> list[tuple[str, Sequence[Any]]]:
    steps: list[tuple[str, Sequence[Any]]] = [
        ("DELETE FROM organs WHERE organ_id = ?", (organ.organ_id,)),
        (
            "INSERT INTO organs (organ_id, name, system_id, location, parent, closed, "
            "push_url, modified_us, version) VALUES (?,?,?,?,?,?,?,?,"
            "(SELECT value + 1 FROM meta WHERE key = 'directory_version'))",
            (
                organ.organ_id,
                organ.name,
                organ.system_id,
                organ.location,
                organ.parent,
                int(organ.closed),
                organ.push_url,
                at_us,
            ),
        ),
        ("DELETE FROM organ_aliases WHERE organ_id = ?", (organ.organ_id,)),
    ]
    steps += [
        (
            "INSERT INTO organ_aliases (alias, organ_id) VALUES (?,?) "
            "ON CONFLICT (alias) DO UPDATE SET organ_id = excluded.organ_id",
            (a, organ.organ_id),
        )
        for a in organ.aliases
    ]
    return steps


_PACKAGE_WITH_DELIVERIES = PACKAGE_JOIN + " WHERE p.id = ? ORDER BY d.seq"


def _with_deliveries(rows: Sequence[Row]) -> tuple[PackageRow, list[DeliveryRow]] | None:
    """One package's row joined with each of its deliveries (in order), as records."""
    if not rows:
        return None
    return _package(rows[0], INBOX_PACKAGE_AT), [
        _delivery(r) for r in rows if r[INBOX_DELIVERY_ID] is not None
    ]


# The open states by name, not "NOT IN" the final ones: the state index then finds the
# few open deliveries instead of every delivery ever made being read (on SQLite, on the
# event loop) at each refresh of the gauges.
OPEN_DELIVERIES = (
    "SELECT COUNT(*) AS n, MIN(p.received_us) AS oldest FROM deliveries d "
    f"JOIN packages p ON p.id = d.package_id WHERE d.state IN ({OPEN_LIST})"
)

OVERDUE_COUNT = (
    "SELECT COUNT(*) AS n FROM deliveries d JOIN packages p ON p.id = d.package_id "
    f"WHERE {UNANSWERED} AND p.received_us < ?"
)


# INBOX_STATES as the partial index ``deliveries_waiting`` says them, word for word
# (migration 12): an engine uses that index only for a query with these very terms.
IN_INBOX_TERMS = "d.state IN ('available', 'fetched') AND d.route = 'local'"
# Up to this many index ranges (one per organ for the waiting deliveries, one per organ
# and state for others), a page is read range by range, each no further than the page; a
# query needing more goes through the general one (each match read, then sorted).
INBOX_ARMS = 64
_FROM_INBOX = f"SELECT {_INBOX_COLS} FROM deliveries d JOIN packages p ON p.id = d.package_id"


def _inbox_where(organs: Sequence[str], states: frozenset[State]) -> tuple[list[str], list[Any]]:
    """The recipients and states an inbox lists (the default ones by the index's own words)."""
    where = [f"d.recipient IN ({_marks(len(organs))})"]
    params: list[Any] = [*organs]
    if states == INBOX_STATES:
        where.append(IN_INBOX_TERMS)
    else:
        state_list = sorted(str(s) for s in states)
        where += [f"d.state IN ({_marks(len(state_list))})", "d.route = 'local'"]
        params += state_list
    return where, params


def _inbox_filters(
    kind: str | None, since_us: int | None = None, after_seq: int | None = None
) -> tuple[list[str], list[Any]]:
    """An inbox's optional filters: the packages' kind and age, the keyset cursor."""
    filters: list[str] = []
    params: list[Any] = []
    for term, value in (
        ("p.kind = ?", kind or None),
        ("p.received_us >= ?", since_us),
        ("d.seq > ?", after_seq),
    ):
        if value is not None:
            filters.append(term)
            params.append(value)
    return filters, params


def _inbox_page(
    organs: Sequence[str],
    states: frozenset[State],
    filters: list[str],
    params: list[Any],
    limit: int,
) -> tuple[str, list[Any]]:
    """One page of an inbox in delivery order: the query and its arguments.

    Read as index ranges in delivery order, each no further than the page, merged (a
    UNION ALL, one arm per range, is what lets both engines stop early: an ``IN`` over
    organs or states makes them read every match and sort it). The waiting deliveries
    (the default) are one range per organ of ``deliveries_waiting``; other states, one
    per organ and state of ``deliveries_inbox`` (``state=all``: a page of a long history
    reads the page, not the history). Past ``INBOX_ARMS`` ranges, the general query."""
    extra = "".join(f" AND {f}" for f in filters)
    keys: list[tuple[str, ...]]
    if states == INBOX_STATES:
        terms, keys = f"d.recipient = ? AND {IN_INBOX_TERMS}", [(o,) for o in organs]
    else:
        terms = "d.recipient = ? AND d.state = ? AND d.route = 'local'"
        keys = [(o, str(s)) for o in organs for s in sorted(states)]
    if len(keys) > INBOX_ARMS:
        where, args = _inbox_where(organs, states)
        sql = f"{_FROM_INBOX} WHERE {' AND '.join(where)}{extra} ORDER BY d.seq LIMIT ?"
        return sql, [*args, *params, limit]
    arm = f"{_FROM_INBOX} WHERE {terms}{extra} ORDER BY d.seq LIMIT ?"
    if len(keys) == 1:
        return arm, [*keys[0], *params, limit]
    sql = " UNION ALL ".join(f"SELECT * FROM ({arm}) AS a{i}" for i in range(len(keys)))
    args = [a for key in keys for a in (*key, *params, limit)]
    return f"{sql} ORDER BY d_seq LIMIT ?", [*args, limit]


class SqlStore(SqlLedger, SqlAudit, abc.ABC):
    """Shared implementation of ``hub.ports.Store``."""

    @abc.abstractmethod
    async def _write(self, fn: Callable[[Tx], Awaitable[T]]) -> T:
        """Run ``fn`` in a write transaction (possibly grouped with others)."""

    @abc.abstractmethod
    async def _read(self, fn: Callable[[Tx], Awaitable[T]]) -> T:
        """Run ``fn`` on a read connection."""

    def _written_move(self, move: Move) -> None:
        """A write unit moved a delivery (called inside the unit, before it commits; the
        SQLite store keeps what it read, ``adapters/package_cache.py``)."""

    async def _written_intake(
        self, tx: Tx, package: tuple[Any, ...], deliveries: Sequence[DeliveryRow]
    ) -> None:
        """An intake wrote a package (its ``package_values``) and, by the statement just
        run, its deliveries (called inside the unit, before it commits)."""

    async def _transition_call(self, update: tuple[Any, ...], event: Event) -> bool | None:
        """A transition with no outbox rows in one call, where the store has one (``None``:
        use the general transaction). ``update`` is (delivery id, allowed states, new
        state, attempts, next attempt, last error)."""
        return None

    async def _write_one(self, sql: str, *params: Any) -> int:
        """One statement that appends no ledger event, as its own transaction (a network
        store skips the write barrier and the BEGIN/COMMIT round trips)."""

        async def w(tx: Tx) -> int:
            return await tx.execute(sql, *params)

        return await self._write(w)

    async def ping(self) -> None:
        async def q(tx: Tx) -> None:
            await tx.fetch("SELECT 1 AS one")

        await self._read(q)

    # ---------------------------------------------------------------- directory
    async def directory_version(self) -> int:
        async def q(tx: Tx) -> int:
            rows = await tx.fetch("SELECT value FROM meta WHERE key = 'directory_version'")
            return int(rows[0]["value"])

        return await self._read(q)

    async def directory(self) -> Directory:
        async def q(tx: Tx) -> Directory:
            version = int(
                (await tx.fetch("SELECT value FROM meta WHERE key = 'directory_version'"))[0][
                    "value"
                ]
            )
            aliases = {
                r["alias"]: r["organ_id"]
                for r in await tx.fetch("SELECT alias, organ_id FROM organ_aliases")
            }
            by_organ: dict[str, list[str]] = {}
            for alias, organ_id in aliases.items():
                by_organ.setdefault(organ_id, []).append(alias)
            organs = {
                r["organ_id"]: Organ(
                    organ_id=r["organ_id"],
                    name=r["name"],
                    system_id=r["system_id"],
                    location=r["location"],
                    parent=r["parent"],
                    closed=bool(r["closed"]),
                    push_url=r["push_url"],
                    aliases=tuple(sorted(by_organ.get(r["organ_id"], ()))),
                    modified_us=int(r["modified_us"]),
                    version=int(r["version"]),
                )
                for r in await tx.fetch("SELECT * FROM organs")
            }
            served: dict[str, list[str]] = {}
            for o in organs.values():
                if o.system_id:
                    served.setdefault(o.system_id, []).append(o.organ_id)
            systems = {
                r["system_id"]: System(
                    system_id=r["system_id"],
                    name=r["name"],
                    role=r["role"],
                    signature_policy=r["signature_policy"],
                    organs=tuple(sorted(served.get(r["system_id"], ()))),
                    vxp_strict=bool(r["vxp_strict"]),
                    may_register=bool(r["may_register"]),
                    networks=tuple(n for n in r["networks"].split(",") if n),
                    suspended=r["suspended"],
                )
                for r in await tx.fetch("SELECT * FROM systems")
            }
            creds = {
                r["token_id"]: Credential(
                    r["token_id"],
                    r["system_id"],
                    r["secret_sha256"],
                    r["created_us"],
                    bool(r["revoked"]),
                    r["expires_us"],
                )
                for r in await tx.fetch("SELECT * FROM credentials")
            }
            bindings = tuple(
                CertBinding(r["fingerprint"], r["organ_id"])
                for r in await tx.fetch("SELECT fingerprint, organ_id FROM cert_bindings")
            )
            vxp_rows = await tx.fetch(
                "SELECT system_id, sealed, previous, previous_until_us FROM vxp_secrets"
            )
            sealed = {r["system_id"]: r["sealed"] for r in vxp_rows}
            previous = {
                r["system_id"]: (r["previous"], int(r["previous_until_us"]))
                for r in vxp_rows
                if r["previous"] is not None
            }
            client_certs = {
                r["fingerprint"]: r["system_id"]
                for r in await tx.fetch("SELECT fingerprint, system_id FROM client_certs")
            }
            return Directory(
                version, organs, aliases, systems, creds, bindings, sealed, client_certs, previous
            )

        return await self._read(q)

    async def _directory_write(
        self, events: Sequence[Event], *steps: tuple[str, Sequence[Any]]
    ) -> None:
        async def w(tx: Tx) -> None:
            for sql, params in steps:
                await tx.execute(sql, *params)
            await _directory_changed(tx, events)

        await self._write(w)

    async def put_organ(self, organ: Organ, event: Event) -> None:
        await self._directory_write([event], *_organ_steps(organ, event.at_us))

    async def put_organs(self, items: Sequence[tuple[Organ, Event]]) -> None:
        """Many organs in one transaction (a directory sync), one event each."""
        if items:
            steps = [step for o, e in items for step in _organ_steps(o, e.at_us)]
            await self._directory_write([e for _, e in items], *steps)

    async def put_system(self, system: System, event: Event) -> None:
        # An upsert, not a replacement: a suspension (``set_suspended``) outlives saving
        # the system's other settings again.
        await self._directory_write(
            [event],
            (
                "INSERT INTO systems (system_id, name, role, signature_policy, vxp_strict, "
                "may_register, networks) VALUES (?,?,?,?,?,?,?) "
                "ON CONFLICT (system_id) DO UPDATE SET name = excluded.name, "
                "role = excluded.role, signature_policy = excluded.signature_policy, "
                "vxp_strict = excluded.vxp_strict, may_register = excluded.may_register, "
                "networks = excluded.networks",
                (
                    system.system_id,
                    system.name,
                    system.role,
                    system.signature_policy,
                    int(system.vxp_strict),
                    int(system.may_register),
                    ",".join(system.networks),
                ),
            ),
        )

    async def _directory_write_if(self, event: Event, sql: str, *params: Any) -> bool:
        """One conditional change to the directory: the event (and a new directory
        version) only when it changed a row; whether it did."""

        async def w(tx: Tx) -> bool:
            changed = await tx.execute(sql, *params)
            if changed:
                await _directory_changed(tx, [event])
            return changed > 0

        return await self._write(w)

    async def set_suspended(self, system_id: str, reason: str | None, event: Event) -> bool:
        if reason is None:
            return await self._directory_write_if(
                event,
                "UPDATE systems SET suspended = NULL, suspended_us = NULL "
                "WHERE system_id = ? AND suspended IS NOT NULL",
                system_id,
            )
        return await self._directory_write_if(
            event,
            "UPDATE systems SET suspended = ?, suspended_us = ? "
            "WHERE system_id = ? AND suspended IS NULL",
            reason,
            event.at_us,
            system_id,
        )

    async def put_vxp_secret(
        self, system_id: str, sealed: str, event: Event, previous_until_us: int | None = None
    ) -> None:
        insert = "INSERT INTO vxp_secrets (system_id, sealed, created_us) VALUES (?,?,?) "
        step: tuple[str, tuple[Any, ...]]
        if previous_until_us is None:
            step = (
                insert + "ON CONFLICT (system_id) DO UPDATE SET sealed = excluded.sealed, "
                "created_us = excluded.created_us, previous = NULL, previous_until_us = NULL",
                (system_id, sealed, event.at_us),
            )
        else:  # the secret in force becomes the previous one, until then
            step = (
                insert + "ON CONFLICT (system_id) DO UPDATE SET previous = vxp_secrets.sealed, "
                "previous_until_us = ?, sealed = excluded.sealed, "
                "created_us = excluded.created_us",
                (system_id, sealed, event.at_us, previous_until_us),
            )
        await self._directory_write([event], step)

    async def use_stamp(
        self, system_id: str, stamp: str, now_us: int, forget_before_us: int
    ) -> bool:
        async def w(tx: Tx) -> bool:
            await tx.execute("DELETE FROM vxp_stamps WHERE seen_us < ?", forget_before_us)
            added = await tx.execute(
                "INSERT INTO vxp_stamps (system_id, stamp, seen_us) VALUES (?,?,?) "
                "ON CONFLICT DO NOTHING",
                system_id,
                stamp,
                now_us,
            )
            return added > 0

        return await self._write(w)

    async def put_credential(self, cred: Credential, event: Event) -> None:
        await self._directory_write(
            [event],
            ("DELETE FROM credentials WHERE token_id = ?", (cred.token_id,)),
            (
                "INSERT INTO credentials (token_id, system_id, secret_sha256, created_us, "
                "revoked, expires_us) VALUES (?,?,?,?,?,?)",
                (
                    cred.token_id,
                    cred.system_id,
                    cred.secret_sha256,
                    cred.created_us,
                    int(cred.revoked),
                    cred.expires_us,
                ),
            ),
        )

    async def put_binding(self, binding: CertBinding, event: Event) -> None:
        await self._directory_write(
            [event],
            (
                "INSERT INTO cert_bindings (fingerprint, organ_id) VALUES (?,?) "
                "ON CONFLICT DO NOTHING",
                (binding.fingerprint.lower(), binding.organ_id),
            ),
        )

    async def delete_binding(self, binding: CertBinding, event: Event) -> bool:
        return await self._directory_write_if(
            event,
            "DELETE FROM cert_bindings WHERE fingerprint = ? AND organ_id = ?",
            binding.fingerprint.lower(),
            binding.organ_id,
        )

    async def put_client_cert(
        self, fingerprint: str, system_id: str, subject: str, event: Event
    ) -> None:
        await self._directory_write(
            [event],
            ("DELETE FROM client_certs WHERE fingerprint = ?", (fingerprint,)),
            (
                "INSERT INTO client_certs (fingerprint, system_id, subject, created_us) "
                "VALUES (?,?,?,?)",
                (fingerprint, system_id, subject, event.at_us),
            ),
        )

    async def delete_client_cert(self, fingerprint: str, event: Event) -> bool:
        return await self._directory_write_if(
            event, "DELETE FROM client_certs WHERE fingerprint = ?", fingerprint
        )

    # ---------------------------------------------------------------- intake
    async def _intake_call(self, commit: IntakeCommit) -> bool:
        """Commit an accepted package in one call where the store has one (False: use the
        general transaction); raises ``Duplicate`` as that does."""
        return False

    async def commit_intake(self, commit: IntakeCommit) -> None:
        if await self._intake_call(commit):
            return
        p = commit.package

        async def w(tx: Tx) -> None:
            values = package_values(p)
            inserted = await tx.execute(_PACKAGE_INSERT + " ON CONFLICT DO NOTHING", *values)
            if not inserted:
                same = await tx.fetch(
                    "SELECT id FROM packages WHERE sender_organ = ? AND sha256 = ?",
                    p.sender_organ,
                    p.sha256,
                )
                if same:
                    raise Duplicate("same_bytes", same[0]["id"])
                other = await tx.fetch("SELECT id FROM packages WHERE dedupe_key = ?", p.dedupe_key)
                raise Duplicate("same_key", other[0]["id"] if other else None)
            await tx.executemany(_DELIVERY_INSERT, [delivery_values(d) for d in commit.deliveries])
            await self._written_intake(tx, values, commit.deliveries)
            await tx.executemany(_EVENT_INSERT, [_event_params(e) for e in commit.events])
            await _insert_outbox(tx, commit.outbox)
            s = commit.status_update
            if s is not None:
                self._written_change(s.package_id)
                # Statuses may arrive out of order (05 repeats, a federation takes them
                # concurrently): keep the latest by time; at the same time, the
                # further step (03 after 01) wins, so the outcome never depends on order.
                await tx.execute(
                    "UPDATE deliveries SET business_status = ?, business_status_us = ? "
                    "WHERE package_id = ? AND recipient = ? "
                    "AND (business_status_us IS NULL OR business_status_us < ? "
                    "OR (business_status_us = ? AND business_status <= ?))",
                    s.status_code,
                    s.at_us,
                    s.package_id,
                    s.recipient,
                    s.at_us,
                    s.at_us,
                    s.status_code,
                )

        await self._write(w)

    async def append_events(self, events: Sequence[Event]) -> None:
        async def w(tx: Tx) -> None:
            await tx.executemany(_EVENT_INSERT, [_event_params(e) for e in events])

        await self._write(w)

    async def find_document(self, sender: str, document_id: str) -> PackageRow | None:
        async def q(tx: Tx) -> PackageRow | None:
            rows = await tx.fetch(
                f"SELECT {_PACKAGE_COLS} FROM packages WHERE sender_organ = ? "
                "AND document_id = ? AND kind = 'edoc' ORDER BY received_us LIMIT 1",
                sender,
                document_id,
            )
            return _package(rows[0]) if rows else None

        return await self._read(q)

    # ---------------------------------------------------------------- packages
    async def package_by_sha256(self, sha256: str) -> PackageRow | None:
        async def q(tx: Tx) -> PackageRow | None:
            rows = await tx.fetch(
                f"SELECT {_PACKAGE_COLS} FROM packages WHERE sha256 = ? LIMIT 1", sha256
            )
            return _package(rows[0]) if rows else None

        return await self._read(q)

    async def package(self, package_id: str) -> PackageRow | None:
        async def q(tx: Tx) -> PackageRow | None:
            rows = await tx.fetch(f"SELECT {_PACKAGE_COLS} FROM packages WHERE id = ?", package_id)
            return _package(rows[0]) if rows else None

        return await self._read(q)

    async def _deliveries_where(self, where: str, *params: Any) -> list[DeliveryRow]:
        async def q(tx: Tx) -> list[DeliveryRow]:
            rows = await tx.fetch(f"SELECT {_DELIVERY_COLS} FROM deliveries WHERE {where}", *params)
            return [_delivery(r) for r in rows]

        return await self._read(q)

    async def deliveries(self, package_id: str) -> list[DeliveryRow]:
        return await self._deliveries_where("package_id = ? ORDER BY seq", package_id)

    async def package_with_deliveries(
        self, package_id: str
    ) -> tuple[PackageRow, list[DeliveryRow]] | None:
        async def q(tx: Tx) -> tuple[PackageRow, list[DeliveryRow]] | None:
            return _with_deliveries(await tx.fetch(_PACKAGE_WITH_DELIVERIES, package_id))

        return await self._read(q)

    async def deliveries_of(self, package_ids: Sequence[str]) -> dict[str, list[DeliveryRow]]:
        if not package_ids:
            return {}

        async def q(tx: Tx) -> dict[str, list[DeliveryRow]]:
            return await deliveries_by_package(tx, package_ids)

        return await self._read(q)

    async def delivery(self, delivery_id: str) -> DeliveryRow | None:
        async def q(tx: Tx) -> DeliveryRow | None:
            rows = await tx.fetch(
                f"SELECT {_DELIVERY_COLS} FROM deliveries WHERE id = ?", delivery_id
            )
            return _delivery(rows[0]) if rows else None

        return await self._read(q)

    async def transition(
        self,
        delivery_id: str,
        allowed: frozenset[State],
        to: State,
        event: Event,
        *,
        attempts: int | None = None,
        next_attempt_us: int | None = None,
        last_error: str | None = None,
        outbox: Sequence[OutboxItem] = (),
    ) -> bool:
        states = sorted(str(s) for s in allowed)
        if not outbox:
            one = await self._transition_call(
                (delivery_id, states, str(to), attempts, next_attempt_us, last_error), event
            )
            if one is not None:
                return one

        async def w(tx: Tx) -> bool:
            changed = await tx.execute(
                "UPDATE deliveries SET state = ?, updated_us = ?, "
                "attempts = COALESCE(?, attempts), next_attempt_us = ?, "
                "last_error = COALESCE(?, last_error) "
                f"WHERE id = ? AND state IN ({_marks(len(states))})",
                str(to),
                event.at_us,
                attempts,
                next_attempt_us,
                last_error,
                delivery_id,
                *states,
            )
            if changed:
                await tx.execute(_EVENT_INSERT, *_event_params(event))
                await _insert_outbox(tx, outbox)
                self._written_move(
                    Move(delivery_id, to, event.at_us, attempts, next_attempt_us, last_error)
                )
            return changed > 0

        return await self._write(w)

    async def inbox(
        self,
        organs: Sequence[str],
        *,
        kind: str | None,
        since_us: int | None,
        after_seq: int | None,
        limit: int,
        states: frozenset[State],
    ) -> list[InboxItem]:
        if not organs:
            return []
        filters, params = _inbox_filters(kind, since_us, after_seq)
        sql, args = _inbox_page(organs, states, filters, params, limit)

        async def q(tx: Tx) -> list[InboxItem]:
            rows = await tx.fetch(sql, *args)
            return [InboxItem(_delivery(r), _package(r, INBOX_PACKAGE_AT)) for r in rows]

        return await self._read(q)

    async def inbox_count(
        self, organs: Sequence[str], *, kind: str | None, states: frozenset[State]
    ) -> int:
        if not organs:
            return 0
        where, params = _inbox_where(organs, states)
        filters, more = _inbox_filters(kind)
        sql = (
            "SELECT COUNT(*) AS n FROM deliveries d JOIN packages p ON p.id = d.package_id "
            f"WHERE {' AND '.join(where + filters)}"
        )
        params += more

        async def q(tx: Tx) -> int:
            return int((await tx.fetch(sql, *params))[0]["n"])

        return await self._read(q)

    async def sent(self, system_id: str, *, kind: str | None, limit: int) -> list[PackageRow]:
        where, params = ["system_id = ?"], [system_id]
        if kind:
            where.append("kind = ?")
            params.append(kind)
        sql = (
            f"SELECT {_PACKAGE_COLS} FROM packages WHERE {' AND '.join(where)} "
            "ORDER BY received_us DESC LIMIT ?"
        )

        async def q(tx: Tx) -> list[PackageRow]:
            return [_package(r) for r in await tx.fetch(sql, *params, limit)]

        return await self._read(q)

    async def events(self, package_id: str) -> list[Event]:
        async def q(tx: Tx) -> list[Event]:
            rows = await tx.fetch(
                "SELECT * FROM events WHERE package_id = ? ORDER BY seq", package_id
            )
            return [_event(r) for r in rows]

        return await self._read(q)

    async def ledger(self, after_seq: int, limit: int) -> list[Event]:
        async def q(tx: Tx) -> list[Event]:
            rows = await tx.fetch(
                "SELECT * FROM events WHERE seq > ? ORDER BY seq LIMIT ?", after_seq, limit
            )
            return [_event(r) for r in rows]

        return await self._read(q)

    # ---------------------------------------------------------------- outbox
    async def outbox_due(self, older_than_us: int, limit: int) -> list[OutboxItem]:
        async def q(tx: Tx) -> list[OutboxItem]:
            rows = await tx.fetch(
                "SELECT id, routing_key, body, created_us FROM outbox WHERE created_us <= ? "
                "ORDER BY created_us LIMIT ?",
                older_than_us,
                limit,
            )
            return [
                OutboxItem(r["id"], r["routing_key"], json.loads(r["body"]), r["created_us"])
                for r in rows
            ]

        return await self._read(q)

    async def outbox_done(self, ids: Sequence[str]) -> None:
        if not ids:
            return

        await self._write_one(f"DELETE FROM outbox WHERE id IN ({_marks(len(ids))})", *ids)

    async def stuck_deliveries(self, older_than_us: int, limit: int) -> list[DeliveryRow]:
        return await self._deliveries_where(
            "state IN ('pending', 'retrying') AND COALESCE(next_attempt_us, updated_us) <= ? "
            "ORDER BY seq LIMIT ?",
            older_than_us,
            limit,
        )

    async def parked_pushes(
        self, organs: Sequence[str], mark: str, limit: int
    ) -> list[DeliveryRow]:
        if not organs:
            return []
        return await self._deliveries_where(
            f"recipient IN ({_marks(len(organs))}) AND state = 'available' AND route = 'push' "
            "AND last_error = ? ORDER BY seq LIMIT ?",
            *organs,
            mark,
            limit,
        )

    async def stats(self, now_us: int, overdue_before_us: int) -> Stats:
        async def q(tx: Tx) -> Stats:
            open_ = await tx.fetch(OPEN_DELIVERIES)
            dead = await tx.fetch("SELECT COUNT(*) AS n FROM deliveries WHERE state = 'dead'")
            overdue = await tx.fetch(OVERDUE_COUNT, overdue_before_us)
            outbox = await tx.fetch("SELECT COUNT(*) AS n FROM outbox")
            upstream = await tx.fetch(
                "SELECT MIN(p.received_us) AS oldest FROM deliveries d "
                "JOIN packages p ON p.id = d.package_id "
                "WHERE d.route = 'upstream' AND d.state IN ('pending', 'retrying')"
            )
            last = await tx.fetch("SELECT COALESCE(MAX(seq), 0) AS m FROM events")
            oldest = open_[0]["oldest"]
            up = upstream[0]["oldest"]
            return Stats(
                pending=int(open_[0]["n"]),
                oldest_pending_age_s=(now_us - oldest) / 1e6 if oldest else 0.0,
                dead=int(dead[0]["n"]),
                overdue_acks=int(overdue[0]["n"]),
                outbox=int(outbox[0]["n"]),
                last_event_seq=int(last[0]["m"]),
                oldest_upstream_age_s=(now_us - up) / 1e6 if up else 0.0,
            )

        return await self._read(q)
