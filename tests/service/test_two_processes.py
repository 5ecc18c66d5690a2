"""Two hub processes on one PostgreSQL + RabbitMQ serve the same traffic."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

import aiohttp
import pytest

from hub.edxml import demo
from tests.service import harness
from tests.service.harness import A, B, signed
from tests.service.procs import HubProcess, free_port, write_config

pytestmark = pytest.mark.slow


async def test_submit_on_one_fetch_and_ack_on_the_other(
    tmp_path: Path, pki_dir: tuple[Path, dict[str, str]]
) -> None:
    harness.require_services()
    root, bindings = pki_dir
    cfg = harness.config(tmp_path, root, "scaled")
    tokens = await harness.seed_directory(cfg, bindings)
    conf = write_config(cfg, tmp_path / "hub.toml")
    one = HubProcess(conf, free_port(), tmp_path / "one.log")
    two = HubProcess(conf, free_port(), tmp_path / "two.log")
    try:
        await asyncio.gather(asyncio.to_thread(one.start), asyncio.to_thread(two.start))
        a = {"Authorization": f"Bearer {tokens['sys-a']}"}
        b = {"Authorization": f"Bearer {tokens['sys-b']}"}
        sent: list[tuple[str, bytes]] = []
        async with aiohttp.ClientSession() as s:
            for i in range(20):
                data = signed(root, A, demo.document_bytes(sender=A, to=(B,), number=str(500 + i)))
                via = one if i % 2 == 0 else two
                async with s.post(via.url + "/api/v1/packages", data=data, headers=a) as r:
                    assert r.status == 202, await r.text()
                    sent.append(((await r.json())["id"], data))

            async def inbox() -> list[str]:
                async with s.get(
                    two.url + "/api/v1/inbox", headers=b, params={"limit": "100"}
                ) as r:
                    return [i["id"] for i in (await r.json())["items"]]

            got = await harness.eventually(inbox, lambda xs: len(xs) == 20)
            assert set(got) == {pid for pid, _ in sent}
            for pid, data in sent:
                async with s.get(f"{two.url}/api/v1/packages/{pid}", headers=b) as r:
                    assert await r.read() == data
                async with s.post(
                    f"{two.url}/api/v1/packages/{pid}/ack", headers=b, json={"result": "done"}
                ) as r:
                    assert r.status == 200
            async with s.get(f"{one.url}/api/v1/packages/{sent[0][0]}/deliveries", headers=a) as r:
                assert (await r.json())["deliveries"][0]["state"] == "done"
    finally:
        await asyncio.gather(asyncio.to_thread(one.stop), asyncio.to_thread(two.stop))
        await harness.drop_backends(cfg)


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(x) for x in path.read_text().split()]


async def test_workers_share_one_port_and_stop_together(
    tmp_path: Path, pki_dir: tuple[Path, dict[str, str]]
) -> None:
    """``[server] workers = 2``: two hub processes behind one port both take traffic; a
    worker that dies takes the unit down (non-zero exit) instead of running half-staffed."""
    harness.require_services()
    root, bindings = pki_dir
    cfg = harness.config(tmp_path, root, "scaled")
    cfg.server.workers = 2
    cfg.log.format, cfg.log.level = "json", "info"
    tokens = await harness.seed_directory(cfg, bindings)
    hub = HubProcess(write_config(cfg, tmp_path / "hub.toml"), free_port(), tmp_path / "hub.log")
    try:
        await asyncio.to_thread(hub.start)
        assert hub.proc is not None
        workers = await harness.eventually(
            lambda: asyncio.to_thread(_children, hub.proc.pid),  # type: ignore[union-attr]
            lambda ws: len(ws) == 2,
        )
        a = {"Authorization": f"Bearer {tokens['sys-a']}"}
        for i in range(24):  # a new connection each time: the kernel spreads them
            data = signed(root, A, demo.document_bytes(sender=A, to=(B,), number=str(700 + i)))
            async with (
                aiohttp.ClientSession() as s,
                s.post(hub.url + "/api/v1/packages", data=data, headers=a) as r,
            ):
                assert r.status == 202, await r.text()
        lines = [json.loads(x) for x in hub.log_path.read_text().splitlines() if x.startswith("{")]
        accepted_by = {x.get("pid") for x in lines if x.get("event") == "package_accepted"}
        assert accepted_by == set(workers)
        # /metrics reports the whole unit, whichever worker answers the scrape.
        auditor = {"Authorization": f"Bearer {tokens['auditor']}"}
        for _ in range(6):
            async with (
                aiohttp.ClientSession() as s,
                s.get(hub.url + "/metrics", headers=auditor) as r,
            ):
                assert r.status == 200
                text = await r.text()
            assert _sample(text, 'lienthong_intake_total{kind="edoc",outcome="accepted"}') == 24
            assert _sample(text, 'lienthong_intake_seconds_count{kind="edoc"}') == 24
            assert _sample(text, "lienthong_deliveries_open") is not None
        os.kill(workers[0], signal.SIGKILL)
        assert await asyncio.to_thread(hub.proc.wait, 20) == 1
        assert _gone(workers[1]), "the surviving worker was left running"
    finally:
        await asyncio.to_thread(hub.stop)


def _sample(text: str, name: str) -> float | None:
    """One sample's value from Prometheus text (None when absent)."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_workers_need_the_scaled_mode(tmp_path: Path) -> None:
    from hub.config import load  # noqa: PLC0415
    from hub.errors import ConfigError  # noqa: PLC0415

    with pytest.raises(ConfigError, match="workers > 1 needs"):
        load(None, env={"LIENTHONG_SERVER_WORKERS": "2"})
    cfg = load(
        None,
        env={
            "LIENTHONG_SERVER_WORKERS": "2",
            "LIENTHONG_STORE_KIND": "postgres",
            "LIENTHONG_BROKER_KIND": "rabbitmq",
        },
    )
    assert cfg.server.workers == 2


def test_an_operators_metrics_directory_is_emptied_of_an_earlier_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hub.cli.serve_cmd import metrics_dir  # noqa: PLC0415

    (tmp_path / "counter_123.db").write_bytes(b"stale")
    (tmp_path / "keep.txt").write_text("not ours")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    with metrics_dir() as path:
        assert path == tmp_path
        assert sorted(p.name for p in path.iterdir()) == ["keep.txt"]
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
    with metrics_dir() as private:
        assert private.is_dir() and private != tmp_path
    assert not private.exists()  # a private directory goes with the run
