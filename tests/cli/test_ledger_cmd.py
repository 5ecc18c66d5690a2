"""``lienthong ledger``, ``evidence``, ``audit`` and ``retention`` on a configured store."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest

from adapters.factory import opened_store
from hub.cli.main import main
from hub.config import load
from hub.edxml import demo
from hub.records import Event
from tests.service import harness
from tests.service.procs import write_config


def _setup(tmp_path: Path) -> tuple[Path, str]:
    """A SQLite hub store with one accepted package; return (config file, package id)."""
    pki = tmp_path / "pki"
    bindings = harness.make_pki(pki)
    cfg = harness.config(tmp_path, pki, "embedded")
    conf = write_config(cfg, tmp_path / "hub.toml")

    async def prepare() -> str:
        tokens = await harness.seed_directory(cfg, bindings)
        h = await harness.start(cfg, tokens, pki)
        try:
            data = harness.signed(
                pki, harness.A, demo.document_bytes(sender=harness.A, to=(harness.B,))
            )
            r = await h.submit("sys-a", data, "edoc")
            assert r.status == 202
            return str((await r.json())["id"])
        finally:
            await harness.stop(h)

    return conf, asyncio.run(prepare())


def test_seal_verify_proof_and_tampering_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf, _pid = _setup(tmp_path)

    async def more_events() -> int:  # the hub sealed everything as it stopped
        async with opened_store(load(conf)) as store:
            before = await store.latest_checkpoint()
            await store.append_events([Event("test", 1_000 + i, data={"i": i}) for i in range(4)])
            return before.size if before else 0

    sealed_at_stop = asyncio.run(more_events())
    capsys.readouterr()  # the setup's own output
    assert main(["ledger", "--config", str(conf), "seal"]) == 0
    sealed = json.loads(capsys.readouterr().out)
    assert sealed["size"] == sealed_at_stop + 4 and sealed_at_stop > 5
    assert main(["ledger", "--config", str(conf), "verify"]) == 0
    out = capsys.readouterr()
    assert "ledger OK" in out.out and "leaves" in out.err  # progress on stderr
    assert main(["ledger", "--config", str(conf), "proof", "3"]) == 0
    assert json.loads(capsys.readouterr().out)["seq"] == 3
    con = sqlite3.connect(tmp_path / "hub.db")
    con.execute("UPDATE events SET actor = 'someone else' WHERE seq = 4")
    con.commit()
    con.close()
    assert main(["ledger", "--config", str(conf), "verify", "--quiet"]) == 1
    assert "ledger INCONSISTENT: event_altered: event 4" in capsys.readouterr().out


def test_evidence_audit_and_legal_hold_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf, pid = _setup(tmp_path)
    assert main(["ledger", "--config", str(conf), "seal"]) == 0
    bundle = tmp_path / "e.json"
    assert main(["evidence", "export", pid, "-o", str(bundle), "--config", str(conf)]) == 0
    ca = tmp_path / "pki" / "ca" / "ca.pem"
    assert main(["evidence", "verify", str(bundle), "--ca", str(ca)]) == 0
    capsys.readouterr()
    assert main(["audit", "--config", str(conf), "--sender", harness.A, "--format", "csv"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[0].startswith("package_id,") and rows[1].startswith(pid)
    overdue = ["audit", "--config", str(conf), "--overdue", "--format", "csv"]
    assert main(overdue) == 0
    assert capsys.readouterr().out.splitlines()[1:] == []  # just received: not late yet
    con = sqlite3.connect(tmp_path / "hub.db")  # as if it had come a month ago
    con.execute("UPDATE packages SET received_us = received_us - 30 * 86400000000")
    con.commit()
    con.close()
    assert main(overdue) == 0
    late = capsys.readouterr().out.splitlines()[1:]
    assert [r.split(",")[0] for r in late] == [pid] and f",{harness.B}," in late[0]
    assert main(["retention", "--config", str(conf), "hold", pid, "--reason", "inspection"]) == 0
    assert "legal hold placed" in capsys.readouterr().out

    async def events() -> list[Event]:

        async with opened_store(load(conf)) as store:
            return await store.ledger(0, 1000)

    kinds = [(e.type, (e.actor or "").split(":")[0]) for e in asyncio.run(events())]
    assert ("audit_query", "cli") in kinds and ("legal_hold", "cli") in kinds
