"""``lienthong backup create | check | restore`` on the embedded store."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
from pathlib import Path

import pytest
from cryptography import x509

from adapters.backup import DATABASE, MANIFEST
from adapters.blobs import blob_path
from hub.cli.main import main
from hub.config import Config
from hub.edxml import demo
from hub.ledger.verify import verify_ledger
from tests.service import harness
from tests.service.harness import HubUnderTest
from tests.service.procs import write_config


def _package(pki: Path, number: str, payload: bytes = b"") -> bytes:
    return harness.signed(
        pki,
        harness.A,
        demo.document_bytes(sender=harness.A, to=(harness.B,), number=number, payload=payload),
    )


async def _submit(h: HubUnderTest, data: bytes) -> str:
    r = await h.submit("sys-a", data, "edoc")
    assert r.status == 202, await r.text()
    return str((await r.json())["id"])


def _hub(tmp: Path, pki: Path) -> tuple[Config, Path]:
    tmp.mkdir(parents=True, exist_ok=True)
    cfg = harness.config(tmp, pki, "embedded")
    return cfg, write_config(cfg, tmp / "hub.toml")


async def test_a_backup_taken_while_serving_restores_to_a_hub_with_the_same_packages(
    tmp_path: Path, pki_dir: tuple[Path, dict[str, str]]
) -> None:
    pki, bindings = pki_dir
    cfg, conf = _hub(tmp_path / "live", pki)
    tokens = await harness.seed_directory(cfg, bindings)
    h = await harness.start(cfg, tokens, pki)
    sent: dict[str, bytes] = {}
    try:
        for i, payload in enumerate((b"", b"x" * 1_500_000, b"y" * 2000)):
            data = _package(pki, f"{i}/BK", payload)
            sent[await _submit(h, data)] = data
        before = set(sent)
        await h.hub.sealer.seal_once()

        async def keep_sending() -> None:  # writes racing the backup's snapshot
            for i in range(40):
                data = _package(pki, f"r{i}/BK")
                sent[await _submit(h, data)] = data

        racing = asyncio.create_task(keep_sending())
        folder = tmp_path / "backup"
        assert (
            await asyncio.to_thread(main, ["backup", "--config", str(conf), "create", str(folder)])
            == 0
        )
        await racing
    finally:
        await harness.stop(h)
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["packages"] >= len(before) and manifest["sealed"] > 0
    assert (
        await asyncio.to_thread(main, ["backup", "--config", str(conf), "check", str(folder)]) == 0
    )

    cfg2, conf2 = _hub(tmp_path / "restored", pki)
    restore = ["backup", "--config", str(conf2), "restore", str(folder)]
    assert await asyncio.to_thread(main, restore) == 0
    h2 = await harness.start(cfg2, tokens, pki)  # the credentials came back with the store
    try:

        async def inbox() -> set[str]:
            return {x["id"] for x in await h2.inbox("sys-b", limit="200")}

        # A delivery still pending in the snapshot (its in-memory broker message lost with
        # the live hub) is announced again by the restored hub's start-up sweep, just
        # after it starts: the inbox is complete a moment later, not at once.
        listed = await harness.eventually(inbox, lambda xs: len(xs) == manifest["packages"])
        assert before <= listed <= set(sent)
        for pid in listed:
            r = await h2.client.get(f"/api/v1/packages/{pid}", headers=h2.auth("sys-b"))
            assert r.status == 200
            assert await r.read() == sent[pid]  # byte for byte what was sent
        anchors = x509.load_pem_x509_certificates((pki / "ca" / "ca.pem").read_bytes())
        report = await verify_ledger(h2.hub.store, anchors)
        assert report.ok and report.leaves == manifest["sealed"]
    finally:
        await harness.stop(h2)


def _backed_up(tmp_path: Path, pki: Path, bindings: dict[str, str]) -> tuple[Config, Path, Path]:
    """A stopped embedded hub with two packages, sealed, and a backup of it."""
    cfg, conf = _hub(tmp_path / "live", pki)

    async def prepare() -> None:
        tokens = await harness.seed_directory(cfg, bindings)
        h = await harness.start(cfg, tokens, pki)
        try:
            for i in range(2):
                await _submit(h, _package(pki, f"{i}/T"))
        finally:
            await harness.stop(h)

    asyncio.run(prepare())
    folder = tmp_path / "backup"
    assert main(["backup", "--config", str(conf), "create", str(folder)]) == 0
    return cfg, conf, folder


def _blobs(folder: Path) -> list[Path]:
    return sorted(p for p in (folder / "blobs").rglob("*") if p.is_file())


def _refused(capsys: pytest.CaptureFixture[str], argv: list[str], code: str) -> None:
    capsys.readouterr()
    assert main(argv) == 1
    assert f"error: {code}:" in capsys.readouterr().err


def test_every_change_to_a_backup_is_found_before_anything_is_restored(
    tmp_path: Path, pki_dir: tuple[Path, dict[str, str]], capsys: pytest.CaptureFixture[str]
) -> None:
    pki, bindings = pki_dir
    _cfg, conf, folder = _backed_up(tmp_path, pki, bindings)
    check = ["backup", "--config", str(conf), "check", str(folder)]
    assert main(check) == 0
    assert "backup OK" in capsys.readouterr().out

    blob = _blobs(folder)[0]
    original = blob.read_bytes()
    blob.write_bytes(original.replace(b"edXML", b"edXMl", 1))
    _refused(capsys, check, "blob_altered")
    blob.unlink()
    _refused(capsys, check, "blob_missing")
    blob.write_bytes(original)
    assert main(check) == 0

    db = folder / DATABASE
    raw = bytearray(db.read_bytes())
    raw[-100] ^= 1
    saved = db.read_bytes()
    db.write_bytes(bytes(raw))
    _refused(capsys, check, "backup_altered")
    db.write_bytes(saved)

    text = (folder / MANIFEST).read_text()
    (folder / MANIFEST).write_text(text.replace('"schema_version": ', '"schema_version": 9'))
    _refused(capsys, check, "backup_from_newer_version")
    (folder / MANIFEST).write_text(text.replace('"blobs": ', '"blobs": -'))
    _refused(capsys, check, "backup_altered")
    (folder / MANIFEST).write_text("[]")
    _refused(capsys, check, "backup_altered")
    (folder / MANIFEST).write_text(text)
    assert main(check) == 0

    # Someone with the folder edits the ledger and writes a matching manifest: the
    # ledger's own verification still finds it.
    con = sqlite3.connect(db)
    con.execute("UPDATE events SET actor = 'someone else' WHERE seq = 3")
    con.commit()
    con.close()
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["database_sha256"] = hashlib.sha256(db.read_bytes()).hexdigest()
    manifest["database_bytes"] = db.stat().st_size
    (folder / MANIFEST).write_text(json.dumps(manifest))
    _refused(capsys, check, "backup_ledger_inconsistent")
    target = tmp_path / "elsewhere"
    cfg2, conf2 = _hub(target, pki)
    _refused(
        capsys,
        ["backup", "--config", str(conf2), "restore", str(folder)],
        "backup_ledger_inconsistent",
    )
    assert not Path(cfg2.store.path).exists()  # nothing was restored

    (folder / MANIFEST).unlink()
    _refused(capsys, check, "backup_incomplete")


def test_backups_never_overwrite_and_never_hide_a_lost_package_file(
    tmp_path: Path, pki_dir: tuple[Path, dict[str, str]], capsys: pytest.CaptureFixture[str]
) -> None:
    pki, bindings = pki_dir
    cfg, conf, folder = _backed_up(tmp_path, pki, bindings)
    # Restoring over the live store, or writing into a used folder, is refused.
    _refused(
        capsys, ["backup", "--config", str(conf), "restore", str(folder)], "restore_target_exists"
    )
    _refused(
        capsys, ["backup", "--config", str(conf), "create", str(folder)], "backup_target_not_empty"
    )
    # A package file lost from the live blob store fails the backup, which stays unfinished.
    sha = _first_sha(cfg)
    blob_path(Path(cfg.blobs.path), sha).unlink()
    broken = tmp_path / "broken"
    _refused(capsys, ["backup", "--config", str(conf), "create", str(broken)], "blob_missing")
    assert not (broken / MANIFEST).exists()
    _refused(capsys, ["backup", "--config", str(conf), "check", str(broken)], "backup_incomplete")
    # PostgreSQL is backed up with its own tools.
    pg = harness.config(tmp_path / "pg", pki, "scaled")
    pg_conf = write_config(pg, tmp_path / "pg.toml")
    _refused(
        capsys,
        ["backup", "--config", str(pg_conf), "create", str(tmp_path / "x")],
        "backup_store_unsupported",
    )


def _first_sha(cfg: Config) -> str:
    con = sqlite3.connect(cfg.store.path)
    try:
        return str(con.execute("SELECT sha256 FROM packages LIMIT 1").fetchone()[0])
    finally:
        con.close()
