"""``lienthong trust show | crls``: what the configured trust store holds, and fetching its
CRLs now (what a running hub does every ``[trust] crl_refresh_s``)."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

from adapters.crl_http import HttpCrlSource
from hub import logs
from hub.config import Config, load
from hub.service.crl_addresses import load_learned
from hub.service.crl_refresh import CrlRefresher, addresses
from hub.signature.trust import CrlUrls, TrustStore


def register(sub: Any) -> None:
    tr = sub.add_parser("trust", help="the trust store: what it holds; fetch its CRLs now")
    tr.add_argument("--config", type=Path, default=None)
    acts = tr.add_subparsers(dest="trust_command", required=True, metavar="ACTION")
    s = acts.add_parser("show", help="CAs, CRLs (issuer, number, validity) and CRL addresses")
    s.add_argument("--json", action="store_true", help="machine-readable")
    s.set_defaults(func=_show)
    c = acts.add_parser(
        "crls",
        help="fetch every CRL address now into [trust] crl_dir (exit 1 if one failed or "
        "was refused); a running hub takes new CRLs at its next reload or on SIGHUP",
    )
    c.set_defaults(func=_crls)


def _store(cfg: Config) -> TrustStore:
    t = cfg.trust
    return TrustStore.from_directory(
        Path(t.dir), require_crl=t.require_crl, crl_dir=Path(t.crl_dir)
    )


def _learned(cfg: Config, trust: TrustStore) -> CrlUrls:
    """The addresses a running hub learned from the chains it validated and kept."""
    seen = CrlUrls()
    if cfg.trust.crl_from_certificates:
        load_learned(Path(cfg.trust.crl_dir), seen, trust.anchors)
    return seen


def _addresses(cfg: Config, trust: TrustStore) -> list[str]:
    t = cfg.trust
    return list(addresses(t.crl_url_list(), t.crl_from_certificates, trust, _learned(cfg, trust)))


def _show(args: argparse.Namespace) -> int:
    cfg = load(args.config)
    trust = _store(cfg)
    summary: dict[str, Any] = {**trust.summary(), "crl_addresses": _addresses(cfg, trust)}
    if args.json:
        print(json.dumps(summary, ensure_ascii=False, indent=2))
        return 0
    for a in summary["anchors"]:
        print(f"CA   {a['subject']}  sha256:{a['fingerprint']}")
    for c in summary["crls"]:
        print(
            f"CRL  {c['issuer']}  number {c['number']}  issued {c['this_update']}  "
            f"next update {c['next_update']}  revoked {c['revoked']}"
        )
    for url in summary["crl_addresses"]:
        print(f"URL  {url}")
    print(f"require_crl = {str(trust.require_crl).lower()}")
    return 0


def _crls(args: argparse.Namespace) -> int:
    cfg = load(args.config)
    logs.configure(cfg.log.format, cfg.log.level)  # logs on stderr; stdout is the answer
    return asyncio.run(_fetch(cfg))


async def _fetch(cfg: Config) -> int:
    t = cfg.trust
    trust = _store(cfg)
    source = HttpCrlSource(timeout_s=t.crl_timeout_s, max_bytes=t.crl_max_bytes)

    async def unchanged(_reason: str) -> None:
        return None

    refresher = CrlRefresher.configured(
        t,
        source=source,
        trust=lambda: trust,
        seen=_learned(cfg, trust),  # those a running hub learned and kept
        changed=unchanged,
        metrics=None,
    )
    try:
        targets = refresher.targets()
        if not targets:
            print(
                "no CRL addresses: set [trust] crl_urls, or trust CA certificates with "
                "CRL distribution points"
            )
            return 0
        outcomes = await refresher.round(targets)
    finally:
        await source.close()
    if not outcomes:
        print(f"another process is fetching into {t.crl_dir} now; try again shortly")
        return 1
    for o in outcomes:
        print(f"{o.result:<9} {o.url}  {o.detail}")
    return 0 if all(o.result in ("fetched", "unchanged") for o in outcomes) else 1
