"""The trust store follows its directory while the hub runs.

CRLs go stale within days (``nextUpdate``) and CAs are added and withdrawn; with
``[trust] require_crl`` a stale CRL refuses every signature under it, so a new one must
take effect without a restart. Every ``[trust] reload_s`` seconds (and at once on
SIGHUP, or when ``hub/service/crl_refresh.py`` has written a CRL into ``[trust]
crl_dir``) the directory and ``crl_dir`` are looked at; when their files changed, the
whole store is read again and, only if it reads cleanly, replaces the one in use. A
file caught half-written or unreadable leaves the store in use as it was (logged,
counted) until the directory changes again: write new files under another name and
rename them into place.

A change takes effect only once it is on the ledger (``trust_store_changed``: every CA's
fingerprint, every CRL's issuer, number and validity), so an auditor can tell which
trust decided any signature.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Callable
from pathlib import Path

import structlog

from hub.errors import ConfigError, HubError
from hub.ports import Clock, Store
from hub.records import Event
from hub.service import cert_expiry
from hub.service.metrics import Metrics
from hub.signature.ocsp import OcspAnswers
from hub.signature.trust import CrlUrls, TrustStore, directory_state

log = structlog.get_logger(__name__)

State = tuple[tuple[str, int, int], ...]
_PROCESS = f"{socket.gethostname()}:{os.getpid()}"


class TrustReloader:
    def __init__(
        self,
        path: Path,
        *,
        require_crl: bool,
        store: Store,
        clock: Clock,
        metrics: Metrics,
        use: Callable[[TrustStore], None],
        every_s: float,
        crl_dir: Path | None = None,
    ) -> None:
        self.path = path
        self.crl_dir = crl_dir  # fetched CRLs (hub/service/crl_refresh.py)
        self.seen_crl_urls = CrlUrls()  # learned by every store loaded, kept across loads
        self.ocsp_answers = OcspAnswers()  # likewise: OCSP answers outlive a reload
        self.require_crl = require_crl
        self.store = store
        self.clock = clock
        self.metrics = metrics
        self.use = use
        self.every_s = every_s
        self._state: State = ()
        self._failed: State | None = None
        self._lock = asyncio.Lock()
        self._signalled: set[asyncio.Task[bool]] = set()

    def load(self) -> TrustStore:
        """The store the hub starts with, its directory remembered (looked at first: a file
        renamed in while the store is read shows as a change at the next look)."""
        state = self._look() if self.path.is_dir() else ()
        trust = self._read()
        self._state = state
        self._measure(trust)
        return trust

    def _look(self) -> State:
        return directory_state(self.path, self.crl_dir)

    def _read(self) -> TrustStore:
        return TrustStore.from_directory(
            self.path,
            require_crl=self.require_crl,
            crl_dir=self.crl_dir,
            seen_crl_urls=self.seen_crl_urls,
            ocsp=self.ocsp_answers,
        )

    def _measure(self, trust: TrustStore) -> None:
        expiry = trust.crl_expiry()
        self.metrics.trust_crl_expiry.set(expiry.timestamp() if expiry else 0.0)
        cert_expiry.measure(self.metrics, "trust_anchor", trust.anchors)

    async def check(self, reason: str = "changed") -> bool:
        """Reload if the directory changed; True when a new store is in use."""
        async with self._lock:
            try:
                state = await asyncio.to_thread(self._look)
            except OSError as exc:
                log.warning("trust_store_unreadable", path=str(self.path), error=str(exc))
                return False
            if state in (self._state, self._failed):
                return False
            try:
                trust = await asyncio.to_thread(self._read)
            except (ConfigError, OSError) as exc:
                self._failed = state
                self.metrics.trust_reload_failures.inc()
                log.warning("trust_store_reload_failed", path=str(self.path), error=str(exc))
                return False
            # With several hub processes each reloads (and records) on its own.
            data = {**trust.summary(), "reason": reason, "process": _PROCESS}
            # On the ledger first: a change nobody could audit is not made (the next
            # look tries again).
            await self.store.append_events(
                [Event("trust_store_changed", self.clock.now_us(), actor="hub", data=data)]
            )
            self.use(trust)
            self._state, self._failed = state, None
            self._measure(trust)
            log.info(
                "trust_store_reloaded",
                reason=reason,
                anchors=len(trust.anchors),
                crls=len(trust.crls),
            )
            return True

    def check_soon(self) -> None:
        """For a signal handler: look now, in a task of its own."""
        task = asyncio.get_running_loop().create_task(self.check("signal"))
        self._signalled.add(task)
        task.add_done_callback(self._signalled.discard)
        task.add_done_callback(_log_failure)

    async def run(self) -> None:
        if self.every_s <= 0:
            return
        while True:
            await asyncio.sleep(self.every_s)
            with contextlib.suppress(HubError):
                await self.check()


def _log_failure(task: asyncio.Task[bool]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.warning("trust_store_reload_failed", error=str(exc))
