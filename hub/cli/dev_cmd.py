"""``lienthong dev``: what ``make run`` starts.

Today it prepares the embedded default's development PKI under ``var/dev`` and
shows the edXML tools on it. The hub service itself (``lienthong serve``: intake,
routing, inbox, ledger) is not built yet; this command says so and exits 1
rather than pretend.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from hub.cli.pki_cmd import DEMO_AGENCIES
from hub.pki import init_pki


def register(sub: Any) -> None:
    dev = sub.add_parser("dev", help="prepare the embedded development setup (make run)")
    dev.add_argument("--dir", type=Path, default=Path("var/dev"))
    dev.set_defaults(func=_dev)


def _dev(args: argparse.Namespace) -> int:
    pki_dir: Path = args.dir / "pki"
    if not (pki_dir / "trust").exists():
        init_pki(pki_dir, DEMO_AGENCIES)
        print(f"development PKI created in {pki_dir}")
    else:
        print(f"development PKI present in {pki_dir}")
    print(
        "\nTry the edXML tools on it:\n"
        "  .venv/bin/lienthong edxml build --from 000.00.00.H53 --to 000.00.00.G22 "
        f"-o {args.dir}/a.edxml\n"
        f"  .venv/bin/lienthong edxml sign {args.dir}/a.edxml "
        f"--key {pki_dir}/agencies/000.00.00.H53.key "
        f"--cert {pki_dir}/agencies/000.00.00.H53.pem "
        f"-o {args.dir}/a.signed.edxml\n"
        f"  .venv/bin/lienthong edxml verify {args.dir}/a.signed.edxml --trust {pki_dir}/trust "
        f"--bindings {pki_dir}/bindings.json\n"
        f"  .venv/bin/lienthong edxml inspect {args.dir}/a.signed.edxml\n"
        "\nNOT YET AVAILABLE: the hub service (lienthong serve: intake, routing, inbox, ledger,\n"
        "admin UI) is the next piece of work (issue #3). Nothing is listening."
    )
    return 1
