"""``lienthong pki init``: a development PKI for demos and tests."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from hub.pki import init_pki

DEMO_AGENCIES = (
    ("UBND tinh Tay Ninh (demo)", "000.00.00.H53"),
    ("So Noi vu Tay Ninh (demo)", "000.00.05.H53"),
    ("Van phong Chinh phu (demo)", "000.00.00.G22"),
)


def _agency(value: str) -> tuple[str, str]:
    name, sep, organ = value.rpartition("=")
    if not sep or not name or not organ:
        raise argparse.ArgumentTypeError("expected NAME=ORGAN_ID")
    return name, organ


def register(sub: Any) -> None:
    pki = sub.add_parser("pki", help="development PKI").add_subparsers(
        dest="pki_command", required=True, metavar="ACTION"
    )
    init = pki.add_parser(
        "init",
        help="create a development CA, the hub key and agency signing certificates",
        description="Writes trust/ (CA certificate and CRL), ca/, hub/, agencies/ and "
        "bindings.json under DIR. Keys are written with mode 0600.",
    )
    init.add_argument("--dir", type=Path, required=True, help="output directory")
    init.add_argument(
        "--agency",
        type=_agency,
        action="append",
        metavar="NAME=ORGAN_ID",
        help="an agency certificate to issue (repeatable; default: three demo agencies)",
    )
    init.add_argument("--force", action="store_true", help="overwrite an existing PKI")
    init.set_defaults(func=_init)


def _init(args: argparse.Namespace) -> int:
    target: Path = args.dir
    if (target / "trust").exists() and not args.force:
        print(f"{target} already holds a PKI; use --force to replace it")
        return 5
    bindings = init_pki(target, args.agency or DEMO_AGENCIES)
    print(f"development PKI written to {target}")
    print(f"  trust store: {target / 'trust'}")
    for organ, fp in bindings.items():
        print(f"  {organ}: {target / 'agencies' / (organ + '.pem')}  sha256={fp}")
    return 0
