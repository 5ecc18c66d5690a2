"""Retention: purge package bytes after N days, keeping the ledger intact; legal hold.

A purge deletes the blob (unless another, unpurged package has the same bytes),
marks the package purged and appends a ``purged`` tombstone event; the events, the
SHA-256 and the metadata stay, so evidence still proves what was received. A package
under legal hold is never purged; placing and lifting a hold are ledger events.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from hub.errors import HubError, NotFound
from hub.ports import BlobStore, Clock, Store
from hub.records import Event
from hub.service.metrics import Metrics

log = structlog.get_logger(__name__)

_DAY_US = 86_400 * 1_000_000


async def drop_unheld(store: Store, blobs: BlobStore, sha256: str) -> None:
    """Delete the bytes ``sha256`` unless some package not purged holds them (the one
    rule for removing a package file: a purge, and intake's bytes refused for their key)."""
    if not await store.sha256_in_use(sha256):
        await blobs.delete(sha256)


class Retention:
    def __init__(
        self,
        store: Store,
        blobs: BlobStore,
        clock: Clock,
        metrics: Metrics,
        *,
        days: int,
        interval_s: float,
    ) -> None:
        self.store = store
        self.blobs = blobs
        self.clock = clock
        self.metrics = metrics
        self.days = days
        self.interval_s = interval_s

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            with contextlib.suppress(HubError):
                await self.purge_once("retention")

    async def purge_once(self, actor: str, limit: int = 1_000) -> int:
        """Purge what is due now; return how many package bodies were purged."""
        if self.days <= 0:
            return 0
        now = self.clock.now_us()
        done = 0
        for p in await self.store.purge_due(now - self.days * _DAY_US, limit):
            event = Event(
                "purged",
                self.clock.now_us(),
                p.id,
                actor=actor,
                data={"sha256": p.sha256, "size": p.size, "retention_days": self.days},
            )
            if not await self.store.mark_purged(p.id, event):
                continue  # put on hold meanwhile
            await drop_unheld(self.store, self.blobs, p.sha256)
            done += 1
        if done:
            self.metrics.purged.inc(done)
            log.info("retention_purged", packages=done, days=self.days)
        return done

    async def hold(self, package_id: str, reason: str | None, actor: str) -> bool:
        """Place a legal hold (``reason``) or lift it (None); an audited administrative act."""
        if await self.store.package(package_id) is None:
            raise NotFound(f"no package {package_id}", code="package_not_found")
        event = Event(
            "legal_hold" if reason else "legal_hold_lifted",
            self.clock.now_us(),
            package_id,
            actor=actor,
            data={"reason": reason} if reason else {},
        )
        return await self.store.set_hold(package_id, reason, event)
