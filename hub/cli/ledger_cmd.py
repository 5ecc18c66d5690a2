"""``lienthong ledger …``, ``evidence …``, ``audit …`` and ``retention …``.

They work on the configured store, as the directory commands do; audit queries and
administrative acts are ledger events with actor ``cli:<user>``. ``evidence verify``
needs no configuration and no database.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from cryptography import x509

from hub import logs
from hub.config import Config, load
from hub.ledger import evidence, proofs
from hub.ledger.checkpoint import CheckpointSigner
from hub.ledger.sealer import Sealer
from hub.ledger.verify import verify_ledger
from hub.ports import Store, SystemClock
from hub.records import AuditQuery
from hub.service import audit
from hub.service.metrics import Metrics
from hub.service.retention import Retention

EXIT_FAILED = 1


def register(sub: Any) -> None:
    led = sub.add_parser("ledger", help="seal, verify and prove the tamper-evident ledger")
    led.add_argument("--config", type=Path, default=None)
    acts = led.add_subparsers(dest="ledger_command", required=True, metavar="ACTION")
    v = acts.add_parser("verify", help="recompute every leaf, root and checkpoint signature")
    v.add_argument("--quiet", action="store_true", help="no progress on stderr")
    v.set_defaults(func=lambda a: _run(a, _verify))
    acts.add_parser("seal", help="seal now (one round)").set_defaults(func=lambda a: _run(a, _seal))
    acts.add_parser("status", help="the latest checkpoint").set_defaults(
        func=lambda a: _run(a, _status)
    )
    p = acts.add_parser("proof", help="inclusion proof of event SEQ")
    p.add_argument("seq", type=int)
    p.add_argument("--size", type=int, default=None, help="checkpoint size (default: latest)")
    p.set_defaults(func=lambda a: _run(a, _proof))
    c = acts.add_parser("consistency", help="consistency proof between two checkpoints")
    c.add_argument("old", type=int)
    c.add_argument("new", type=int, nargs="?", default=None)
    c.set_defaults(func=lambda a: _run(a, _consistency))

    ev = sub.add_parser("evidence", help="export and verify evidence bundles")
    eacts = ev.add_subparsers(dest="evidence_command", required=True, metavar="ACTION")
    ex = eacts.add_parser("export", help="write one package's evidence bundle")
    ex.add_argument("package_id")
    ex.add_argument("-o", "--output", type=Path, required=True)
    ex.add_argument("--config", type=Path, default=None)
    ex.set_defaults(func=lambda a: _run(a, _export))
    ev_v = eacts.add_parser("verify", help="check a bundle offline (no database)")
    ev_v.add_argument("bundle", type=Path)
    ev_v.add_argument("--ca", type=Path, default=None, help="trust anchor(s) for the hub key")
    ev_v.set_defaults(func=_evidence_verify)

    au = sub.add_parser("audit", help="audit queries (recorded in the ledger)")
    au.add_argument("--config", type=Path, default=None)
    for name in audit.FILTER_NAMES:
        if name == "overdue":
            au.add_argument(
                "--overdue",
                action="store_const",
                const="true",
                default=None,
                help="documents a recipient has not answered by the end of the working day",
            )
        else:
            au.add_argument(f"--{name.replace('_', '-')}", dest=name, default=None)
    au.add_argument("--format", choices=("csv", "jsonl"), default="jsonl")
    au.set_defaults(func=lambda a: _run(a, _audit))

    rt = sub.add_parser("retention", help="purge old package bytes; legal holds")
    rt.add_argument("--config", type=Path, default=None)
    racts = rt.add_subparsers(dest="retention_command", required=True, metavar="ACTION")
    racts.add_parser("purge", help="purge what is due now").set_defaults(
        func=lambda a: _run(a, _purge)
    )
    h = racts.add_parser("hold", help="place a legal hold on a package")
    h.add_argument("package_id")
    h.add_argument("--reason", required=True)
    h.set_defaults(func=lambda a: _run(a, _hold))
    r = racts.add_parser("release", help="lift a legal hold")
    r.add_argument("package_id")
    r.set_defaults(func=lambda a: _run(a, _hold))


def _actor() -> str:
    return f"cli:{getpass.getuser()}"


def _run(
    args: argparse.Namespace, fn: Callable[[argparse.Namespace, Config, Store], Awaitable[int]]
) -> int:
    from adapters.factory import opened_store  # noqa: PLC0415 - the composition root

    cfg = load(args.config)
    logs.configure(cfg.log.format, cfg.log.level)  # logs on stderr; stdout is the answer

    async def main() -> int:
        async with opened_store(cfg) as store:
            return await fn(args, cfg, store)

    return asyncio.run(main())


def _print(doc: Any) -> None:
    print(json.dumps(doc, ensure_ascii=False, indent=2))


def _anchors(path: Path) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(path.read_bytes())


async def _verify(args: argparse.Namespace, cfg: Config, store: Store) -> int:
    def progress(done: int, total: int, seconds: float) -> None:
        rate = done / seconds if seconds else 0.0
        print(f"\r  {done:,}/{total:,} leaves  {rate:,.0f}/s", end="", file=sys.stderr)

    report = await verify_ledger(
        store, _anchors(Path(cfg.ledger.ca_file)), None if args.quiet else progress
    )
    if not args.quiet:
        print(file=sys.stderr)
    if report.ok:
        print(
            f"ledger OK: {report.leaves:,} leaves, {report.checkpoints:,} checkpoints verified "
            f"in {report.seconds:.1f} s; {report.unsealed:,} events not sealed yet"
        )
        return 0
    f = report.findings[0]
    print(f"ledger INCONSISTENT: {f.code}: {f.message}")
    return EXIT_FAILED


def _sealer(cfg: Config, store: Store) -> Sealer:
    signer = CheckpointSigner.from_files(
        Path(cfg.ledger.key_file), Path(cfg.ledger.cert_file), Path(cfg.ledger.ca_file)
    )
    return Sealer(
        store,
        signer,
        SystemClock(),
        origin=cfg.ledger.origin,
        interval_s=cfg.ledger.seal_s,
        checkpoint_size=cfg.ledger.checkpoint_size,
    )


async def _seal(_args: argparse.Namespace, cfg: Config, store: Store) -> int:
    cp = await _sealer(cfg, store).seal_once()
    _print(proofs.checkpoint_json(cp) if cp else {"sealed": 0})
    return 0


async def _status(_args: argparse.Namespace, _cfg: Config, store: Store) -> int:
    cp = await store.latest_checkpoint()
    _print({"checkpoint": proofs.checkpoint_json(cp) if cp else None})
    return 0


async def _proof(args: argparse.Namespace, _cfg: Config, store: Store) -> int:
    _print((await proofs.inclusion(store, args.seq, args.size)).as_dict())
    return 0


async def _consistency(args: argparse.Namespace, _cfg: Config, store: Store) -> int:
    _print(await proofs.consistency(store, args.old, args.new))
    return 0


async def _export(args: argparse.Namespace, _cfg: Config, store: Store) -> int:
    from adapters.blobs import FileBlobStore  # noqa: PLC0415 - the composition root

    blobs = FileBlobStore(Path(_cfg.blobs.path))
    bundle = await evidence.export_bundle(store, blobs, args.package_id)
    await audit.record(store, SystemClock(), _actor(), AuditQuery(), f"evidence:{args.package_id}")
    with args.output.open("wb") as f:  # written as the package's bytes are read
        async for chunk in bundle.chunks():
            f.write(chunk)
    print(f"evidence bundle for {args.package_id}: {args.output} ({bundle.size:,} bytes)")
    return 0


def _evidence_verify(args: argparse.Namespace) -> int:
    anchors = _anchors(args.ca) if args.ca else []
    report = evidence.verify_bundle(args.bundle.read_bytes(), anchors)
    if report.ok:
        print(
            f"evidence OK: package {report.package_id}, {report.events} events included in "
            f"checkpoint {report.checkpoint_size}"
        )
        if not report.anchored:
            print(
                "warning: the hub certificate was checked against the bundle's own CA; pass "
                "--ca with the CA you trust to rule out a forged bundle"
            )
        return 0
    for p in report.problems:
        print(f"evidence INVALID: {p}")
    return EXIT_FAILED


async def _audit(args: argparse.Namespace, cfg: Config, store: Store) -> int:
    params = {k: getattr(args, k) for k in audit.FILTER_NAMES if getattr(args, k)}
    clock = SystemClock()
    query = audit.parse_query(
        params, overdue_before_us=cfg.workday.calendar().overdue_before(clock.now_us())
    )
    async for chunk in audit.export(store, clock, _actor(), query, args.format):
        sys.stdout.write(chunk.decode())
    return 0


def _retention(cfg: Config, store: Store) -> Retention:
    from adapters.blobs import FileBlobStore  # noqa: PLC0415 - the composition root

    return Retention(
        store,
        FileBlobStore(Path(cfg.blobs.path)),
        SystemClock(),
        Metrics(),
        days=cfg.ledger.retention_days,
        interval_s=cfg.ledger.purge_s,
    )


async def _purge(_args: argparse.Namespace, cfg: Config, store: Store) -> int:
    n = await _retention(cfg, store).purge_once(_actor())
    print(f"purged {n} package bodies (retention {cfg.ledger.retention_days} days)")
    return 0


async def _hold(args: argparse.Namespace, cfg: Config, store: Store) -> int:
    reason = getattr(args, "reason", None)
    changed = await _retention(cfg, store).hold(args.package_id, reason, _actor())
    what = "placed" if reason else "lifted"
    print(f"legal hold {what} on {args.package_id}" if changed else "no change")
    return 0
