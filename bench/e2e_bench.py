"""End-to-end benchmark: submit -> deliver -> fetch -> acknowledge, through a real hub
process over HTTP, embedded (SQLite + in-process broker) and on PostgreSQL + RabbitMQ.

Prints packages/s, submit latency p50/p99 at full load and at half the measured
maximum rate, peak memory growth of the hub process for large packages, and beside
them this machine's raw limits measured in the same run (python-xmlsec verify alone,
RabbitMQ publish + consume alone). Figures only; nothing here asserts a time.
"""

from __future__ import annotations

import asyncio
import os
import platform
import statistics
import tempfile
import time
import uuid
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from lxml import etree

from hub.edxml import demo
from hub.edxml.builder import build
from hub.signature.verify import SIGNATURE
from tests.service import harness
from tests.service.procs import HubProcess, free_port, write_config

A, B, X = harness.A, harness.B, harness.X
SIZES = (("10 KB", 10 * 1024, 2000, 64), ("1 MB", 1024 * 1024, 60, 8), ("20 MB", 20 << 20, 6, 2))
# Peak memory is measured apart, each time in a fresh hub process: memory an earlier
# phase left allocated would otherwise be reused and hide the growth.
MEMORY = ((1, 1), (2, 2))  # (packages in flight, packages)


def _packages(pki_dir: Path, size: int, n: int, tag: str) -> list[bytes]:
    base = len(build(demo.document(sender=A, to=(B, X), payload=b"")))
    raw = max(0, (size - base - 2400) * 3 // 4)
    payload = os.urandom(raw)
    return [
        harness.signed(
            pki_dir,
            A,
            demo.document_bytes(sender=A, to=(B, X), payload=payload, number=f"{tag}{i}"),
        )
        for i in range(n)
    ]


def _proc_kb(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(next(x for x in f if x.startswith(field)).split()[1])


def _pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))] * 1000


async def _consume(s: aiohttp.ClientSession, url: str, token: str, n: int) -> None:
    h = {"Authorization": f"Bearer {token}"}
    acked: set[str] = set()
    sem = asyncio.Semaphore(16)

    async def one(pid: str) -> None:
        async with sem:
            async with s.get(f"{url}/api/v1/packages/{pid}", headers=h) as r:
                await r.read()
            async with s.post(
                f"{url}/api/v1/packages/{pid}/ack", headers=h, json={"result": "done"}
            ) as r:
                assert r.status == 200, await r.text()
            acked.add(pid)

    while len(acked) < n:
        async with s.get(f"{url}/api/v1/inbox", headers=h, params={"limit": "500"}) as r:
            items = [i["id"] for i in (await r.json())["items"] if i["id"] not in acked]
        if not items:
            await asyncio.sleep(0.02)
            continue
        await asyncio.gather(*(one(pid) for pid in items))


async def _round(
    s: aiohttp.ClientSession,
    submitting: Coroutine[Any, Any, list[float]],
    consumers: list[tuple[str, str]],
    n: int,
) -> list[float]:
    """Submit, while each recipient (hub URL, token) fetches and acknowledges ``n``
    packages; the submit latencies. A refused submission ends the round (and the run)
    with its error at once: the consumers would otherwise wait for packages that never
    come."""
    async with asyncio.TaskGroup() as tg:
        sub = tg.create_task(submitting)
        for url, token in consumers:
            tg.create_task(_consume(s, url, token, n))
    return sub.result()


def _both(url: str, tokens: dict[str, str]) -> list[tuple[str, str]]:
    """The two local recipients of this benchmark's packages."""
    return [(url, tokens["sys-b"]), (url, tokens["sys-x"])]


async def _submit_all(
    s: aiohttp.ClientSession,
    url: str,
    token: str,
    pkgs: list[bytes],
    conc: int,
    rate: float | None = None,
) -> list[float]:
    """Submit ``pkgs``, ``conc`` at a time; each one's latency. Closed loop by default
    (the next send when one ends); at ``rate``, an open loop: each package is due at its
    own time, and its latency counts from then, so a send held back because ``conc`` were
    in flight (the hub's per-system upload limit) counts its wait too."""
    h = {"Authorization": f"Bearer {token}", "Content-Type": "application/xml"}
    lat: list[float] = []
    sem = asyncio.Semaphore(conc)

    async def one(data: bytes, due: float | None = None) -> None:
        async with sem:
            t = time.perf_counter() if due is None else due
            async with s.post(f"{url}/api/v1/packages", data=data, headers=h) as r:
                answer = await r.read()
                assert r.status == 202, f"submit answered {r.status}: {answer[:300]!r}"
            lat.append(time.perf_counter() - t)

    if rate is None:
        await asyncio.gather(*(one(d) for d in pkgs))
    else:  # open loop at a fixed rate
        tasks = []
        start = time.perf_counter()
        for i, d in enumerate(pkgs):
            due = start + i / rate
            if (delay := due - time.perf_counter()) > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(d, due)))
        await asyncio.gather(*tasks)
    return lat


async def _backend(backend: str, workers: int = 1) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="lienthong-bench-"))
    root = tmp / "pki"
    bindings = harness.make_pki(root)
    cfg = harness.config(tmp, root, backend)
    cfg.log.level = "warning"
    cfg.log.format = "json"
    cfg.server.workers = workers
    tokens = await harness.seed_directory(cfg, bindings)
    hub = HubProcess(write_config(cfg, tmp / "hub.toml"), free_port(), tmp / "hub.log")
    await asyncio.to_thread(hub.start)
    assert hub.proc is not None
    label_b = (
        "embedded (SQLite FULL sync + in-process broker)"
        if backend == "embedded"
        else f"PostgreSQL + RabbitMQ (quorum queues), {workers} hub process(es) on one port"
    )
    print(f"\n-- {label_b}; hub in its own process; client + consumers in this one")
    # The machine's speed drifts within a run (it is shared): a raw figure next to each
    # backend's, measured just before it, lets its figures be read against their own.
    print(f"   raw xmlsec just before this backend: {_raw_xmlsec(root):.0f}/s (one core)")
    print(
        f"   {'size':>6} {'n':>5} {'conc':>4} | {'submit/s':>9} {'e2e pkg/s':>9} | "
        f"{'p50 ms':>7} {'p99 ms':>7}"
    )
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as s:
            # warm-up
            warm = _packages(root, 10240, 50, "w")
            submitting = _submit_all(s, hub.url, tokens["sys-a"], warm, 16)
            await _round(s, submitting, _both(hub.url, tokens), 50)
            max_rate = 0.0
            for label, size, n, conc in SIZES if workers == 1 else SIZES[:1]:
                pkgs = _packages(root, size, n, f"{label[:2].strip()}{uuid.uuid4().hex[:6]}")
                t0 = time.perf_counter()
                submitting = _submit_all(s, hub.url, tokens["sys-a"], pkgs, conc)
                lat = await _round(s, submitting, _both(hub.url, tokens), n)
                e2e = n / (time.perf_counter() - t0)
                submit_rate = n / sum(lat) * conc if lat else 0.0
                if size == 10 * 1024:
                    max_rate = e2e
                print(
                    f"   {label:>6} {n:>5} {conc:>4} | {submit_rate:>9.1f} {e2e:>9.1f} | "
                    f"{_pct(lat, 0.5):>7.1f} {_pct(lat, 0.99):>7.1f}"
                )
            half = max_rate / 2
            pkgs = _packages(root, 10 * 1024, int(half * 5), f"h{uuid.uuid4().hex[:6]}")
            # At most the hub's per-system upload limit in flight (more is refused).
            in_flight = cfg.server.max_uploads_per_system
            submitting = _submit_all(s, hub.url, tokens["sys-a"], pkgs, in_flight, rate=half)
            lat = await _round(s, submitting, _both(hub.url, tokens), len(pkgs))
            print(
                f"   10 KB at half the max e2e rate ({half:.0f}/s, open loop, {len(pkgs)} pkgs, "
                f"<= {in_flight} in flight, latency from each one's due time): "
                f"p50 {_pct(lat, 0.5):.1f} ms, p99 {_pct(lat, 0.99):.1f} ms, "
                f"mean {statistics.mean(lat) * 1000:.1f} ms"
            )
        await asyncio.to_thread(hub.stop)
        if workers == 1:
            for conc, n in MEMORY:
                await _memory(cfg, tmp, root, tokens, conc, n)
    finally:
        await asyncio.to_thread(hub.stop)
        await harness.drop_backends(cfg)


async def _memory(
    cfg: Any, tmp: Path, root: Path, tokens: dict[str, str], conc: int, n: int
) -> None:
    """Peak RSS growth of a fresh hub process for 20 MB packages, submit to ack."""
    hub = HubProcess(tmp / "hub.toml", free_port(), tmp / f"hub-mem-{conc}.log")
    await asyncio.to_thread(hub.start)
    assert hub.proc is not None
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as s:
            # Warm-up through the same paths a 20 MB package takes (spooled upload,
            # examination in a worker thread, chunked download), so one-time costs (the
            # thread, its malloc arena, lazy imports) are not counted as growth.
            tag = f"m{uuid.uuid4().hex[:6]}"
            warm = _packages(root, 10240, 8, tag) + _packages(root, 2 << 20, 2, tag + "L")
            submitting = _submit_all(s, hub.url, tokens["sys-a"], warm, 2)
            await _round(s, submitting, _both(hub.url, tokens), 10)
            pkgs = _packages(root, 20 << 20, n, f"M{uuid.uuid4().hex[:6]}")
            before = _proc_kb(hub.proc.pid, "VmRSS:")
            submitting = _submit_all(s, hub.url, tokens["sys-a"], pkgs, conc)
            await _round(s, submitting, _both(hub.url, tokens), n)
            growth = (_proc_kb(hub.proc.pid, "VmHWM:") - before) * 1024
        print(
            f"   peak memory, fresh hub process, {n} x 20 MB package(s), {conc} in flight, "
            f"submit -> fetch by 2 -> ack: {growth / 1e6:.1f} MB = "
            f"{growth / (conc * len(pkgs[0])):.2f}x per in-flight package"
        )
    finally:
        await asyncio.to_thread(hub.stop)


def _raw_xmlsec(pki_dir: Path) -> float:
    data = _packages(pki_dir, 10 * 1024, 1, "raw")[0]
    cert = x509.load_pem_x509_certificate((pki_dir / "agencies" / f"{A}.pem").read_bytes())
    # python-xmlsec at its fastest, as the hub uses it: a bare public key.
    pub = cert.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    key = xmlsec.Key.from_memory(pub, xmlsec.constants.KeyDataFormatPem)
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < 2.0:
        root = etree.fromstring(data, parser)
        ctx = xmlsec.SignatureContext()
        ctx.key = key
        ctx.verify(next(root.iter(SIGNATURE)))
        n += 1
    return n / (time.perf_counter() - start)


async def _raw_rabbit(n: int = 5000) -> tuple[float, float]:
    conn = await aio_pika.connect(harness.AMQP_URL)
    ch = await conn.channel(publisher_confirms=True)
    q = await ch.declare_queue(
        f"lt_bench_{uuid.uuid4().hex[:8]}", durable=True, arguments={"x-queue-type": "quorum"}
    )
    body = b'{"delivery_id":"00000000-0000-0000-0000-000000000000","package_id":"x"}'
    t = time.perf_counter()
    await asyncio.gather(
        *(
            ch.default_exchange.publish(
                aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                routing_key=q.name,
            )
            for _ in range(n)
        )
    )
    pub = n / (time.perf_counter() - t)
    await ch.set_qos(prefetch_count=500)
    got = 0
    done = asyncio.Event()

    async def on(m: aio_pika.abc.AbstractIncomingMessage) -> None:
        nonlocal got
        await m.ack()
        got += 1
        if got == n:
            done.set()

    t = time.perf_counter()
    tag = await q.consume(on)
    await done.wait()
    cons = n / (time.perf_counter() - t)
    await q.cancel(tag)  # before the queue goes: the broker would cancel it, noisily
    await q.delete(if_unused=False, if_empty=False)
    await conn.close()
    return pub, cons


async def _main() -> None:
    print("== e2e: signed packages, 2 local recipients each; submit -> deliver -> fetch -> ack")
    print(
        f"   machine: {os.cpu_count()} cores, {platform.python_implementation()} "
        f"{platform.python_version()}; hub and load generator share the machine"
    )
    tmp = Path(tempfile.mkdtemp(prefix="lienthong-bench-raw-"))
    harness.make_pki(tmp)
    print(
        f"   raw: python-xmlsec verify alone, 10 KB signed package: "
        f"{_raw_xmlsec(tmp):.0f}/s (one core)"
    )
    services = harness._port_open(5432) and harness._port_open(5672)
    if services:
        pub, cons = await _raw_rabbit()
        print(
            f"   raw: RabbitMQ alone, 5000 persistent msgs to a quorum queue: publish "
            f"(pipelined confirms) {pub:.0f}/s, consume (manual ack) {cons:.0f}/s"
        )
    await _backend("embedded")
    if services:
        await _backend("scaled")
        await _backend("scaled", workers=2)
    else:
        print("\n-- PostgreSQL + RabbitMQ: skipped (services not running on 127.0.0.1)")
    print(
        "\n   targets: >= 500 pkg/s embedded, >= 300 pkg/s PostgreSQL + RabbitMQ, p99 submit "
        "<= 100 ms at half the max rate, peak memory growth <= 3x per in-flight 20 MB package"
    )


def main() -> None:
    asyncio.run(_main())
