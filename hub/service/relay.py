"""Outbox relay and delivery sweeper: nothing committed is ever left unsent.

* Fast path: the intake hands its freshly committed outbox rows to ``kick``; a
  single task publishes whatever has gathered in one pipelined batch and deletes
  the rows once the broker confirmed them.
* Sweep: every few seconds, outbox rows older than a grace period (left by a crash,
  or by a broker outage) are republished. At start-up everything is swept at once.
* Deliveries still waiting long after they were due are re-announced; with the
  in-memory broker (whose messages die with the process) this is what resumes work
  after a restart. Handlers are idempotent, so a duplicate message is harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

import structlog

from hub.errors import HubError
from hub.ports import Broker, Clock, Message, Store
from hub.records import OutboxItem
from hub.service.topology import routing_key

log = structlog.get_logger(__name__)


class OutboxRelay:
    def __init__(
        self,
        store: Store,
        broker: Broker,
        clock: Clock,
        *,
        batch: int = 500,
        sweep_s: float = 2.0,
        grace_s: float = 5.0,
        stuck_grace_s: float | None = None,
    ) -> None:
        self.store = store
        self.broker = broker
        self.clock = clock
        self.batch = batch
        self.sweep_s = sweep_s
        self.grace_s = grace_s
        # Volatile brokers lose messages on restart: re-announce waiting deliveries soon.
        self.stuck_grace_s = (
            stuck_grace_s if stuck_grace_s is not None else (10.0 if broker.volatile else 900.0)
        )
        self._pending: list[OutboxItem] = []
        self._wake = asyncio.Event()
        self.published = 0

    def kick(self, items: Sequence[OutboxItem]) -> None:
        self._pending.extend(items)
        self._wake.set()

    async def _publish(self, items: Sequence[OutboxItem]) -> bool:
        try:
            await self.broker.publish_many([Message(i.routing_key, i.body) for i in items])
            await self.store.outbox_done([i.id for i in items])
        except HubError as exc:
            log.warning("outbox_publish_failed", count=len(items), error=exc.error_code)
            return False
        self.published += len(items)
        return True

    async def run(self) -> None:
        await self.sweep(everything=True)
        loop = asyncio.get_running_loop()
        next_sweep = loop.time() + self.sweep_s
        while True:
            timeout = max(0.0, next_sweep - loop.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            self._wake.clear()
            while self._pending:
                items, self._pending = self._pending[: self.batch], self._pending[self.batch :]
                await self._publish(items)  # failures stay in the outbox for the sweep
            if loop.time() >= next_sweep:
                await self.sweep()
                next_sweep = loop.time() + self.sweep_s

    async def sweep(self, *, everything: bool = False) -> int:
        now = self.clock.now_us()
        count = 0
        try:
            cutoff = now if everything else now - int(self.grace_s * 1e6)
            while True:
                due = await self.store.outbox_due(cutoff, self.batch)
                if not due or not await self._publish(due):
                    break
                count += len(due)
                if len(due) < self.batch:
                    break
            stuck_cutoff = (
                now
                if (everything and self.broker.volatile)
                else (now - int(self.stuck_grace_s * 1e6))
            )
            stuck = await self.store.stuck_deliveries(stuck_cutoff, self.batch * 10)
            if stuck:
                await self.broker.publish_many(
                    [
                        Message(
                            routing_key(d.route),
                            {
                                "delivery_id": d.id,
                                "package_id": d.package_id,
                                "recipient": d.recipient,
                            },
                        )
                        for d in stuck
                    ]
                )
                count += len(stuck)
                log.info("deliveries_reannounced", count=len(stuck))
        except HubError as exc:
            log.warning("sweep_failed", error=exc.error_code)
        return count
