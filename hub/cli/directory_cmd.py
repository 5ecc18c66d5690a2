"""``lienthong directory …``: manage organs, systems, tokens and certificate bindings.

Works directly on the configured store (run it where the hub's configuration is);
every change is a ledger event with actor ``cli:<user>``.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from hub.config import load
from hub.errors import NotFound
from hub.ports import Store, SystemClock
from hub.records import Organ, System
from hub.service.audit import iso
from hub.service.directory_admin import DirectoryAdmin, directory_json

T = TypeVar("T")


def register(sub: Any) -> None:
    d = sub.add_parser("directory", help="manage organs, systems, tokens and bindings")
    d.add_argument("--config", type=Path, default=None)
    acts = d.add_subparsers(dest="directory_command", required=True, metavar="ACTION")

    s = acts.add_parser("system", help="add or change a connected system")
    s.add_argument("system_id")
    s.add_argument("--name", default=None)
    s.add_argument("--role", choices=("agency", "admin", "auditor"), default="agency")
    s.add_argument("--policy", choices=("required", "if-present", "off"), default=None)
    s.add_argument(
        "--vxp-strict",
        action="store_true",
        help="VXP: require fresh, never reused timestamps (lienthong peers only; the SDK "
        "cannot do it)",
    )
    s.add_argument(
        "--may-register", action="store_true", help="VXP: may registerAgency / deleteAgency"
    )
    s.add_argument(
        "--network",
        action="append",
        default=[],
        metavar="CIDR",
        help="a network the system may connect from (repeatable; none: any address)",
    )
    s.set_defaults(func=lambda a: _run(a, _system))

    o = acts.add_parser("organ", help="add or change an organ")
    o.add_argument("organ_id")
    o.add_argument("--name", required=True)
    o.add_argument("--system", default=None, help="the system that serves it (local organs)")
    o.add_argument("--upstream", action="store_true", help="reached through the national axis")
    o.add_argument("--parent", default=None)
    o.add_argument("--closed", action="store_true")
    o.add_argument("--push-url", default=None)
    o.add_argument("--alias", action="append", default=[])
    o.set_defaults(func=lambda a: _run(a, _organ))

    t = acts.add_parser("token", help="issue a new bearer token for a system (printed once)")
    t.add_argument("system_id")
    t.add_argument(
        "--days",
        type=int,
        default=None,
        help="valid this many days (default: [auth] token_days, 365; 0: no end)",
    )
    t.set_defaults(func=lambda a: _run(a, _token))

    rt = acts.add_parser(
        "revoke-token",
        help="revoke a bearer token at once (its id, as `list` shows it, or the token itself)",
    )
    rt.add_argument("token", help="lt… token id (the part before the dot)")
    rt.set_defaults(func=lambda a: _run(a, _revoke_token))

    v = acts.add_parser(
        "vxp-secret", help="issue a new VXP secret for a system (printed once; replaces the old)"
    )
    v.add_argument("system_id")
    v.add_argument(
        "--overlap-days",
        type=int,
        default=0,
        help="keep accepting the secret it replaces this many days, while the agency changes "
        "its SDK configuration (default 0: refused at once)",
    )
    v.set_defaults(func=lambda a: _run(a, _vxp_secret))

    _register_bindings_and_states(acts)

    c = acts.add_parser(
        "client-cert", help="let a TLS client certificate authenticate a system (mTLS)"
    )
    c.add_argument("system_id")
    c.add_argument("cert", type=Path, help="the client certificate (PEM)")
    c.set_defaults(func=lambda a: _run(a, _client_cert))

    rc = acts.add_parser("remove-client-cert", help="stop a TLS client certificate authenticating")
    rc.add_argument("fingerprint", help="SHA-256 of the certificate (hex)")
    rc.set_defaults(func=lambda a: _run(a, _remove_client_cert))

    i = acts.add_parser("import", help="import organs (CSV) or systems and organs (JSON)")
    i.add_argument("file", type=Path)
    i.set_defaults(func=lambda a: _run(a, _import))

    ls = acts.add_parser("list", help="print the directory as JSON")
    ls.set_defaults(func=lambda a: _run(a, _list))


def _register_bindings_and_states(acts: Any) -> None:
    b = acts.add_parser("bind", help="allow a signer certificate to sign for an organ")
    b.add_argument("fingerprint", help="SHA-256 of the certificate (hex)")
    b.add_argument("organ_id")
    b.set_defaults(func=lambda a: _run(a, _bind))

    ub = acts.add_parser("unbind", help="stop a signer certificate signing for an organ")
    ub.add_argument("fingerprint", help="SHA-256 of the certificate (hex)")
    ub.add_argument("organ_id")
    ub.set_defaults(func=lambda a: _run(a, _unbind))

    sp = acts.add_parser(
        "suspend",
        help="refuse every credential of a system and push nothing to it; packages for its "
        "organs are still accepted and wait",
    )
    sp.add_argument("system_id")
    sp.add_argument("--reason", required=True, help="why (kept on the ledger)")
    sp.set_defaults(func=lambda a: _run(a, _suspend))

    rs = acts.add_parser(
        "resume", help="end a system's suspension and send the pushes held meanwhile"
    )
    rs.add_argument("system_id")
    rs.set_defaults(func=lambda a: _run(a, _resume))


def _run(
    args: argparse.Namespace,
    fn: Callable[[argparse.Namespace, DirectoryAdmin, Store], Awaitable[int]],
) -> int:
    from adapters.factory import opened_store  # noqa: PLC0415 - the composition root

    cfg = load(args.config)

    async def main() -> int:
        async with opened_store(cfg) as store:
            admin = DirectoryAdmin.configured(store, SystemClock(), f"cli:{getpass.getuser()}", cfg)
            return await fn(args, admin, store)

    return asyncio.run(main())


async def _system(a: argparse.Namespace, admin: DirectoryAdmin, _s: Store) -> int:
    await admin.put_system(
        System(
            a.system_id,
            a.name or a.system_id,
            a.role,
            a.policy,
            vxp_strict=a.vxp_strict,
            may_register=a.may_register,
            networks=tuple(a.network),
        )
    )
    print(f"system {a.system_id} saved")
    return 0


async def _organ(a: argparse.Namespace, admin: DirectoryAdmin, _s: Store) -> int:
    await admin.put_organ(
        Organ(
            a.organ_id,
            a.name,
            a.system,
            "upstream" if a.upstream else "local",
            a.parent,
            a.closed,
            a.push_url,
            tuple(a.alias),
        )
    )
    print(f"organ {a.organ_id} saved")
    return 0


async def _token(a: argparse.Namespace, admin: DirectoryAdmin, _s: Store) -> int:
    issued = await _or_no_system(a.system_id, admin.issue_token(a.system_id, a.days))
    if issued is None:
        return 2
    token, cred = issued
    print(token)  # alone on stdout, for scripts; when it ends on stderr
    print(f"expires {iso(cred.expires_us) or 'never'}", file=sys.stderr)
    return 0


async def _revoke_token(a: argparse.Namespace, admin: DirectoryAdmin, _s: Store) -> int:
    token_id = a.token.split(".", 1)[0]  # a whole token given: its secret is not kept or shown
    try:
        changed = await admin.revoke_token(token_id)
    except NotFound:
        print(f"no token {token_id}")
        return 2
    print(f"token {token_id} {'revoked' if changed else 'was already revoked'}")
    return 0


async def _vxp_secret(a: argparse.Namespace, admin: DirectoryAdmin, _s: Store) -> int:
    issued = await _or_no_system(a.system_id, admin.issue_vxp_secret(a.system_id, a.overlap_days))
    if issued is None:
        return 2
    secret, until = issued
    print(secret)  # alone on stdout, for scripts
    if until is not None:
        print(f"the previous secret is accepted until {iso(until)}", file=sys.stderr)
    return 0


async def _bind(a: argparse.Namespace, admin: DirectoryAdmin, _s: Store) -> int:
    await admin.bind(a.fingerprint, a.organ_id)
    print(f"certificate {a.fingerprint[:16]}… may sign for {a.organ_id}")
    return 0


async def _unbind(a: argparse.Namespace, admin: DirectoryAdmin, _s: Store) -> int:
    if not await admin.unbind(a.fingerprint, a.organ_id):
        print(f"certificate {a.fingerprint[:16]}… was not bound to {a.organ_id}")
        return 2
    print(f"certificate {a.fingerprint[:16]}… may no longer sign for {a.organ_id}")
    return 0


async def _or_no_system(system_id: str, call: Awaitable[T]) -> T | None:
    """``call``'s answer; None, said on stdout, when the admin finds no such system."""
    try:
        return await call
    except NotFound:
        print(f"no system {system_id}")
        return None


async def _suspend(a: argparse.Namespace, admin: DirectoryAdmin, _s: Store) -> int:
    changed = await _or_no_system(a.system_id, admin.suspend(a.system_id, a.reason))
    if changed is None:
        return 2
    print(f"system {a.system_id} {'suspended' if changed else 'was already suspended'}")
    return 0


async def _resume(a: argparse.Namespace, admin: DirectoryAdmin, _s: Store) -> int:
    resumed = await _or_no_system(a.system_id, admin.resume(a.system_id))
    if resumed is None:
        return 2
    changed, moved = resumed
    state = "resumed" if changed else "was not suspended"
    print(f"system {a.system_id} {state}; {moved} held push(es) sent again")
    return 0


async def _client_cert(a: argparse.Namespace, admin: DirectoryAdmin, _s: Store) -> int:
    fp = await admin.add_client_cert(a.system_id, a.cert.read_bytes())
    print(f"client certificate {fp} authenticates {a.system_id}")
    return 0


async def _remove_client_cert(a: argparse.Namespace, admin: DirectoryAdmin, _s: Store) -> int:
    if not await admin.remove_client_cert(a.fingerprint):
        print(f"no client certificate {a.fingerprint}")
        return 2
    print(f"client certificate {a.fingerprint} removed")
    return 0


async def _import(a: argparse.Namespace, admin: DirectoryAdmin, _s: Store) -> int:
    counts = await admin.import_file(a.file)
    print(f"imported {counts['systems']} systems, {counts['organs']} organs")
    return 0


async def _list(_a: argparse.Namespace, _admin: DirectoryAdmin, store: Store) -> int:
    print(json.dumps(directory_json(await store.directory()), ensure_ascii=False, indent=2))
    return 0
