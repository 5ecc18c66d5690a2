"""Ledger benchmark on PostgreSQL: seal and verify throughput, and audit query latency
over ten million events (``LEDGER_EVENTS`` to change it). The data comes from
``bench/ledger_gen.py``. Figures only; nothing here asserts a time."""

from __future__ import annotations

import asyncio
import os
import platform
import random
import statistics
import tempfile
import time
from pathlib import Path

import asyncpg
from cryptography import x509

from adapters.postgres_store import PostgresStore
from bench.ledger_gen import ORGANS, YEAR_US, generate
from hub.ledger import proofs
from hub.ledger.checkpoint import CheckpointSigner
from hub.ledger.sealer import Sealer
from hub.ledger.verify import verify_ledger
from hub.pki import init_pki
from hub.ports import SystemClock
from hub.records import AuditQuery
from hub.service import audit
from tests.service.harness import PG_DSN

SCHEMA = "bench_ledger"
DAY_US = 86_400 * 1_000_000


def _pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


async def _audit_latency(
    store: PostgresStore, now_us: int, n: int = 60
) -> tuple[list[float], list[float], int]:
    rnd = random.Random(11)
    query_ms, recorded_ms, rows = [], [], 0
    for i in range(n):
        since = now_us - YEAR_US + rnd.randrange(YEAR_US - 30 * DAY_US)
        q = AuditQuery(sender=rnd.choice(ORGANS), since_us=since, until_us=since + 30 * DAY_US)
        t = time.perf_counter()
        got = await store.audit(q, after=None, limit=100)
        query_ms.append((time.perf_counter() - t) * 1000)
        rows += len(got)
        if i % 2 == 0:  # the API path: the query plus its audit_query ledger event
            t = time.perf_counter()
            await audit.page(store, SystemClock(), "bench", q, after=None, limit=100)
            recorded_ms.append((time.perf_counter() - t) * 1000)
    return query_ms, recorded_ms, rows


async def _run(n_events: int) -> None:
    store = PostgresStore(PG_DSN, schema=SCHEMA, max_size=4)
    await store.drop_schema()
    await store.open()
    conn = await asyncpg.connect(PG_DSN, server_settings={"search_path": SCHEMA})
    try:
        pg = await conn.fetchval("SHOW server_version")
        print(
            f"== ledger: {n_events:,} events on PostgreSQL {pg}, {platform.machine()}, "
            f"{os.cpu_count()} cores; generator, sealer and verifier share the machine"
        )
        gen_s = await generate(conn, n_events)
        print(f"   generated {n_events:,} events in {gen_s:.1f} s (in PostgreSQL, indexes after)")
        with tempfile.TemporaryDirectory() as tmp:
            init_pki(Path(tmp), [])
            signer = CheckpointSigner.from_files(
                Path(tmp) / "hub/hub.key", Path(tmp) / "hub/hub.pem", Path(tmp) / "ca/ca.pem"
            )
            anchors = x509.load_pem_x509_certificates((Path(tmp) / "ca/ca.pem").read_bytes())
        sealer = Sealer(
            store, signer, SystemClock(), origin="bench", interval_s=60, checkpoint_size=1_000_000
        )
        t = time.perf_counter()
        cp = await sealer.seal_once()
        seal_s = time.perf_counter() - t
        assert cp is not None
        print(
            f"   seal:   {cp.size:,} leaves in {seal_s:.1f} s = {cp.size / seal_s:,.0f} events/s "
            f"(checkpoints every 1,000,000 leaves)"
        )
        last = [0.0]

        def progress(done: int, total: int, s: float) -> None:
            if s - last[0] > 10:
                last[0] = s
                print(f"     verify {done:,}/{total:,} ({done / s:,.0f}/s)", flush=True)

        report = await verify_ledger(store, anchors, progress)
        print(
            f"   verify: {report.leaves:,} leaves, {report.checkpoints} checkpoints in "
            f"{report.seconds:.1f} s = {report.leaves / report.seconds:,.0f} events/s "
            f"(target >= 100,000/s); ok={report.ok}"
        )
        t = time.perf_counter()
        for seq in random.Random(3).sample(range(1, cp.size), 50):
            await proofs.inclusion(store, seq)
        print(
            f"   inclusion proof over {cp.size:,} leaves: "
            f"{(time.perf_counter() - t) / 50 * 1000:.2f} ms each (mean of 50)"
        )
        q_ms, rec_ms, rows = await _audit_latency(store, time.time_ns() // 1000)
        print(
            "   audit query, sender + 30-day range, first page of 100 "
            f"({rows / len(q_ms):.0f} rows on average): p50 {statistics.median(q_ms):.1f} ms, "
            f"p99 {_pct(q_ms, 0.99):.1f} ms, "
            f"max {max(q_ms):.1f} ms (target < 200 ms)"
        )
        print(
            f"   the same through the API path (query + its audit_query event): "
            f"p50 {statistics.median(rec_ms):.1f} ms, p99 {_pct(rec_ms, 0.99):.1f} ms"
        )
    finally:
        await conn.close()
        await store.close()
        if os.environ.get("LEDGER_KEEP") != "1":
            await store.drop_schema()


def main() -> None:
    asyncio.run(_run(int(os.environ.get("LEDGER_EVENTS", "10000000"))))
