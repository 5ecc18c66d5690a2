"""``lienthong serve`` (the hub) and ``lienthong dev`` (what ``make run`` starts)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import json
import os
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web

from hub import logs
from hub.cli.pki_cmd import DEMO_AGENCIES
from hub.config import Config, load
from hub.errors import ConfigError
from hub.pki import init_pki
from hub.ports import SystemClock
from hub.process import tune_allocator, tune_gc
from hub.records import Organ, System
from hub.service.directory_admin import DirectoryAdmin
from hub.service.metrics import MULTIPROC_ENV


def register(sub: Any) -> None:
    s = sub.add_parser("serve", help="run the hub")
    s.add_argument("--config", type=Path, default=None, help="TOML file (env overrides apply)")
    s.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # one of N
    s.set_defaults(func=_serve)
    d = sub.add_parser("dev", help="embedded development hub with a demo directory (make run)")
    d.add_argument("--dir", type=Path, default=Path("var/dev"))
    d.add_argument("--port", type=int, default=8080)
    d.add_argument("--no-serve", action="store_true", help="prepare only")
    d.set_defaults(func=_dev)


def run(cfg: Config, *, reuse_port: bool = False) -> None:
    from adapters.factory import components  # noqa: PLC0415 - the composition root
    from hub.http.app import build_app  # noqa: PLC0415
    from hub.service.hub import Hub  # noqa: PLC0415

    logs.configure(cfg.log.format, cfg.log.level, pid=reuse_port)
    tune_allocator()
    hub = Hub(cfg, components(cfg))
    app = build_app(hub)

    async def on_sighup(_app: web.Application) -> None:  # `systemctl reload`: new CRLs, CAs
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, hub.trust_reloader.check_soon)

    async def freeze(_app: web.Application) -> None:  # last: the hub is up (hub/process.py)
        structlog.get_logger(__name__).info("gc_tuned", frozen=tune_gc())

    app.on_startup.append(on_sighup)
    app.on_startup.append(freeze)
    try:
        web.run_app(
            app,
            host=cfg.server.host,
            port=cfg.server.port,
            ssl_context=server_tls(cfg),
            print=None,
            access_log=None,
            shutdown_timeout=10,
            reuse_port=reuse_port or None,
        )
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        raise ConfigError(
            f"{cfg.server.host}:{cfg.server.port} is already in use (another hub?); choose "
            "another port: [server] port, LIENTHONG_SERVER_PORT, or lienthong dev --port"
        ) from exc


def server_tls(cfg: Config) -> ssl.SSLContext | None:
    """TLS 1.2+ with the hub's certificate; with ``tls_client_ca`` a client certificate is
    asked for and, when sent, must chain to that CA (it is optional: token-only clients
    and health checks still connect). Which system a certificate speaks for is the
    directory's ``client_certs``; remove a binding to revoke it at once."""
    s = cfg.server
    if not s.tls_cert:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(s.tls_cert, s.tls_key)
        if s.tls_client_ca:
            ctx.load_verify_locations(cafile=s.tls_client_ca)
            ctx.verify_mode = ssl.CERT_OPTIONAL
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"[server] TLS files: {exc}") from exc
    return ctx


def _serve(args: argparse.Namespace) -> int:
    cfg = load(args.config)
    if args.worker:
        run(cfg, reuse_port=True)
        return 0
    if cfg.server.workers > 1:
        logs.configure(cfg.log.format, cfg.log.level)
        return supervise(cfg.server.workers, args.config)
    run(cfg)
    return 0


def supervise(n: int, config: Path | None) -> int:
    """Run ``n`` hub processes on one port (the kernel spreads connections among them).

    They share nothing but PostgreSQL and RabbitMQ, as two hubs on two machines would.
    SIGTERM/SIGINT stop them all gracefully. If one dies, the others are stopped too and
    the exit status is non-zero, so the service manager restarts the whole unit.
    """
    log = structlog.get_logger("hub.supervisor")
    cmd = [sys.executable, "-m", "hub.cli.main", "serve", "--worker"]
    if config is not None:
        cmd += ["--config", str(config)]
    with metrics_dir() as shared:
        env = {**os.environ, MULTIPROC_ENV: str(shared)}
        # Our own interpreter and module, with the same configuration: no outside input.
        procs = [subprocess.Popen(cmd, env=env) for _ in range(n)]  # noqa: S603
        return _watch(procs, log)


@contextlib.contextmanager
def metrics_dir() -> Iterator[Path]:
    """Where the workers' metrics files live (see ``hub.service.metrics``): the operator's
    ``PROMETHEUS_MULTIPROC_DIR``, emptied of an earlier run's files, or a private
    temporary directory removed afterwards."""
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        for old in path.glob("*.db"):  # counters of dead processes must not add up again
            old.unlink()
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="lienthong-metrics-") as tmp:
        yield Path(tmp)


def _watch(procs: list[subprocess.Popen[bytes]], log: Any) -> int:
    log.info("workers_started", pids=[p.pid for p in procs])
    asked = False  # SIGTERM/SIGINT: a requested stop
    died = False  # a worker ended on its own: the unit must fail

    def stop_all() -> None:
        for p in procs:
            if p.poll() is None:
                p.terminate()

    def on_signal(_sig: int, _frame: object) -> None:
        nonlocal asked
        asked = True
        stop_all()

    def on_hup(_sig: int, _frame: object) -> None:  # each worker reloads its trust store
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGHUP)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_hup)
    while any(p.poll() is None for p in procs):
        if not (asked or died) and any(p.poll() is not None for p in procs):
            died = True
            gone = [(p.pid, p.returncode) for p in procs if p.returncode is not None]
            log.error("worker_died", workers=gone)
            stop_all()
        time.sleep(0.2)
    log.info("workers_stopped", exit_codes=[p.returncode for p in procs])
    return 0 if asked and not died else 1  # workers that end unasked fail the unit


# The demo directory: two provincial systems, the Government Office, an organ behind
# the national axis, an administrator and an auditor.
DEMO_SYSTEMS = (
    System("sys-h53", "Tây Ninh province DMS"),
    System("sys-g22", "Government Office DMS"),
    System("admin", "Hub administrator", role="admin"),
    System("auditor", "Auditor", role="auditor"),
)
DEMO_ORGANS = (
    Organ("000.00.00.H53", "UBND tỉnh Tây Ninh", "sys-h53"),
    Organ("000.00.05.H53", "Sở Nội vụ tỉnh Tây Ninh", "sys-h53"),
    Organ("000.00.00.G22", "Văn phòng Chính phủ", "sys-g22"),
    Organ("000.00.00.G01", "Bộ Ngoại giao (via the national axis)", None, "upstream"),
)


def dev_config(base: Path, port: int) -> str:
    return (
        f'[server]\nport = {port}\n\n[store]\nkind = "sqlite"\npath = "{base}/lienthong.db"\n\n'
        f'[blobs]\npath = "{base}/blobs"\n\n[broker]\nkind = "embedded"\n\n'
        f'[trust]\ndir = "{base}/pki/trust"\ncrl_dir = "{base}/crls"\n\n'
        '[intake]\ndefault_policy = "if-present"\n\n'
        '[upstream]\nkind = "double"\n\n'
        f'[vxp]\nbase_path = "/vxp"\nkey_file = "{base}/vxp.key"\n\n'
        f'[ledger]\nkey_file = "{base}/pki/hub/hub.key"\ncert_file = "{base}/pki/hub/hub.pem"\n'
        f'ca_file = "{base}/pki/ca/ca.pem"\n'
    )


async def seed(cfg: Config, base: Path, bindings: dict[str, str]) -> dict[str, str]:
    from adapters.factory import opened_store  # noqa: PLC0415 - the composition root

    async with opened_store(cfg) as store:
        if (await store.directory()).systems:
            return {}
        admin = DirectoryAdmin(store, SystemClock(), "cli:dev-seed", vxp_key=Path(cfg.vxp.key_file))
        tokens = await admin.seed(DEMO_SYSTEMS, DEMO_ORGANS, bindings)
        for s in DEMO_SYSTEMS:
            if s.role == "agency":
                tokens[s.system_id + ".vxp-secret"] = (await admin.issue_vxp_secret(s.system_id))[0]
    tdir = base / "tokens"
    tdir.mkdir(parents=True, exist_ok=True)
    for system_id, token in tokens.items():
        path = tdir / (system_id if system_id.endswith(".vxp-secret") else f"{system_id}.token")
        path.write_text(token + "\n", encoding="utf-8")
        os.chmod(path, 0o600)
    return tokens


def _dev(args: argparse.Namespace) -> int:
    base: Path = args.dir
    pki_dir = base / "pki"
    bindings: dict[str, str] = {}
    if not (pki_dir / "trust").exists():
        bindings = init_pki(pki_dir, DEMO_AGENCIES)
        print(f"development PKI created in {pki_dir}")
    else:
        raw = json.loads((pki_dir / "bindings.json").read_text())
        bindings = {organs[0]: fp for fp, organs in raw["fingerprints"].items()}
    conf = base / "lienthong.toml"
    if not conf.exists():
        conf.write_text(dev_config(base, args.port), encoding="utf-8")
    cfg = load(conf)
    if asyncio.run(seed(cfg, base, bindings)):
        print(f"demo directory created; tokens in {base}/tokens/")
    url = f"http://{cfg.server.host}:{cfg.server.port}"
    lt = ".venv/bin/lienthong"
    print(
        f"\nlienthong (embedded: SQLite, files, in-process broker) on {url}\n"
        f"Send a first package, as Tây Ninh (sys-h53) to the Government Office (sys-g22):\n"
        f"  export LIENTHONG_URL={url}\n"
        f"  {lt} edxml build --from 000.00.00.H53 --to 000.00.00.G22 -o {base}/a.edxml\n"
        f"  {lt} edxml sign {base}/a.edxml --key {pki_dir}/agencies/000.00.00.H53.key "
        f"--cert {pki_dir}/agencies/000.00.00.H53.pem -o {base}/a.signed.edxml\n"
        f"  {lt} send {base}/a.signed.edxml --token-file {base}/tokens/sys-h53.token\n"
        f"  {lt} inbox --token-file {base}/tokens/sys-g22.token\n"
        f"  {lt} fetch PACKAGE_ID -o {base}/got.edxml --token-file {base}/tokens/sys-g22.token\n"
        f"  {lt} ack PACKAGE_ID done --token-file {base}/tokens/sys-g22.token\n"
        f"  {lt} status PACKAGE_ID --token-file {base}/tokens/sys-h53.token\n"
        f"VXP SDK endpoint (existing agency software): {url}{cfg.vxp.base_path}  "
        f"systemId sys-h53, secret in {base}/tokens/sys-h53.vxp-secret\n"
        f"Admin console: {url}/admin/  (token in {base}/tokens/admin.token or auditor.token)\n"
        f"Health: {url}/healthz   Metrics: {url}/metrics (admin token)\n"
        f"Back up while it runs: {lt} backup --config {conf} create {base}/backups/NAME "
        f"(docs/operations.md)\n"
    )
    if args.no_serve:
        return 0
    run(cfg)
    return 0
