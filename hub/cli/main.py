"""``lienthong`` command line.

Exit codes (stable, for scripts): 0 success; 1 the package breaks edXML rules;
2 usage error; 3 the signature was refused; 4 the input is not readable edXML
(malformed, hostile, too large); 5 configuration error (trust store, keys).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from hub.cli import (
    backup_cmd,
    client_cmd,
    directory_cmd,
    edxml_cmd,
    ledger_cmd,
    pki_cmd,
    serve_cmd,
    trust_cmd,
)
from hub.errors import ConfigError, HubError

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_USAGE = 2
EXIT_REFUSED = 3
EXIT_MALFORMED = 4
EXIT_CONFIG = 5


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lienthong",
        description="Document-exchange hub for signed edXML packages (QCVN 102:2016).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    pki_cmd.register(sub)
    edxml_cmd.register(sub)
    serve_cmd.register(sub)
    directory_cmd.register(sub)
    client_cmd.register(sub)
    ledger_cmd.register(sub)
    backup_cmd.register(sub)
    trust_cmd.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except HubError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
