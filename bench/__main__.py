"""``python -m bench [TARGET ...]``: run benchmark targets (default: all)."""

from __future__ import annotations

import sys

from bench import e2e_bench, edxml_bench, ledger_bench, vxp_bench
from hub import logs

TARGETS = {
    "edxml": edxml_bench.main,
    "e2e": e2e_bench.main,
    "vxp": vxp_bench.main,
    "ledger": ledger_bench.main,
}


def main(argv: list[str]) -> int:
    names = argv or list(TARGETS)
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        print(f"unknown target(s): {', '.join(unknown)}; known: {', '.join(TARGETS)}")
        return 2
    # The figures only: the hub parts run in this process (seeding a directory, migrating,
    # sealing) would print their info lines among them; warnings still show.
    logs.configure("console", "warning")
    for name in names:
        TARGETS[name]()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
