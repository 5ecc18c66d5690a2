"""Synthetic ledger data for the ledger benchmark: packages, deliveries and their events.

Shaped like a province's traffic: 400 sender organs, one year of traffic, five
events per package (received, accepted, routed, available, acknowledged), each
package to one recipient, events in time order. PostgreSQL generates the rows itself
(``generate_series``), so ten million events load in a minute or two.
"""

from __future__ import annotations

import time
from typing import Any

EVENTS_PER_PACKAGE = 5
ORGANS = [f"000.00.{i % 100:02d}.H{53 + i // 100:02d}" for i in range(400)]
YEAR_US = 365 * 86_400 * 1_000_000

# $1 packages, $2 first received_us, $3 microseconds between packages. The organ of
# package g is ORGANS[(g * 7919) % 400] (a fixed scramble, so senders interleave).
_ORGAN = (
    "'000.00.' || lpad((({x} * 7919) % 400 % 100)::text, 2, '0') "
    "|| '.H' || (53 + ({x} * 7919) % 400 / 100)"
)
_PACKAGES = f"""
INSERT INTO packages (id, sha256, size, kind, sender_organ, system_id, received_us, document_id,
  code, subject, business_type, signature, dedupe_key, signature_outcome)
SELECT md5('p' || g)::uuid::text, md5('s' || g) || md5('t' || g), 10240, 'edoc',
  {_ORGAN.format(x="g")}, 'sys-' || (g * 7919) % 400, $2 + g * $3 + (g * 104729) % $3,
  'doc-' || g, g || '/UBND-VP', 'V/v báo cáo số ' || g, 0,
  '{{"outcome":"valid","policy":"if-present"}}', 'doc:' || g, 'valid'
FROM generate_series(1, $1::bigint) g
"""
_DELIVERIES = f"""
INSERT INTO deliveries (id, package_id, recipient, route, state, attempts, updated_us)
SELECT md5('d' || g)::uuid::text, md5('p' || g)::uuid::text, {_ORGAN.format(x="(g + 13)")},
  'local', 'done', 0, $2 + g * $3 + 5000000
FROM generate_series(1, $1::bigint) g
"""
_EVENTS = """
INSERT INTO events (type, at_us, package_id, delivery_id, organ, actor, data)
SELECT t.type, p.received_us + t.k * 1000000, p.id,
  CASE WHEN t.k >= 2 THEN md5('d' || substr(p.dedupe_key, 5))::uuid::text END,
  p.sender_organ, 'system:' || p.system_id,
  json_build_object('step', t.k, 'sha256', p.sha256, 'size', p.size)::text
FROM packages p CROSS JOIN (VALUES (0, 'received'), (1, 'accepted'), (2, 'routed'),
  (3, 'available'), (4, 'acknowledged')) AS t(k, type)
ORDER BY p.received_us, t.k
"""


async def generate(conn: Any, n_events: int) -> float:
    """Load ``n_events`` events (and their packages) through ``conn``; return seconds."""
    started = time.perf_counter()
    n = n_events // EVENTS_PER_PACKAGE
    start_us = time.time_ns() // 1000 - YEAR_US
    step = max(1, YEAR_US // max(1, n))
    # Secondary indexes are built once at the end: far faster than row by row.
    defs = [
        r["indexdef"]
        for r in await conn.fetch(
            "SELECT i.indexname, i.indexdef FROM pg_indexes i JOIN pg_class c "
            "ON c.relname = i.indexname AND c.relnamespace = current_schema()::regnamespace "
            "JOIN pg_index x ON x.indexrelid = c.oid WHERE i.schemaname = current_schema() "
            "AND i.tablename IN ('packages', 'deliveries', 'events') AND NOT x.indisunique"
        )
    ]
    for d in defs:
        await conn.execute("DROP INDEX " + d.split(" INDEX ", 1)[1].split(" ON ", 1)[0])
    await conn.execute("SET work_mem = '256MB'")
    await conn.execute(_PACKAGES, n, start_us, step)
    await conn.execute(_DELIVERIES, n, start_us, step)
    await conn.execute(_EVENTS)
    for d in defs:
        await conn.execute(d)
    await conn.execute("ANALYZE")
    return time.perf_counter() - started
