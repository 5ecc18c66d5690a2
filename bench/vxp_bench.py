"""VXP benchmark: packages/s through the VXP face (10 KB) and through a two-hop
federation (province A -> national -> province B), next to the native API in the
same run. Figures only; nothing here asserts a time."""

from __future__ import annotations

import asyncio
import os
import platform
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp

from adapters.vxp_client import VxpClient
from bench.e2e_bench import _pct, _round, _submit_all
from hub.edxml import demo
from tests.federation import topology
from tests.service import harness
from tests.service.procs import HubProcess, free_port, write_config

A, B = harness.A, harness.B
N_PKGS, CONC = 1000, 32


def _packages(pki: Path, n: int, tag: str, sender: str = A, to: str = B) -> list[bytes]:
    payload = os.urandom(5 * 1024)  # about 10 KB once base64-encoded and signed
    return [
        harness.signed(
            pki,
            sender,
            demo.document_bytes(sender=sender, to=(to,), payload=payload, number=f"{tag}{i}"),
        )
        for i in range(n)
    ]


async def _vxp_send(client: VxpClient, pkgs: list[bytes]) -> list[float]:
    lat: list[float] = []
    sem = asyncio.Semaphore(CONC)

    async def one(data: bytes) -> None:
        async with sem:
            t = time.perf_counter()
            await client.send_edoc(data, from_=A)
            lat.append(time.perf_counter() - t)

    await asyncio.gather(*(one(d) for d in pkgs))
    return lat


async def _vxp_receive(client: VxpClient, n: int) -> None:
    done: set[str] = set()
    sem = asyncio.Semaphore(16)

    async def one(doc_id: str) -> None:
        async with sem:
            await client.get_edoc(doc_id)
            await client.update_status(doc_id, "done")
            done.add(doc_id)

    while len(done) < n:
        items = [i["docId"] for i in await client.received("edoc") if i["docId"] not in done]
        if not items:
            await asyncio.sleep(0.02)
            continue
        await asyncio.gather(*(one(d) for d in items))


def _row(label: str, n: int, elapsed: float, lat: list[float]) -> None:
    print(
        f"   {label:<34} {n:>5} | {n / elapsed:>9.1f} | "
        f"{_pct(lat, 0.5):>7.1f} {_pct(lat, 0.99):>7.1f}"
    )


async def _single_hub() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="lienthong-bench-vxp-"))
    root = tmp / "pki"
    bindings = harness.make_pki(root)
    cfg = harness.config(tmp, root, "embedded")
    cfg.log.level = "warning"
    cfg.log.format = "json"
    tokens = await harness.seed_directory(cfg, bindings)
    hub = HubProcess(write_config(cfg, tmp / "hub.toml"), free_port(), tmp / "hub.log")
    await asyncio.to_thread(hub.start)
    print("\n-- one hub, embedded (SQLite FULL sync + in-process broker), 1 recipient per package")
    print(
        f"   {'path (submit -> fetch -> done)':<34} {'n':>5} | {'e2e pkg/s':>9} | "
        f"{'p50 ms':>7} {'p99 ms':>7}"
    )
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as s:
            pkgs = _packages(root, N_PKGS, f"n{uuid.uuid4().hex[:6]}")
            t0 = time.perf_counter()
            submitting = _submit_all(s, hub.url, tokens["sys-a"], pkgs, CONC)
            lat = await _round(s, submitting, [(hub.url, tokens["sys-b"])], len(pkgs))
            _row("native API (bearer token)", len(pkgs), time.perf_counter() - t0, lat)

        endpoint = hub.url + cfg.vxp.base_path
        for label, sdk in (
            ("VXP face, SDK-style client", True),
            ("VXP face, lienthong client", False),
        ):
            a = VxpClient(endpoint, "sys-a", tokens["vxp:sys-a"], sdk=sdk)
            b = VxpClient(endpoint, "sys-b", tokens["vxp:sys-b"], sdk=sdk)
            pkgs = _packages(root, N_PKGS, f"v{uuid.uuid4().hex[:6]}")
            t0 = time.perf_counter()
            async with asyncio.TaskGroup() as tg:  # a refused send ends the run, as _round
                sent = tg.create_task(_vxp_send(a, pkgs))
                tg.create_task(_vxp_receive(b, len(pkgs)))
            lat = sent.result()
            _row(label, len(pkgs), time.perf_counter() - t0, lat)
            await a.close()
            await b.close()
    finally:
        await asyncio.to_thread(hub.stop)


async def _federation(national_backend: str) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="lienthong-bench-fed-"))
    root = tmp / "pki"
    bindings = harness.make_pki(root)
    fed = await topology.build(tmp, root, bindings, national_backend=national_backend)
    for h in fed.hubs:
        h.cfg.log.level = "warning"
        write_config(h.cfg, h.proc.config_path)
    await asyncio.to_thread(fed.start)
    n = 300
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as s:
            await topology.wait_synced(fed, s)
            pkgs = _packages(root, n, f"f{uuid.uuid4().hex[:6]}", topology.A1, topology.B1)
            t0 = time.perf_counter()
            submitting = _submit_all(s, fed.a.proc.url, fed.a.tokens["sys-a"], pkgs, CONC)
            lat = await _round(s, submitting, [(fed.b.proc.url, fed.b.tokens["sys-b"])], n)
            backend = (
                "national on PostgreSQL + RabbitMQ"
                if national_backend == "scaled"
                else "all embedded"
            )
            print(
                "\n-- federation: 3 hub processes, province A -> national -> province B "
                f"({backend})"
            )
            print("   submitted at A (native API), fetched and acknowledged at B")
            _row("two-hop federation", n, time.perf_counter() - t0, lat)
    finally:
        await asyncio.to_thread(fed.stop)
        await topology.drop(fed)


async def _main() -> None:
    print("== vxp: signed 10 KB packages through the VXP face and a two-hub federation")
    print(
        f"   machine: {os.cpu_count()} cores, {platform.python_implementation()} "
        f"{platform.python_version()}; hubs and load generator share the machine; "
        f"{CONC} concurrent senders"
    )
    await _single_hub()
    services = harness._port_open(5432) and harness._port_open(5672)
    await _federation("scaled" if services else "embedded")


def main() -> None:
    asyncio.run(_main())
