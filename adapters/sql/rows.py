"""Column lists and row conversions shared by the SQL query modules."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import fields
from typing import Any

import orjson

from adapters.sql.tx import Row, Tx
from hub.records import DeliveryRow, Event, OutboxItem, PackageRow, State


def _json(data: Mapping[str, Any]) -> str:
    """Stored JSON (event data, signature records, outbox bodies): compact, keys sorted,
    UTF-8 unescaped; the same text the standard library writes with those settings, in
    about a seventh of the time (several per package). The ledger hashes the stored text
    as it is, never a re-serialisation (``hub/ledger/leaf.py``). A string no UTF-8
    encoder can write (a lone surrogate, from outside bytes that were not UTF-8) is kept,
    escaped, in ASCII text: a refusal is recorded whatever it carried."""
    try:
        return orjson.dumps(data, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        return json.dumps(data, separators=(",", ":"), sort_keys=True)


@functools.lru_cache(maxsize=1024)
def _signature_cached(text: str) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(text)
    return decoded


def _signature(text: str) -> dict[str, Any]:
    """A package's signature record, decoded. One signer's packages share one record
    text, so decoding is cached; each row gets its own shallow copy."""
    return dict(_signature_cached(text))


def _marks(n: int) -> str:
    return ",".join("?" * n)


# What intake writes; reads also see when retention purged the bytes.
_PACKAGE_INSERT_COLS = (
    "id, sha256, size, kind, sender_organ, system_id, received_us, document_id, code, "
    "subject, business_type, status_code, response_for_organ, response_for_doc, "
    "related_package_id, signature, dedupe_key"
)
_PACKAGE_COLS = _PACKAGE_INSERT_COLS + ", purged_us"
_DELIVERY_COLS = (
    "seq, id, package_id, recipient, route, state, attempts, next_attempt_us, updated_us, "
    "last_error, business_status, business_status_us"
)
# Built once: every inbox query selects both rows, delivery columns prefixed ``d_``.
_INBOX_COLS = ", ".join(
    [f"d.{c.strip()} AS d_{c.strip()}" for c in _DELIVERY_COLS.split(",")]
    + [f"p.{c.strip()}" for c in _PACKAGE_COLS.split(",")]
)
# A package with each of its deliveries (none: one row with NULL ``d_`` columns).
PACKAGE_JOIN = f"SELECT {_INBOX_COLS} FROM packages p LEFT JOIN deliveries d ON d.package_id = p.id"


def _event_params(e: Event) -> tuple[Any, ...]:
    return (e.type, e.at_us, e.package_id, e.delivery_id, e.organ, e.actor, _json(e.data))


# The columns intake writes, in order, for the SQL and for PostgreSQL's lt_intake.
PACKAGE_WRITE_COLS = (*(c.strip() for c in _PACKAGE_INSERT_COLS.split(",")), "signature_outcome")
DELIVERY_WRITE_COLS = ("id", "package_id", "recipient", "route", "state", "updated_us")
EVENT_WRITE_COLS = ("type", "at_us", "package_id", "delivery_id", "organ", "actor", "data")
OUTBOX_WRITE_COLS = ("id", "routing_key", "body", "created_us")


def _insert(table: str, cols: tuple[str, ...]) -> str:
    return f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({_marks(len(cols))})"


# Built once (the intake path runs them for every package).
_PACKAGE_INSERT = _insert("packages", PACKAGE_WRITE_COLS)
_DELIVERY_INSERT = _insert("deliveries", DELIVERY_WRITE_COLS)
_EVENT_INSERT = _insert("events", EVENT_WRITE_COLS)
_OUTBOX_INSERT = _insert("outbox", OUTBOX_WRITE_COLS)


def package_values(p: PackageRow) -> tuple[Any, ...]:
    return (
        p.id,
        p.sha256,
        p.size,
        p.kind,
        p.sender_organ,
        p.system_id,
        p.received_us,
        p.document_id,
        p.code,
        p.subject,
        p.business_type,
        p.status_code,
        p.response_for_organ,
        p.response_for_doc,
        p.related_package_id,
        _json(p.signature),
        p.dedupe_key,
        p.signature.get("outcome"),
    )


def delivery_values(d: DeliveryRow) -> tuple[Any, ...]:
    return (d.id, d.package_id, d.recipient, d.route, str(d.state), d.updated_us)


def outbox_values(o: OutboxItem) -> tuple[Any, ...]:
    return (o.id, o.routing_key, _json(o.body), o.created_us)


# Rows are read by position: a name lookup on a sqlite3.Row compares the name with each
# column's in turn, which made turning one package-with-deliveries into records cost as much
# as the query. Every query selects the columns in the orders above; a package's columns
# follow the delivery's in ``_INBOX_COLS``. The records' fields are in the same orders
# (a delivery's ``seq`` comes last in its record, first in its columns): checked below.
_PACKAGE_NAMES = tuple(c.strip() for c in _PACKAGE_COLS.split(","))
_DELIVERY_NAMES = tuple(c.strip() for c in _DELIVERY_COLS.split(","))
_N_PACKAGE, _N_DELIVERY = len(_PACKAGE_NAMES), len(_DELIVERY_NAMES)
_SIGNATURE_AT = _PACKAGE_NAMES.index("signature")  # stored as JSON text
_STATE_AT = _DELIVERY_NAMES.index("state")  # stored as the State's value
INBOX_PACKAGE_AT = _N_DELIVERY  # where the package's columns start in an inbox/join row
INBOX_DELIVERY_ID = _DELIVERY_NAMES.index("id")  # NULL in a join row: a package without any
if tuple(f.name for f in fields(PackageRow)) != _PACKAGE_NAMES or tuple(
    f.name for f in fields(DeliveryRow)
) != (*_DELIVERY_NAMES[1:], "seq"):
    raise RuntimeError("PackageRow/DeliveryRow fields and their SQL columns are out of order")


def _package(r: Row | tuple[Any, ...], at: int = 0) -> PackageRow:
    """A package from ``_PACKAGE_COLS`` starting at column ``at``."""
    v = r[at : at + _N_PACKAGE]
    values = (*v[:_SIGNATURE_AT], _signature(v[_SIGNATURE_AT]), *v[_SIGNATURE_AT + 1 :])
    return PackageRow(*values)


def _delivery(r: Row | tuple[Any, ...]) -> DeliveryRow:
    """A delivery from ``_DELIVERY_COLS`` (the first columns of an inbox/join row too)."""
    v = r[:_N_DELIVERY]
    values = (*v[1:_STATE_AT], State(v[_STATE_AT]), *v[_STATE_AT + 1 :], v[0])
    return DeliveryRow(*values)


def written_package(values: tuple[Any, ...]) -> PackageRow:
    """The package ``package_values`` wrote, as a read of it answers: not purged (the
    outcome column that ends the written values is not read back)."""
    return _package((*values[: _N_PACKAGE - 1], None))


def written_delivery(d: DeliveryRow, seq: int) -> DeliveryRow:
    """The delivery ``delivery_values`` wrote, numbered ``seq``, as a read of it answers:
    the columns intake does not write hold their defaults (no attempts, error or status)."""
    i, package_id, recipient, route, state, updated_us = delivery_values(d)
    return _delivery(
        (seq, i, package_id, recipient, route, state, 0, None, updated_us, None, None, None)
    )


def _event(r: Row) -> Event:
    return Event(
        seq=r["seq"],
        type=r["type"],
        at_us=r["at_us"],
        package_id=r["package_id"],
        delivery_id=r["delivery_id"],
        organ=r["organ"],
        actor=r["actor"],
        data=json.loads(r["data"]),
    )


async def deliveries_by_package(tx: Tx, package_ids: Sequence[str]) -> dict[str, list[DeliveryRow]]:
    out: dict[str, list[DeliveryRow]] = {}
    for r in await tx.fetch(
        f"SELECT {_DELIVERY_COLS} FROM deliveries WHERE package_id IN "
        f"({_marks(len(package_ids))}) ORDER BY seq",
        *package_ids,
    ):
        out.setdefault(r["package_id"], []).append(_delivery(r))
    return out
