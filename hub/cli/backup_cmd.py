"""``lienthong backup create | check | restore``: the embedded store and its package files.

``create`` is safe while the hub runs; ``check`` re-reads a backup, its ledger included,
without changing it; ``restore`` checks, then copies into the configured store's place,
which must not exist. PostgreSQL deployments back up with PostgreSQL's own tools
(``docs/operations.md``).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from typing import Any

from cryptography import x509

from hub import logs
from hub.config import Config, load
from hub.errors import BackupError, ConfigError
from hub.ledger.verify import verify_ledger


def register(sub: Any) -> None:
    bk = sub.add_parser(
        "backup", help="back up, check and restore the embedded store and its package files"
    )
    bk.add_argument("--config", type=Path, default=None)
    acts = bk.add_subparsers(dest="backup_command", required=True, metavar="ACTION")
    c = acts.add_parser("create", help="write a backup into a new folder (safe while serving)")
    c.add_argument("folder", type=Path)
    c.set_defaults(func=lambda a: _run(a, _create))
    k = acts.add_parser("check", help="re-read a backup: files, hashes, integrity, ledger")
    k.add_argument("folder", type=Path)
    k.set_defaults(func=lambda a: _run(a, _check))
    r = acts.add_parser(
        "restore", help="check a backup, then copy it to the configured (absent) store"
    )
    r.add_argument("folder", type=Path)
    r.set_defaults(func=lambda a: _run(a, _restore))


def _run(args: argparse.Namespace, fn: Any) -> int:
    cfg = load(args.config)
    logs.configure(cfg.log.format, cfg.log.level)  # logs on stderr; stdout is the answer
    if cfg.store.kind != "sqlite":
        raise BackupError(
            f"the {cfg.store.kind} store is backed up with its own tools (pg_dump), the "
            "package files with any file copy: see docs/operations.md",
            code="backup_store_unsupported",
        )
    code: int = asyncio.run(fn(args, cfg))
    return code


def _describe(m: Any) -> str:
    return (
        f"packages {m.packages:,}, package files {m.blobs:,} ({m.blob_bytes / 1e6:,.1f} MB), "
        f"database {m.database_bytes / 1e6:,.1f} MB; ledger: events {m.events:,}, "
        f"leaves sealed {m.sealed:,}"
    )


async def _ledger(folder: Path, cfg: Config) -> str:
    """Verify the backup's ledger on a read-only store: nothing in the folder changes."""
    from adapters.backup import DATABASE  # noqa: PLC0415 - the composition root
    from adapters.sqlite_store import SqliteStore  # noqa: PLC0415

    try:
        pem = await asyncio.to_thread(Path(cfg.ledger.ca_file).read_bytes)
    except OSError as exc:
        raise ConfigError(
            f"[ledger] ca_file {cfg.ledger.ca_file}: {exc.strerror} (the anchors that the "
            "backup's ledger checkpoints must chain to)"
        ) from exc
    anchors = x509.load_pem_x509_certificates(pem)
    store = SqliteStore(folder / DATABASE, read_only=True)
    await store.open()
    try:
        report = await verify_ledger(store, anchors)
    finally:
        await store.close()
    if not report.ok:
        f = report.findings[0]
        raise BackupError(
            f"the backup's ledger does not verify: {f.code}: {f.message}",
            code="backup_ledger_inconsistent",
        )
    return f"ledger OK: {report.leaves:,} leaves, {report.checkpoints:,} checkpoints verified"


async def _create(args: argparse.Namespace, cfg: Config) -> int:
    from adapters import backup  # noqa: PLC0415 - the composition root

    started = time.perf_counter()
    m = await asyncio.to_thread(
        backup.create, Path(cfg.store.path), Path(cfg.blobs.path), args.folder
    )
    took = time.perf_counter() - started
    print(f"backup written to {args.folder} in {took:.1f} s: {_describe(m)}")
    return 0


async def _check(args: argparse.Namespace, cfg: Config) -> int:
    from adapters import backup  # noqa: PLC0415 - the composition root

    m = await asyncio.to_thread(backup.check, args.folder)
    ledger = await _ledger(args.folder, cfg)
    print(f"backup OK: {args.folder} ({m.created}): {_describe(m)}; {ledger}")
    return 0


async def _restore(args: argparse.Namespace, cfg: Config) -> int:
    from adapters import backup  # noqa: PLC0415 - the composition root

    backup.ensure_free(Path(cfg.store.path))  # before the check, which reads everything
    await asyncio.to_thread(backup.check, args.folder)
    ledger = await _ledger(args.folder, cfg)
    m = await asyncio.to_thread(
        backup.restore, args.folder, Path(cfg.store.path), Path(cfg.blobs.path)
    )
    print(
        f"restored {args.folder} ({m.created}) to {cfg.store.path} and {cfg.blobs.path}: "
        f"{_describe(m)}; {ledger}. Start the hub with this configuration."
    )
    return 0
