"""Three hub processes on loopback: province A, the national hub N, province B.

A and B each connect to N through N's VXP face (as systems ``hub-a`` and ``hub-b``,
strict mode: fresh signed timestamps, no replays), exactly as they would connect to
the Government Office's national axis. Used by the federation tests and by
``make bench BENCH=vxp``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from adapters.factory import opened_store
from hub.config import Config
from hub.ports import SystemClock
from hub.records import Organ, System
from hub.service.directory_admin import DirectoryAdmin
from tests.service import harness
from tests.service.procs import HubProcess, free_port, write_config

A1 = "000.00.00.H53"  # province A, served by sys-a at A
A2 = "000.00.05.H53"  # province A, served by sys-a at A
B1 = "000.00.00.G22"  # province B, served by sys-b at B


@dataclass
class Hub:
    name: str
    cfg: Config
    proc: HubProcess
    tokens: dict[str, str] = field(default_factory=dict)

    def auth(self, system: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[system]}"}


@dataclass
class Federation:
    a: Hub
    n: Hub
    b: Hub

    @property
    def hubs(self) -> tuple[Hub, Hub, Hub]:
        return (self.a, self.n, self.b)

    def start(self) -> None:
        for h in (self.n, self.a, self.b):
            h.proc.start()

    def stop(self) -> None:
        for h in self.hubs:
            h.proc.stop()


def _cfg(tmp: Path, pki: Path, name: str, backend: str, **overrides: Any) -> Config:
    cfg = harness.config(tmp / name, pki, backend, **overrides)
    (tmp / name).mkdir(parents=True, exist_ok=True)
    cfg.upstream.kind = "none"
    cfg.upstream.poll_s = 0.2
    cfg.delivery.base_s = 0.2
    cfg.delivery.cap_s = 1.0
    cfg.delivery.max_attempts = 200
    cfg.log.format = "json"
    return cfg


async def build(
    tmp: Path, pki: Path, bindings: dict[str, str], *, national_backend: str = "embedded"
) -> Federation:
    n_cfg = _cfg(tmp, pki, "national", national_backend)
    n_port = free_port()
    secrets: dict[str, str] = {}
    async with opened_store(n_cfg) as store:
        admin = DirectoryAdmin(store, SystemClock(), "test", vxp_key=Path(n_cfg.vxp.key_file))
        for sid in ("hub-a", "hub-b"):
            await admin.put_system(System(sid, sid, vxp_strict=True))
            secrets[sid] = (await admin.issue_vxp_secret(sid))[0]
        for organ, name, sid in (
            (A1, "UBND tinh Tay Ninh", "hub-a"),
            (A2, "So Noi vu Tay Ninh", "hub-a"),
            (B1, "Van phong Chinh phu", "hub-b"),
        ):
            await admin.put_organ(Organ(organ, name, sid))
        for organ in (A1, B1):
            await admin.bind(bindings[organ], organ)
    n = Hub(
        "national", n_cfg, HubProcess(write_config(n_cfg, tmp / "n.toml"), n_port, tmp / "n.log")
    )

    provinces = []
    for name, sid, organs in (("a", "hub-a", (A1, A2)), ("b", "hub-b", (B1,))):
        cfg = _cfg(tmp, pki, name, "embedded")
        cfg.upstream.kind = "vxp"
        cfg.upstream.url = f"http://127.0.0.1:{n_port}{n_cfg.vxp.base_path}"
        cfg.upstream.system_id = sid
        cfg.upstream.secret = secrets[sid]
        cfg.upstream.breaker_failures = 3
        cfg.upstream.breaker_open_s = 1.0
        # A takes with getEdoc (the SDK's way), B with downloadEdoc (spooled): both paths.
        cfg.upstream.take = "downloadEdoc" if name == "b" else "getEdoc"
        system = "sys-" + name
        async with opened_store(cfg) as store:
            admin = DirectoryAdmin(store, SystemClock(), "test", vxp_key=Path(cfg.vxp.key_file))
            await admin.put_system(System(system, system))
            for organ in organs:
                await admin.put_organ(Organ(organ, organ, system))
            for organ, fp in bindings.items():
                if organ in (A1, B1):
                    await admin.bind(fp, organ)
            tokens = {system: (await admin.issue_token(system))[0]}
            tokens["vxp:" + system] = (await admin.issue_vxp_secret(system))[0]
        port = free_port()
        proc = HubProcess(write_config(cfg, tmp / f"{name}.toml"), port, tmp / f"{name}.log")
        provinces.append(Hub(name, cfg, proc, tokens))
    return Federation(provinces[0], n, provinces[1])


async def knows(s: aiohttp.ClientSession, hub: Hub, system: str, organ: str) -> bool:
    async with s.get(hub.proc.url + "/api/v1/organs", headers=hub.auth(system)) as r:
        return organ in {o["organ_id"] for o in (await r.json())["organs"]}


async def wait_synced(fed: Federation, s: aiohttp.ClientSession) -> None:
    """Each province has learnt the other's organs from the national directory."""
    await harness.eventually(lambda: knows(s, fed.a, "sys-a", B1), bool, timeout=30)
    await harness.eventually(lambda: knows(s, fed.b, "sys-b", A1), bool, timeout=30)


async def drop(fed: Federation) -> None:
    await asyncio.gather(*(harness.drop_backends(h.cfg) for h in fed.hubs))
