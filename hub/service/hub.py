"""The hub's parts wired together, with one start/stop lifecycle.

``Components`` are the adapters chosen by configuration (built in
``adapters.factory``); ``Hub`` owns the core services built on them.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from hub.config import Config
from hub.edxml.xmlsafe import XmlLimits
from hub.errors import ConfigError, HubError
from hub.ledger.checkpoint import CheckpointSigner
from hub.ledger.sealer import Sealer
from hub.ports import (
    BlobStore,
    Broker,
    Clock,
    CrlSource,
    Handler,
    Message,
    OcspSource,
    Pusher,
    Store,
    SystemClock,
    UpstreamAxis,
)
from hub.records import Stats
from hub.service import cert_expiry
from hub.service.admission import UploadSlots
from hub.service.auth import access_ends
from hub.service.breaker import CircuitBreaker
from hub.service.crl_refresh import CrlRefresher
from hub.service.delivery import Deliverer, RetryBudget
from hub.service.directory_admin import DirectoryAdmin
from hub.service.directory_cache import DirectoryCache
from hub.service.examination import ExamineSettings
from hub.service.examiners import ProcessExaminers, auto_count
from hub.service.intake import Intake
from hub.service.metrics import Metrics
from hub.service.ocsp_check import OcspChecker
from hub.service.relay import OutboxRelay
from hub.service.retention import Retention
from hub.service.sessions import Sessions, derive_key
from hub.service.topology import ROUTES, queue_name, routing_key
from hub.service.trust_reload import TrustReloader
from hub.service.upstream import UpstreamPoller
from hub.signature.policy import SignaturePolicy
from hub.signature.trust import TrustStore
from hub.vxp.secrets import SecretBox, load_or_create_key

log = structlog.get_logger(__name__)
# A clean stop seals what is left for at most this long (a 65,536-leaf round takes ~1 s).
_FINAL_SEAL_S = 15.0


@dataclass
class Components:
    store: Store
    blobs: BlobStore
    broker: Broker
    upstream: UpstreamAxis | None = None
    pusher: Pusher | None = None
    crl_source: CrlSource | None = None  # the hub fetches its CAs' CRLs when given
    ocsp_source: OcspSource | None = None  # the hub asks signers' CAs (OCSP) when given
    breaker: CircuitBreaker | None = None  # around the upstream axis, when it has one
    clock: Clock = field(default_factory=SystemClock)
    closers: list[Any] = field(default_factory=list)  # objects with async close()


def _with_context(handler: Handler, route: str) -> Handler:
    """Bind the message's package and delivery ids to every log line of its handling (a
    message for several of a package's local deliveries names no one delivery: each of
    its log lines names its own)."""

    async def run(msg: Message) -> None:
        ids = {k: msg.body[k] for k in ("package_id", "delivery_id") if k in msg.body}
        with structlog.contextvars.bound_contextvars(**ids, route=route):
            await handler(msg)

    return run


class Hub:
    def __init__(self, cfg: Config, parts: Components) -> None:
        self.cfg = cfg
        self.parts = parts
        self.store = parts.store
        self.blobs = parts.blobs
        self.broker = parts.broker
        self.clock = parts.clock
        self.metrics = Metrics()
        self.calendar = cfg.workday.calendar()
        self.directory = DirectoryCache(parts.store)
        self.trust_reloader = TrustReloader(
            Path(cfg.trust.dir),
            require_crl=cfg.trust.require_crl,
            store=parts.store,
            clock=parts.clock,
            metrics=self.metrics,
            use=self._use_trust,
            every_s=cfg.trust.reload_s,
            crl_dir=Path(cfg.trust.crl_dir),
        )
        self.relay = OutboxRelay(
            parts.store, parts.broker, parts.clock, sweep_s=cfg.delivery.sweep_s
        )
        d = cfg.delivery
        self.deliverer = Deliverer(
            store=parts.store,
            blobs=parts.blobs,
            clock=parts.clock,
            metrics=self.metrics,
            directory=self.directory,
            upstream=parts.upstream,
            pusher=parts.pusher,
            budget=RetryBudget(d.max_attempts, d.total_s, d.base_s, d.cap_s),
        )
        self.uploads = UploadSlots(
            per_system=cfg.server.max_uploads_per_system,
            large_per_system=cfg.server.max_large_uploads_per_system,
            large_total=cfg.server.max_large_uploads,
            room=parts.blobs.check_room,
        )
        limits = XmlLimits(
            max_bytes=cfg.server.max_body_bytes,
            max_elements=cfg.intake.max_elements,
            max_depth=cfg.intake.max_depth,
        )
        settings = ExamineSettings(limits, cfg.intake.allow_sha1)
        examiners = auto_count(cfg.intake.examiners)
        self.intake = Intake(
            store=parts.store,
            blobs=parts.blobs,
            directory=self.directory,
            trust=self.trust_reloader.load(),
            clock=parts.clock,
            metrics=self.metrics,
            settings=settings,
            default_policy=SignaturePolicy(cfg.intake.default_policy),
            on_commit=self.relay.kick,
            large_examinations=cfg.intake.large_examinations,
            examiners=(
                ProcessExaminers(
                    examiners, settings, self.metrics, memory_mb=cfg.intake.examiner_memory_mb
                )
                if examiners
                else None
            ),
            ocsp=(
                OcspChecker.configured(
                    cfg.trust, parts.ocsp_source, self.trust_reloader.ocsp_answers, self.metrics
                )
                if cfg.trust.ocsp and parts.ocsp_source is not None
                else None
            ),
        )
        secret = load_or_create_key(Path(cfg.vxp.key_file))
        self.vxp_box = SecretBox(secret)
        self.sessions = Sessions(derive_key(secret))
        self.poller: UpstreamPoller | None = None
        if parts.upstream is not None:
            self.poller = UpstreamPoller(
                axis=parts.upstream,
                intake=self.intake,
                store=parts.store,
                directory=self.directory,
                clock=parts.clock,
                metrics=self.metrics,
                poll_s=cfg.upstream.poll_s,
                sync_s=cfg.upstream.sync_s,
            )
        self.signer = self._signer(cfg)
        self.sealer = Sealer(
            parts.store,
            self.signer,
            parts.clock,
            origin=cfg.ledger.origin,
            interval_s=cfg.ledger.seal_s,
            checkpoint_size=cfg.ledger.checkpoint_size,
        )
        self.retention = Retention(
            parts.store,
            parts.blobs,
            parts.clock,
            self.metrics,
            days=cfg.ledger.retention_days,
            interval_s=cfg.ledger.purge_s,
        )
        self.crl_refresher: CrlRefresher | None = None
        if parts.crl_source is not None:
            self.crl_refresher = CrlRefresher.configured(
                cfg.trust,
                source=parts.crl_source,
                trust=lambda: self.intake.trust,
                seen=self.trust_reloader.seen_crl_urls,
                changed=self.trust_reloader.check,
                metrics=self.metrics,
            )
        self._breaker = parts.breaker
        self._tasks: list[asyncio.Task[None]] = []

    async def stats(self, now_us: int) -> Stats:
        """The store's delivery figures at ``now_us``, overdue by the working calendar."""
        return await self.store.stats(now_us, self.calendar.overdue_before(now_us))

    def _use_trust(self, trust: TrustStore) -> None:
        self.intake.trust = trust  # the one holder of the store in use

    @staticmethod
    def _signer(cfg: Config) -> CheckpointSigner:
        key = Path(cfg.ledger.key_file)
        if not key.exists():
            raise ConfigError(
                f"[ledger] key_file {key} does not exist: the hub signs ledger checkpoints "
                "with its own key (lienthong pki init creates a development one)"
            )
        return CheckpointSigner.from_files(
            key,
            Path(cfg.ledger.cert_file),
            Path(cfg.ledger.ca_file) if cfg.ledger.ca_file else None,
        )

    async def start(self) -> None:
        await self.store.open()
        await self.broker.connect()
        await self.directory.load()
        cert_expiry.measure_configured(self.metrics, self.cfg, self.signer.chain)
        if self.intake.examiners is not None:
            await self.intake.examiners.start()
        handlers = {
            "local": _with_context(self.deliverer.local, "local"),
            "upstream": _with_context(self.deliverer.upstream_forward, "upstream"),
            "push": _with_context(self.deliverer.push, "push"),
        }
        prefix = self.cfg.broker.prefix
        for route in ROUTES:
            await self.broker.consume(
                queue_name(prefix, route),
                routing_key(route),
                handlers[route],
                self.cfg.broker.prefetch,
            )
        self._tasks = [
            asyncio.create_task(self.relay.run(), name="outbox-relay"),
            asyncio.create_task(self.directory.run(), name="directory-refresh"),
            asyncio.create_task(self._gauges(), name="gauges"),
            asyncio.create_task(self.trust_reloader.run(), name="trust-reload"),
        ]
        if self.crl_refresher is not None:
            self._tasks.append(asyncio.create_task(self.crl_refresher.run(), name="crl-refresh"))
        if self.poller is not None:
            self._tasks.append(asyncio.create_task(self.poller.run(), name="upstream-poller"))
        if self.cfg.ledger.seal:
            self._tasks.append(asyncio.create_task(self.sealer.run(), name="ledger-sealer"))
        if self.cfg.ledger.retention_days > 0:
            self._tasks.append(asyncio.create_task(self.retention.run(), name="retention"))
        log.info("hub_started", store=self.cfg.store.kind, broker=self.cfg.broker.kind)

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        if self._tasks:
            # Never hang a shutdown on a task that will not stop: name it and go on.
            _, stuck = await asyncio.wait(self._tasks, timeout=10.0)
            if stuck:
                log.warning("tasks_did_not_stop", tasks=sorted(t.get_name() for t in stuck))
        self._tasks = []
        if self.intake.examiners is not None:
            await self.intake.examiners.stop()
        if self.intake.ocsp is not None:
            await self.intake.ocsp.close()
        await self.broker.close()
        await self._final_seal()
        await self.store.close()
        for c in self.parts.closers:
            await c.close()
        if self.parts.upstream is not None:
            await self.parts.upstream.close()
        log.info("hub_stopped")

    async def _final_seal(self) -> None:
        """A clean stop leaves every committed event under a signed checkpoint, so the
        ledger an auditor reads after planned maintenance is complete, and the next start
        has no backlog to seal while it serves. Bounded: a stop never waits on it long."""
        if not self.cfg.ledger.seal:
            return
        try:
            cp = await asyncio.wait_for(self.sealer.seal_once(), timeout=_FINAL_SEAL_S)
        except (HubError, TimeoutError) as exc:
            log.warning("ledger_final_seal_skipped", reason=type(exc).__name__)
            return
        if cp is not None:
            log.info("ledger_final_seal", size=cp.size)

    def directory_admin(self, actor: str) -> DirectoryAdmin:
        """Directory changes made by ``actor``, checked as this hub is configured."""
        return DirectoryAdmin.configured(self.store, self.clock, actor, self.cfg)

    async def ready(self) -> dict[str, str]:
        async def blobs() -> None:  # below its reserve the hub takes no new package
            self.blobs.check_room()

        checks: dict[str, str] = {}
        for name, ping in (
            ("store", self.store.ping),
            ("broker", self.broker.ping),
            ("blobs", blobs),
        ):
            try:
                await ping()
                checks[name] = "ok"
            except HubError as exc:
                checks[name] = exc.error_code
        return checks

    async def update_gauges(self) -> None:
        m = self.metrics
        if self._breaker is not None:  # first: it matters most when something is down
            m.upstream_circuit.set(float(self._breaker.is_open))
        # From the directory in memory: measured even while the store is down.
        for system, at in access_ends(self.directory.current.credentials.values()).items():
            m.token_expiry.labels(system).set(math.inf if at is None else at)  # none: no alert
        now = self.clock.now_us()
        s = await self.stats(now)
        m.pending.set(s.pending)
        m.oldest_pending.set(s.oldest_pending_age_s)
        m.dead.set(s.dead)
        m.overdue.set(s.overdue_acks)
        m.outbox.set(s.outbox)
        m.upstream_oldest.set(s.oldest_upstream_age_s)
        cp = await self.store.latest_checkpoint()
        m.ledger_size.set(cp.size if cp else 0)
        m.ledger_checkpoint_age.set((now - cp.at_us) / 1e6 if cp else 0.0)
        m.ledger_unsealed.set(s.last_event_seq + 1 - (cp.size if cp else 0))
        for q, n in (await self.broker.depth()).items():
            m.queue_depth.labels(q).set(n)
        m.dead_letters.set(await self.broker.dead_count())
        with contextlib.suppress(OSError):
            m.blob_free.set(self.blobs.free_bytes())

    async def _gauges(self) -> None:
        while True:
            await asyncio.sleep(5.0)
            with contextlib.suppress(HubError):
                await self.update_gauges()
