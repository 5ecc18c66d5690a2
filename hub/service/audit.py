"""Audit queries: parse filters, run them page by page, export, and record who asked.

Every query (a page, or a whole export) is itself a ledger event ``audit_query``
with the asker and the filters, so the ledger shows who looked at what.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

from hub.config import flag
from hub.edxml.dates import VN_TZ
from hub.errors import InputError
from hub.params import INT64_MAX
from hub.ports import Clock, Store
from hub.records import AuditQuery, AuditRow, Event, State

_PAGE = 500
_FILTERS = (
    "sender",
    "recipient",
    "document_id",
    "code",
    "subject",
    "kind",
    "state",
    "business_status",
    "signature",
)
FILTER_NAMES = (*_FILTERS, "business_type", "from", "to", "overdue")
CSV_COLUMNS = (
    "package_id",
    "received_at",
    "kind",
    "sender",
    "document_id",
    "code",
    "subject",
    "business_type",
    "status_code",
    "signature",
    "recipient",
    "route",
    "state",
    "business_status",
    "purged",
    "legal_hold",
)


def _time(name: str, raw: str) -> int:
    try:
        t = dt.datetime.fromisoformat(raw)
    except ValueError as exc:
        raise InputError(
            f"{name} must be an ISO 8601 date or date-time", code="bad_parameter"
        ) from exc
    if t.tzinfo is None:
        t = t.replace(tzinfo=VN_TZ)  # Vietnam time by default
    return int(t.timestamp() * 1_000_000)


def parse_query(params: Mapping[str, str], *, overdue_before_us: int) -> AuditQuery:
    """Filters from query-string style parameters (API, CLI and console share this).

    ``overdue`` (true) selects the overdue acknowledgements: the caller passes the
    working calendar's instant for them now (``WorkCalendar.overdue_before``)."""
    values: dict[str, Any] = {k: params[k].strip() for k in _FILTERS if params.get(k, "").strip()}
    if "kind" in values and values["kind"] not in ("edoc", "status"):
        raise InputError("kind must be edoc or status", code="bad_parameter")
    if "state" in values and values["state"] not in set(State):
        raise InputError(f"state must be one of {sorted(State)}", code="bad_parameter")
    if raw := params.get("business_type", "").strip():
        if raw not in ("0", "1", "2", "3"):
            raise InputError("business_type must be 0, 1, 2 or 3", code="bad_parameter")
        values["business_type"] = int(raw)
    if raw := params.get("from", "").strip():
        values["since_us"] = _time("from", raw)
    if raw := params.get("to", "").strip():
        values["until_us"] = _time("to", raw)
    if raw := params.get("overdue", "").strip():
        overdue = flag(raw)
        if overdue is None:
            raise InputError("overdue must be true or false", code="bad_parameter")
        if overdue:
            values["overdue_before_us"] = overdue_before_us
    return AuditQuery(**values)


def parse_cursor(raw: str | None) -> tuple[int, str] | None:
    if not raw:
        return None
    at, _, pid = raw.partition(":")
    if not at.isdigit() or not pid or int(at) > INT64_MAX:
        raise InputError("after must be a cursor returned by a previous page", code="bad_parameter")
    return int(at), pid


def cursor(row: AuditRow) -> str:
    return f"{row.package.received_us}:{row.package.id}"


async def record(
    store: Store, clock: Clock, actor: str, query: AuditQuery, how: str, *, rows: int | None = None
) -> None:
    data: dict[str, Any] = {"filters": query.as_dict(), "how": how}
    if rows is not None:
        data["rows"] = rows
    await store.append_events([Event("audit_query", clock.now_us(), actor=actor, data=data)])


async def page(
    store: Store, clock: Clock, actor: str, query: AuditQuery, *, after: str | None, limit: int
) -> tuple[list[AuditRow], str | None]:
    rows = await store.audit(query, after=parse_cursor(after), limit=limit)
    await record(store, clock, actor, query, "page", rows=len(rows))
    return rows, cursor(rows[-1]) if len(rows) == limit else None


async def _all(store: Store, query: AuditQuery) -> AsyncIterator[AuditRow]:
    after = None
    while True:
        rows = await store.audit(query, after=after, limit=_PAGE)
        for r in rows:
            yield r
        if len(rows) < _PAGE:
            return
        after = (rows[-1].package.received_us, rows[-1].package.id)


def iso(us: int | None) -> str | None:
    """Microseconds since the epoch as ISO 8601 UTC (API, exports, console)."""
    if us is None:
        return None
    return dt.datetime.fromtimestamp(us / 1e6, dt.UTC).isoformat(timespec="milliseconds")


def row_records(row: AuditRow) -> list[dict[str, Any]]:
    """One flat record per (package, recipient); a package without deliveries gives one."""
    p = row.package
    base = {
        "package_id": p.id,
        "received_at": iso(p.received_us),
        "kind": p.kind,
        "sender": p.sender_organ,
        "document_id": p.document_id,
        "code": p.code,
        "subject": p.subject,
        "business_type": p.business_type,
        "status_code": p.status_code,
        "signature": p.signature.get("outcome"),
        "purged": iso(row.package.purged_us),
        "legal_hold": row.held,
    }
    empty = {"recipient": None, "route": None, "state": None, "business_status": None}
    if not row.deliveries:
        return [{**base, **empty}]
    return [
        {
            **base,
            "recipient": d.recipient,
            "route": d.route,
            "state": str(d.state),
            "business_status": d.business_status,
        }
        for d in row.deliveries
    ]


async def export(
    store: Store, clock: Clock, actor: str, query: AuditQuery, fmt: str
) -> AsyncIterator[bytes]:
    """Stream every matching row as CSV or JSON Lines; the export is recorded first."""
    if fmt not in ("csv", "jsonl"):
        raise InputError("format must be csv or jsonl", code="bad_parameter")
    await record(store, clock, actor, query, f"export:{fmt}")
    if fmt == "csv":
        yield (",".join(CSV_COLUMNS) + "\r\n").encode()
    async for row in _all(store, query):
        buf = io.StringIO()
        if fmt == "csv":
            w = csv.DictWriter(buf, CSV_COLUMNS)
            w.writerows(row_records(row))
        else:
            for rec in row_records(row):
                buf.write(json.dumps(rec, ensure_ascii=False) + "\n")
        yield buf.getvalue().encode()
