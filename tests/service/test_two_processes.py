"""Two hub processes on one PostgreSQL + RabbitMQ serve the same traffic."""

from __future__ import annotations

import asyncio
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
