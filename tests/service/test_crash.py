"""Crash tests with real processes: a burst of 1,000 submissions while the hub is
killed with SIGKILL, or RabbitMQ or PostgreSQL restarts. Afterwards every package
that got a 2xx is in each recipient's inbox exactly once, and none that got an
error is. Submissions whose connection died without an answer have an unknown
outcome; the client resubmits them (as a real client would) and de-duplication
must make that safe."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from hub.edxml import demo
from tests.service import harness
from tests.service.harness import A, B, X, signed
from tests.service.procs import HubProcess, free_port, write_config

pytestmark = pytest.mark.slow

N = 1000
BAD_EVERY = 20  # every 20th package is signed by a certificate not bound to A: refused


async def _burst(
    url: str, token: str, packages: list[tuple[str, bytes]], on_progress: Callable[[int], None]
) -> dict[str, Any]:
    ok: dict[str, str] = {}  # number -> package id
    refused: set[str] = set()
    unknown: set[str] = set()
    done = 0
    sem = asyncio.Semaphore(32)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/xml"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as s:

        async def one(number: str, data: bytes) -> None:
            nonlocal done
            async with sem:
                try:
                    async with s.post(url + "/api/v1/packages", data=data, headers=headers) as r:
                        body = await r.json()
                        if r.status in (200, 202):
                            ok[number] = body["id"]
                        else:
                            refused.add(number)
                except (aiohttp.ClientError, TimeoutError):
                    unknown.add(number)
                done += 1
                on_progress(done)

        await asyncio.gather(*(one(n, d) for n, d in packages))
    return {"ok": ok, "refused": refused, "unknown": unknown}


async def _inbox_ids(url: str, token: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    after: str | None = None
    async with aiohttp.ClientSession() as s:
        while True:
            params = {"limit": "1000", "state": "all"} | ({"after": after} if after else {})
            async with s.get(
                url + "/api/v1/inbox", params=params, headers={"Authorization": f"Bearer {token}"}
            ) as r:
                body = await r.json()
            out += [(i["id"], i["document_id"]) for i in body["items"]]
            after = body["next"]
            if after is None:
                return out


def _packages(pki_dir: Path) -> list[tuple[str, bytes]]:
    out = []
    for i in range(N):
        number = str(100000 + i)
        data = demo.document_bytes(sender=A, to=(B, X), number=number)
        if i % BAD_EVERY == 0:
            data = signed(pki_dir, B, data)  # B's certificate is not bound to A: refused
        out.append((number, data))
    return out


def _service(cmd: list[str]) -> None:
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)


def _pg_restart() -> None:
    version = sorted(os.listdir("/etc/postgresql"))[0]
    _service(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart", "-m", "fast"]
    )


def _rabbit_restart() -> None:
    _service(["rabbitmqctl", "stop_app"])
    _service(["rabbitmqctl", "start_app"])
    _service(["rabbitmqctl", "await_startup"])


@pytest.mark.parametrize(
    ("backend", "fault"),
    [("embedded", "kill"), ("scaled", "kill"), ("scaled", "rabbitmq"), ("scaled", "postgres")],
)
async def test_burst_survives_fault(
    backend: str, fault: str, tmp_path: Path, pki_dir: tuple[Path, dict[str, str]]
) -> None:
    if backend == "scaled":
        harness.require_services()
    root, bindings = pki_dir
    cfg = harness.config(tmp_path, root, backend)
    cfg.log.format = "json"
    tokens = await harness.seed_directory(cfg, bindings)
    hub = HubProcess(write_config(cfg, tmp_path / "hub.toml"), free_port(), tmp_path / "hub.log")
    packages = _packages(root)
    loop = asyncio.get_running_loop()
    fault_task: list[asyncio.Future[None]] = []

    def on_progress(done: int) -> None:
        if done == 300 and not fault_task:
            if fault == "kill":
                fault_task.append(loop.run_in_executor(None, hub.kill9))
            elif fault == "rabbitmq":
                fault_task.append(loop.run_in_executor(None, _rabbit_restart))
            else:
                fault_task.append(loop.run_in_executor(None, _pg_restart))

    try:
        await asyncio.to_thread(hub.start)
        result = await _burst(hub.url, tokens["sys-a"], packages, on_progress)
        await asyncio.gather(*fault_task)
        if fault == "kill":
            assert result["unknown"], "the kill should have cut some submissions off"
            await asyncio.to_thread(hub.start)
        # The client resubmits what it never got an answer for; the hub must not duplicate.
        by_number = dict(packages)
        retry = await _burst(
            hub.url,
            tokens["sys-a"],
            [(n, by_number[n]) for n in sorted(result["unknown"])],
            lambda _d: None,
        )
        assert not retry["unknown"]
        ok = result["ok"] | retry["ok"]
        refused = result["refused"] | retry["refused"]
        bad = {n for i, (n, _) in enumerate(packages) if i % BAD_EVERY == 0}
        assert refused >= bad, "every wrongly signed package was refused"
        if fault == "kill":
            assert refused == bad, "only wrongly signed packages are refused"
        assert len(ok) + len(refused) == N
        for system in ("sys-b", "sys-x"):

            async def ids(system: str = system) -> list[tuple[str, str]]:
                return await _inbox_ids(hub.url, tokens[system])

            got = await harness.eventually(ids, lambda xs: len(xs) >= len(ok), timeout=90)
            package_ids = [pid for pid, _ in got]
            assert len(package_ids) == len(set(package_ids)), f"{system}: a package twice"
            extra = {doc for pid, doc in got if pid not in set(ok.values())}
            assert set(package_ids) == set(ok.values()), (
                f"{system}: accepted != inbox; extra {extra}; retried {retry}"
            )
            numbers = {doc.split(",")[2].split("/")[0] for _, doc in got}
            assert not numbers & refused, f"{system}: a refused package was delivered"
    finally:
        await asyncio.to_thread(hub.stop)
        await harness.drop_backends(cfg)
