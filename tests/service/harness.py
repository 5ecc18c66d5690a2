"""A hub under test: real adapters (SQLite + embedded broker, or PostgreSQL + RabbitMQ),
a small directory, tokens per system, and a client that drives the real HTTP app."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from adapters.factory import components, opened_store
from adapters.postgres_store import PostgresStore
from adapters.sql.store import SqlStore
from adapters.vxp_client import VxpClient
from hub.config import Config
from hub.http.app import build_app
from hub.pki import Issued, init_pki
from hub.ports import SystemClock
from hub.records import Organ, System
from hub.service.directory_admin import DirectoryAdmin
from hub.service.hub import Hub

T = TypeVar("T")
S = TypeVar("S", bound=SqlStore)


def pg_store() -> PostgresStore:
    """A PostgreSQL store on a schema of its own (``opened`` drops it)."""
    require_services()
    return PostgresStore(PG_DSN, schema="t_" + uuid.uuid4().hex[:12])


@contextlib.asynccontextmanager
async def opened(store: S) -> AsyncIterator[S]:
    """A store opened for one test, closed after it; a PostgreSQL store's schema dropped."""
    await store.open()
    try:
        yield store
    finally:
        await store.close()
        if isinstance(store, PostgresStore):
            await store.drop_schema()


A = "000.00.00.H53"  # sys-a, local
A2 = "000.00.05.H53"  # sys-a, local
B = "000.00.00.G22"  # sys-b, local
C = "000.00.00.G01"  # upstream (national axis)
X = "000.00.00.H37"  # sys-x, local: another system's organ
PUSHED = "000.00.00.H59"  # sys-p, local with a push endpoint

AGENCIES = (("Tay Ninh", A), ("Van phong Chinh phu", B), ("Other", X))
PG_DSN = os.environ.get("LIENTHONG_TEST_PG", "postgresql://127.0.0.1:5432/test")
AMQP_URL = os.environ.get("LIENTHONG_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672/")


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex(("127.0.0.1", port)) == 0


def require_services() -> None:
    """Skip without PostgreSQL and RabbitMQ, except in CI, where they must be up."""
    missing = [
        name for name, port in (("PostgreSQL", 5432), ("RabbitMQ", 5672)) if not _port_open(port)
    ]
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {', '.join(missing)} not reachable on 127.0.0.1")
        pytest.skip(f"{', '.join(missing)} not running on 127.0.0.1 (CI starts them)")


def make_pki(root: Path) -> dict[str, str]:
    return init_pki(root, AGENCIES)


def config(tmp: Path, pki_dir: Path, backend: str, **overrides: Any) -> Config:
    cfg = Config()
    cfg.store.path = str(tmp / "hub.db")
    cfg.blobs.path = str(tmp / "blobs")
    cfg.trust.dir = str(pki_dir / "trust")
    cfg.trust.crl_dir = str(tmp / "crls")
    cfg.vxp.key_file = str(tmp / "vxp.key")
    cfg.ledger.key_file = str(pki_dir / "hub" / "hub.key")
    cfg.ledger.cert_file = str(pki_dir / "hub" / "hub.pem")
    cfg.ledger.ca_file = str(pki_dir / "ca" / "ca.pem")
    cfg.ledger.seal_s = 0.5
    cfg.upstream.kind = "double"
    cfg.upstream.poll_s = 3600.0  # tests drive the poller themselves (no races)
    cfg.delivery.base_s = 0.05
    cfg.delivery.cap_s = 0.2
    cfg.delivery.max_attempts = 4
    cfg.delivery.sweep_s = 0.5
    cfg.log.format = "console"
    if backend == "scaled":
        cfg.store.kind = "postgres"
        cfg.store.dsn = PG_DSN
        cfg.store.schema = "t_" + uuid.uuid4().hex[:12]
        cfg.broker.kind = "rabbitmq"
        cfg.broker.url = AMQP_URL
        cfg.broker.prefix = "lt_test_" + uuid.uuid4().hex[:12]
    for dotted, value in overrides.items():
        section, key = dotted.split("__")
        setattr(getattr(cfg, section), key, value)
    return cfg


async def seed_directory(
    cfg: Config, bindings: dict[str, str], push_url: str | None = None
) -> dict[str, str]:
    systems = (
        System("sys-a", "A", may_register=True),
        System("sys-b", "B"),
        System("sys-x", "X"),
        System("sys-p", "P"),
        System("admin", "Admin", "admin"),
        System("auditor", "Auditor", "auditor"),
    )
    organs = (
        Organ(A, "UBND tinh Tay Ninh", "sys-a"),
        Organ(A2, "So Noi vu", "sys-a"),
        Organ(B, "Van phong Chinh phu", "sys-b", aliases=("G22.OLD",)),
        Organ(X, "Other province", "sys-x"),
        Organ(C, "Bo Ngoai giao", None, "upstream"),
        Organ(PUSHED, "Pushed organ", "sys-p", push_url=push_url),
    )
    async with opened_store(cfg) as store:
        admin = DirectoryAdmin(
            store,
            SystemClock(),
            "test",
            vxp_key=Path(cfg.vxp.key_file),
            allow_http_push=cfg.delivery.allow_http_push,
        )
        tokens = await admin.seed(systems, organs, bindings)
        for system in ("sys-a", "sys-b", "sys-x"):
            tokens["vxp:" + system] = (await admin.issue_vxp_secret(system))[0]
        return tokens


@dataclass
class HubUnderTest:
    hub: Hub
    client: TestClient[Any, Any]
    tokens: dict[str, str]
    pki_dir: Path
    cfg: Config
    extra: dict[str, Any] = field(default_factory=dict)

    def vxp(self, system: str, **kw: Any) -> VxpClient:
        """A VXP client for ``system`` against this hub's VXP face (close it after use)."""
        endpoint = str(self.client.make_url(self.cfg.vxp.base_path))
        return VxpClient(endpoint, system, self.tokens["vxp:" + system], **kw)

    def auth(self, system: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[system]}"}

    async def submit(self, system: str, data: bytes, kind: str | None = None) -> ClientResponse:
        q = f"?kind={kind}" if kind else ""
        body: Any = io.BytesIO(data) if len(data) > 1_000_000 else data
        return await self.client.post(
            f"/api/v1/packages{q}",
            data=body,
            headers={**self.auth(system), "Content-Type": "application/xml"},
        )

    async def refusals(self) -> list[dict[str, Any]]:
        """The ``refused`` ledger events so far: their data, with the actor."""
        return [
            {**e.data, "actor": e.actor}
            for e in await self.hub.store.ledger(0, 10_000)
            if e.type == "refused"
        ]

    async def inbox(self, system: str, **params: str) -> list[dict[str, Any]]:
        r = await self.client.get("/api/v1/inbox", params=params, headers=self.auth(system))
        assert r.status == 200, await r.text()
        items: list[dict[str, Any]] = (await r.json())["items"]
        return items


async def eventually(
    fn: Callable[[], Awaitable[T]], ok: Callable[[T], bool], timeout: float = 15.0
) -> T:
    """Poll ``fn`` until ``ok`` holds (delivery is asynchronous by design)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await fn()
        if ok(value):
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not reached within {timeout}s; last value: {value!r}")
        await asyncio.sleep(0.05)


async def start(cfg: Config, tokens: dict[str, str], pki_dir: Path) -> HubUnderTest:
    hub = Hub(cfg, components(cfg))
    client = TestClient(TestServer(build_app(hub)))
    await client.start_server()
    return HubUnderTest(hub, client, tokens, pki_dir, cfg)


async def stop(h: HubUnderTest) -> None:
    await h.client.close()


async def drop_backends(cfg: Config) -> None:
    if cfg.store.kind == "postgres":
        from adapters.postgres_store import PostgresStore  # noqa: PLC0415

        await PostgresStore(cfg.store.dsn, schema=cfg.store.schema).drop_schema()
    if cfg.broker.kind == "rabbitmq":
        from adapters.rabbitmq import RabbitBroker  # noqa: PLC0415
        from hub.service.topology import bindings  # noqa: PLC0415

        b = RabbitBroker(cfg.broker.url, bindings(cfg.broker.prefix), prefix=cfg.broker.prefix)
        await b.connect()
        await b.delete_all()
        await b.close()


def signed(pki_dir: Path, organ: str, data: bytes) -> bytes:
    """``data`` signed with the development certificate of ``organ``."""
    from cryptography import x509  # noqa: PLC0415

    from hub.signature.sign import sign_package  # noqa: PLC0415

    key = (pki_dir / "agencies" / f"{organ}.key").read_bytes()
    cert = x509.load_pem_x509_certificate((pki_dir / "agencies" / f"{organ}.pem").read_bytes())
    return sign_package(data, key, cert)


class Endpoint:
    """An agency's push endpoint that can be told to fail."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.fail = False

    async def handle(self, request: web.Request) -> web.Response:
        if self.fail:
            return web.Response(status=503, text="maintenance")
        self.received.append((dict(request.headers), await request.read()))
        return web.Response(status=204)


@contextlib.asynccontextmanager
async def pushed_hub(
    tmp: Path, pki: tuple[Path, dict[str, str]], backend: str, *, allow_http_push: bool = True
) -> AsyncIterator[tuple[HubUnderTest, Endpoint]]:
    """A hub whose organ PUSHED is delivered by POST to a local ``Endpoint`` (plain http on
    loopback). The directory is written allowing http; the hub is started with
    ``allow_http_push``, so it may hold an endpoint it no longer pushes to."""
    endpoint = Endpoint()
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/inbox", endpoint.handle)
    server = TestServer(app)
    await server.start_server()
    root, bindings = pki
    cfg = config(tmp, root, backend)
    cfg.delivery.allow_http_push = True  # the test endpoint: plain http on loopback
    tokens = await seed_directory(cfg, bindings, push_url=str(server.make_url("/inbox")))
    cfg.delivery.allow_http_push = allow_http_push
    h = await start(cfg, tokens, root)
    try:
        yield h, endpoint
    finally:
        await stop(h)
        await server.close()
        await drop_backends(cfg)


def pem_files(tmp: Path, name: str, cert: Issued) -> tuple[str, str]:
    """``cert``'s certificate and key written as ``<name>.pem`` / ``<name>.key``; their paths."""
    (tmp / f"{name}.pem").write_bytes(cert.cert_pem)
    (tmp / f"{name}.key").write_bytes(cert.key_pem)
    return str(tmp / f"{name}.pem"), str(tmp / f"{name}.key")


class LaterClock:
    """A clock ``days`` ahead of the system's: for what a hub sees once time has passed."""

    def __init__(self, days: int) -> None:
        self.shift = days * 86_400 * 1_000_000

    def now_us(self) -> int:
        return SystemClock().now_us() + self.shift


async def metric(h: HubUnderTest, name: str) -> float:
    """One sample's value from the hub's ``/metrics`` (read with an auditor's token)."""
    r = await h.client.get("/metrics", headers=h.auth("auditor"))
    for family in text_string_to_metric_families(await r.text()):
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    raise AssertionError(f"{name} not in /metrics")
