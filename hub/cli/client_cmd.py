"""``lienthong send | inbox | fetch | ack | status``: a small client of the native API.

The hub's URL comes from ``--url`` or ``LIENTHONG_URL``; the token from
``--token-file`` or ``LIENTHONG_TOKEN`` (never from a command-line argument, which
other users could read in the process list). Over https, ``--ca`` names the CA that
issued the hub's certificate, and ``--cert``/``--key`` a TLS client certificate
registered to the system (mTLS), which then needs no token.

A hub that answers 429 or 503 asks to be called again (its upload caps, a store or broker
down, a full blob volume): the client waits the ``Retry-After`` it gives (at most 30 s,
1 s when it gives none) and tries again, ``--retries`` times (3 by default), saying so on
stderr. Every call is safe to repeat: the same bytes sent twice are one package, and an
acknowledgement is idempotent. A hub that cannot be reached is not tried again.
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from tenacity import RetryCallState, Retrying, retry_if_result, stop_after_attempt

AGAIN = (429, 503)  # the hub asks to be called again later
MAX_WAIT_S = 30.0


def register(sub: Any) -> None:
    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--url", default=os.environ.get("LIENTHONG_URL", "http://127.0.0.1:8080"))
        p.add_argument("--token-file", type=Path, default=None)
        p.add_argument("--ca", type=Path, default=None, help="CA of the hub's TLS certificate")
        p.add_argument("--cert", type=Path, default=None, help="TLS client certificate (PEM)")
        p.add_argument("--key", type=Path, default=None, help="its private key (PEM)")
        p.add_argument(
            "--retries",
            type=int,
            default=3,
            help="times to try again when the hub answers 429 or 503 (after its Retry-After)",
        )

    s = sub.add_parser("send", help="submit a package file")
    s.add_argument("file", type=Path)
    s.add_argument("--kind", choices=("edoc", "status"), default=None)
    common(s)
    s.set_defaults(func=_send)

    i = sub.add_parser("inbox", help="list packages waiting for your organs")
    i.add_argument("--organ", default=None)
    i.add_argument("--kind", choices=("edoc", "status"), default=None)
    i.add_argument("--since", default=None, help="ISO 8601 date-time")
    i.add_argument("--after", default=None, help="cursor from a previous page")
    i.add_argument("--limit", type=int, default=100)
    common(i)
    i.set_defaults(func=_inbox)

    f = sub.add_parser("fetch", help="download a package's bytes exactly as received")
    f.add_argument("package_id")
    f.add_argument("-o", "--output", type=Path, default=None)
    f.add_argument("--metadata", action="store_true", help="print the metadata instead")
    common(f)
    f.set_defaults(func=_fetch)

    a = sub.add_parser("ack", help="acknowledge a package: done, or fail with a reason")
    a.add_argument("package_id")
    a.add_argument("result", choices=("done", "fail"))
    a.add_argument("--reason", default=None)
    a.add_argument("--organ", default=None)
    common(a)
    a.set_defaults(func=_ack)

    st = sub.add_parser("status", help="per-recipient delivery state and business status")
    st.add_argument("package_id")
    common(st)
    st.set_defaults(func=_status)


def _token(args: argparse.Namespace) -> str | None:
    if args.token_file is not None:
        return str(args.token_file.read_text(encoding="utf-8")).strip()
    token = os.environ.get("LIENTHONG_TOKEN")
    if not token and args.cert is None:
        raise SystemExit("no credentials: pass --token-file, set LIENTHONG_TOKEN or use --cert")
    return token or None


def _tls(args: argparse.Namespace) -> ssl.SSLContext | None:
    if not args.url.startswith("https:"):
        return None
    ctx = ssl.create_default_context(cafile=str(args.ca) if args.ca else None)
    if args.cert is not None:
        ctx.load_cert_chain(args.cert, args.key)
    return ctx


def _call(
    args: argparse.Namespace,
    method: str,
    path: str,
    body: bytes | None = None,
    content_type: str = "application/json",
) -> tuple[int, bytes]:
    """The hub's answer (status, body), called again while it answers 429 or 503."""

    def wait(state: RetryCallState) -> float:
        assert state.outcome is not None
        status, _data, retry_after = state.outcome.result()
        delay = min(max(retry_after if retry_after is not None else 1.0, 0.0), MAX_WAIT_S)
        print(f"the hub answered {status}; trying again in {delay:g} s", file=sys.stderr)
        return delay

    retrying = Retrying(
        stop=stop_after_attempt(max(args.retries, 0) + 1),
        wait=wait,
        retry=retry_if_result(lambda answer: answer[0] in AGAIN),
        retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,
    )
    status, data, _ = retrying(_call_once, args, method, path, body, content_type)
    return status, data


def _retry_after(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:  # an HTTP date: not worth parsing for a few seconds
        return None


def _call_once(
    args: argparse.Namespace, method: str, path: str, body: bytes | None, content_type: str
) -> tuple[int, bytes, float | None]:
    headers = {"Content-Type": content_type}
    if token := _token(args):
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(  # noqa: S310 - the URL is the operator's own hub
        args.url.rstrip("/") + path, data=body, method=method, headers=headers
    )
    try:
        with urllib.request.urlopen(req, timeout=120, context=_tls(args)) as resp:  # noqa: S310
            return resp.status, resp.read(), None
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), _retry_after(exc.headers.get("Retry-After"))
    except urllib.error.URLError as exc:
        raise SystemExit(f"cannot reach the hub at {args.url}: {exc.reason}") from exc


def _print(status: int, data: bytes) -> int:
    try:
        print(json.dumps(json.loads(data), ensure_ascii=False, indent=2))
    except ValueError:
        sys.stdout.write(data.decode(errors="replace"))
    return 0 if status < 300 else 1


def _send(args: argparse.Namespace) -> int:
    q = f"?kind={args.kind}" if args.kind else ""
    return _print(
        *_call(args, "POST", "/api/v1/packages" + q, args.file.read_bytes(), "application/xml")
    )


def _inbox(args: argparse.Namespace) -> int:
    params = {
        k: v
        for k in ("organ", "kind", "since", "after", "limit")
        if (v := getattr(args, k)) is not None
    }
    return _print(*_call(args, "GET", "/api/v1/inbox?" + urllib.parse.urlencode(params)))


def _fetch(args: argparse.Namespace) -> int:
    pid = urllib.parse.quote(args.package_id)
    if args.metadata:
        return _print(*_call(args, "GET", f"/api/v1/packages/{pid}/metadata"))
    status, data = _call(args, "GET", f"/api/v1/packages/{pid}")
    if status >= 300:
        return _print(status, data)
    if args.output:
        args.output.write_bytes(data)
        print(f"{len(data)} bytes written to {args.output}")
    else:
        sys.stdout.buffer.write(data)
    return 0


def _ack(args: argparse.Namespace) -> int:
    body = {"result": args.result, "reason": args.reason, "organ": args.organ}
    pid = urllib.parse.quote(args.package_id)
    return _print(*_call(args, "POST", f"/api/v1/packages/{pid}/ack", json.dumps(body).encode()))


def _status(args: argparse.Namespace) -> int:
    pid = urllib.parse.quote(args.package_id)
    return _print(*_call(args, "GET", f"/api/v1/packages/{pid}/deliveries"))
