"""Build the adapters a configuration asks for (the only place that picks them)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from adapters.blobs import FileBlobStore
from adapters.crl_http import HttpCrlSource
from adapters.embedded_broker import EmbeddedBroker
from adapters.ocsp_http import HttpOcspSource
from adapters.postgres_store import PostgresStore
from adapters.push import HttpPusher, push_tls
from adapters.rabbitmq import RabbitBroker
from adapters.sqlite_store import SqliteStore
from adapters.upstream_double import InProcessAxis
from adapters.vxp_axis import VxpAxis
from adapters.vxp_client import VxpClient
from hub.config import Config
from hub.ports import Broker, Store, UpstreamAxis
from hub.service.breaker import CircuitBreaker
from hub.service.hub import Components
from hub.service.topology import bindings


def components(cfg: Config) -> Components:
    store: Store
    if cfg.store.kind == "postgres":
        store = PostgresStore(cfg.store.dsn, max_size=cfg.store.pool_max, schema=cfg.store.schema)
    else:
        store = SqliteStore(Path(cfg.store.path), synchronous=cfg.store.synchronous)
    broker: Broker
    if cfg.broker.kind == "rabbitmq":
        broker = RabbitBroker(cfg.broker.url, bindings(cfg.broker.prefix), prefix=cfg.broker.prefix)
    else:
        broker = EmbeddedBroker(bindings(cfg.broker.prefix))
    upstream: UpstreamAxis | None = None
    breaker: CircuitBreaker | None = None
    up = cfg.upstream
    if up.kind == "double":
        upstream = InProcessAxis()
    elif up.kind == "vxp":
        breaker = CircuitBreaker(up.breaker_failures, up.breaker_open_s)
        client = VxpClient(
            up.url.rstrip("/"),
            up.system_id,
            up.secret,
            timeout_s=up.timeout_s,
            # getEdoc's base64 of a package at the size limit, and its envelope
            max_answer_bytes=cfg.server.max_body_bytes * 4 // 3 + 1024 * 1024,
        )
        upstream = VxpAxis(client, breaker, take=up.take)
    pusher = HttpPusher(
        cfg.delivery.push_timeout_s,
        tls=push_tls(cfg.delivery),
        allow_http=cfg.delivery.allow_http_push,
    )
    crls = HttpCrlSource(timeout_s=cfg.trust.crl_timeout_s, max_bytes=cfg.trust.crl_max_bytes)
    ocsp = HttpOcspSource(timeout_s=cfg.trust.ocsp_timeout_s)
    return Components(
        store=store,
        blobs=FileBlobStore(
            Path(cfg.blobs.path), flush=cfg.blobs.flush, min_free_bytes=cfg.blobs.min_free_bytes
        ),
        broker=broker,
        upstream=upstream,
        pusher=pusher,
        breaker=breaker,
        crl_source=crls,
        ocsp_source=ocsp,
        closers=[pusher, crls, ocsp],
    )


@asynccontextmanager
async def opened_store(cfg: Config) -> AsyncIterator[Store]:
    """The configured store, open, for commands that work on it outside the service."""
    parts = components(cfg)
    await parts.store.open()
    try:
        yield parts.store
    finally:
        await parts.store.close()
        for c in parts.closers:
            await c.close()
