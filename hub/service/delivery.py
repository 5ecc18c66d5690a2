"""Delivery workers and the recipient's actions on a delivery.

Each worker handles one broker message (a delivery reference) and moves the
delivery through its states with conditional transitions, so a message delivered
twice changes nothing the second time. Retry and dead-letter decisions for the
push and upstream paths are taken here against the delivery's own budget (attempt
count and total time), then handed to the broker as ``Retry`` / ``DeadLetter``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, replace

import structlog

from hub.errors import Conflict, HubError, NotFound, Unavailable, UpstreamRejected
from hub.ids import new_id
from hub.ports import (
    BlobStore,
    Clock,
    DeadLetter,
    Message,
    Outgoing,
    Pusher,
    Retry,
    Store,
    UpstreamAxis,
)
from hub.records import INBOX_STATES, DeliveryRow, Event, Organ, OutboxItem, PackageRow, State
from hub.service.directory_cache import DirectoryCache
from hub.service.metrics import Metrics
from hub.service.retry import backoff
from hub.service.topology import routing_key

log = structlog.get_logger(__name__)

WAITING = frozenset({State.PENDING, State.RETRYING})
# ``last_error`` of a push parked in its organ's inbox while the organ's system was
# suspended; resuming the system puts exactly these back on their route.
PARKED_SUSPENDED = "system_suspended"
# Organs named in one query for a system's parked pushes (well under the stores' limits
# on bound parameters, for a system serving thousands of organs).
_ORGANS_PER_QUERY = 500


@dataclass(frozen=True, slots=True)
class RetryBudget:
    max_attempts: int = 12
    total_s: float = 24 * 3600.0
    base_s: float = 1.0
    cap_s: float = 600.0


class Deliverer:
    def __init__(
        self,
        *,
        store: Store,
        blobs: BlobStore,
        clock: Clock,
        metrics: Metrics,
        directory: DirectoryCache,
        upstream: UpstreamAxis | None,
        pusher: Pusher | None,
        budget: RetryBudget,
    ) -> None:
        self.store = store
        self.blobs = blobs
        self.clock = clock
        self.metrics = metrics
        self.directory = directory
        self.upstream = upstream
        self.pusher = pusher
        self.budget = budget

    async def _load(self, msg: Message) -> tuple[DeliveryRow, PackageRow] | None:
        d = await self.store.delivery(str(msg.body["delivery_id"]))
        if d is None or d.state not in WAITING:
            return None  # already handled (a redelivered or swept message)
        p = await self.store.package(d.package_id)
        if p is None:  # pragma: no cover - committed together with the delivery
            raise NotFound(f"package {d.package_id} missing for delivery {d.id}")
        return d, p

    async def _move(
        self,
        d: DeliveryRow,
        allowed: frozenset[State],
        to: State,
        event: str,
        last_error: str | None = None,
        **data: object,
    ) -> bool:
        ok = await self.store.transition(
            d.id,
            allowed,
            to,
            Event(event, self.clock.now_us(), d.package_id, d.id, d.recipient, "hub", dict(data)),
            last_error=last_error,
        )
        if ok:
            self.metrics.deliveries.labels(d.route, str(to)).inc()
            log.info(
                "delivery_" + event,
                package_id=d.package_id,
                recipient=d.recipient,
                delivery_id=d.id,
                route=d.route,
            )
        return ok

    async def local(self, msg: Message) -> None:
        # The message carries what the transitions need: no reads on this path. A
        # redelivered message finds the states already moved and changes nothing; one
        # whose handling failed part-way moves only what is left.
        b = msg.body
        package_id = str(b["package_id"])
        refs: list[dict[str, object]] = b.get("deliveries") or [b]
        rows = [
            DeliveryRow(
                str(r["delivery_id"]), package_id, str(r["recipient"]), "local", State.PENDING
            )
            for r in refs
        ]
        if len(rows) == 1:
            await self._move(rows[0], WAITING, State.AVAILABLE, "available")
            return
        # Together, so the store's group commit takes them in one statement.
        done = await asyncio.gather(
            *(self._move(d, WAITING, State.AVAILABLE, "available") for d in rows),
            return_exceptions=True,
        )
        for outcome in done:
            if isinstance(outcome, BaseException):
                raise outcome

    async def upstream_forward(self, msg: Message) -> None:
        loaded = await self._load(msg)
        if loaded is None:
            return
        d, p = loaded
        if self.upstream is None:
            await self._fail(d, p, "no upstream axis is configured")
            return
        body = await Outgoing.of(self.blobs, p.sha256, p.size)
        try:
            upstream_id = await self.upstream.forward(p, body)
        except Unavailable as exc:
            self.metrics.upstream_failures.labels("forward").inc()
            await self._fail(d, p, exc.message)
            return
        except UpstreamRejected as exc:  # refused for good: retrying cannot help
            self.metrics.upstream_failures.labels("forward_rejected").inc()
            await self._fail(d, p, exc.message, permanent=True)
            return
        await self._move(d, WAITING, State.AVAILABLE, "forwarded", upstream_id=upstream_id)

    async def push(self, msg: Message) -> None:
        loaded = await self._load(msg)
        if loaded is None:
            return
        d, p = loaded
        organ = self.directory.current.resolve(d.recipient)
        if await self._suspended(organ):
            # Nothing goes to a suspended system; the package waits in the inbox, and
            # ``resume_pushes`` sends it once the system is resumed.
            await self._move(
                d, WAITING, State.AVAILABLE, "available", PARKED_SUSPENDED, note="system suspended"
            )
            return
        if organ is None or not organ.push_url or self.pusher is None:
            # The organ dropped its push endpoint: the package stays in its inbox.
            await self._move(d, WAITING, State.AVAILABLE, "available", note="no push endpoint")
            return
        body = await Outgoing.of(self.blobs, p.sha256, p.size)
        try:
            await self.pusher.push(organ.push_url, p, body)
        except Unavailable as exc:  # the endpoint is down or said no: try again later
            await self._fail(d, p, f"{exc.error_code}: {exc.message}")
            return
        except HubError as exc:  # an endpoint the hub may not push to: no retry helps
            await self._fail(d, p, f"{exc.error_code}: {exc.message}", permanent=True)
            return
        await self._move(d, WAITING, State.FETCHED, "pushed", url=organ.push_url)

    async def _suspended(self, organ: Organ | None) -> bool:
        """Whether the system serving ``organ`` is suspended, confirmed against the store:
        this process's snapshot may be a poll behind a resume, whose pushes must not be
        parked again (a read of the directory's version, and only for a suspended one)."""
        if organ is None or organ.system_id is None:
            return False
        system = self.directory.current.systems.get(organ.system_id)
        if system is None or system.suspended is None:
            return False
        await self.directory.refresh()
        system = self.directory.current.systems.get(organ.system_id)
        return system is not None and system.suspended is not None

    async def _fail(
        self, d: DeliveryRow, p: PackageRow, reason: str, *, permanent: bool = False
    ) -> None:
        now = self.clock.now_us()
        attempts = d.attempts + 1
        elapsed = (now - p.received_us) / 1e6
        if permanent or attempts >= self.budget.max_attempts or elapsed >= self.budget.total_s:
            await self.store.transition(
                d.id,
                WAITING,
                State.DEAD,
                Event(
                    "dead",
                    now,
                    d.package_id,
                    d.id,
                    d.recipient,
                    "hub",
                    {"attempts": attempts, "reason": reason[:500]},
                ),
                attempts=attempts,
                last_error=reason[:500],
            )
            self.metrics.deliveries.labels(d.route, "dead").inc()
            log.warning(
                "delivery_dead",
                package_id=d.package_id,
                recipient=d.recipient,
                attempts=attempts,
                reason=reason,
            )
            raise DeadLetter(reason)
        delay = min(
            backoff(attempts, base_s=self.budget.base_s, cap_s=self.budget.cap_s),
            max(0.0, self.budget.total_s - elapsed),
        )
        await self.store.transition(
            d.id,
            WAITING,
            State.RETRYING,
            Event(
                "retry",
                now,
                d.package_id,
                d.id,
                d.recipient,
                "hub",
                {"attempt": attempts, "delay_s": round(delay, 3), "reason": reason[:500]},
            ),
            attempts=attempts,
            next_attempt_us=now + int(delay * 1e6),
            last_error=reason[:500],
        )
        self.metrics.deliveries.labels(d.route, "retrying").inc()
        raise Retry(delay, reason)


def outbox_for(d: DeliveryRow, now: int) -> OutboxItem:
    """The broker message (a reference, never the bytes) that starts a delivery's work."""
    return OutboxItem(
        new_id(),
        routing_key(d.route),
        {"delivery_id": d.id, "package_id": d.package_id, "recipient": d.recipient},
        now,
    )


def outbox_for_package(deliveries: Sequence[DeliveryRow], now: int) -> tuple[OutboxItem, ...]:
    """The broker messages that start a new package's deliveries: one for all its local
    recipients (their work is one transition each, taken together), and one per push or
    upstream delivery, each of which is tried, retried and dead-lettered on its own."""
    local = [d for d in deliveries if d.route == "local"]
    items = [outbox_for(d, now) for d in deliveries if d.route != "local"]
    if len(local) == 1:
        items.insert(0, outbox_for(local[0], now))
    elif local:
        body = {
            "package_id": local[0].package_id,
            "deliveries": [{"delivery_id": d.id, "recipient": d.recipient} for d in local],
        }
        items.insert(0, OutboxItem(new_id(), routing_key("local"), body, now))
    return tuple(items)


async def resend(
    store: Store, clock: Clock, delivery_id: str, actor: str, reason: str
) -> OutboxItem:
    """An administrator puts a dead delivery back on its route (audited)."""
    d = await store.delivery(delivery_id)
    if d is None:
        raise NotFound(f"no delivery {delivery_id}", code="delivery_not_found")
    now = clock.now_us()
    item = outbox_for(d, now)
    ok = await store.transition(
        d.id,
        frozenset({State.DEAD}),
        State.PENDING,
        Event("resent", now, d.package_id, d.id, d.recipient, actor, {"reason": reason[:500]}),
        attempts=0,
        outbox=[item],
    )
    if not ok:
        raise Conflict(f"delivery {delivery_id} is {d.state}, not dead", code="not_dead")
    return item


async def resume_pushes(store: Store, clock: Clock, organs: Sequence[str], actor: str) -> int:
    """Put the pushes parked while a system was suspended back on their route (each a
    ``push_resumed`` event and an outbox message, committed together); how many. A page
    of them is moved at once, so the store's group commits take them together."""

    async def move(d: DeliveryRow) -> bool:
        now = clock.now_us()
        return await store.transition(
            d.id,
            frozenset({State.AVAILABLE}),
            State.PENDING,
            Event("push_resumed", now, d.package_id, d.id, d.recipient, actor, {}),
            last_error="",
            outbox=[outbox_for(d, now)],
        )

    moved = 0
    for at in range(0, len(organs), _ORGANS_PER_QUERY):
        chunk = organs[at : at + _ORGANS_PER_QUERY]
        while parked := await store.parked_pushes(chunk, PARKED_SUSPENDED, 500):
            moved += sum(await asyncio.gather(*(move(d) for d in parked)))
    return moved


async def acknowledge(
    store: Store, clock: Clock, d: DeliveryRow, actor: str, *, result: str, reason: str | None
) -> DeliveryRow:
    """Recipient's done/fail. Idempotent: repeating the same answer changes nothing."""
    target = State.DONE if result == "done" else State.FAILED_BY_RECIPIENT
    if d.state == target:
        return d
    now = clock.now_us()
    ok = await store.transition(
        d.id,
        INBOX_STATES,
        target,
        Event(
            "acknowledged",
            now,
            d.package_id,
            d.id,
            d.recipient,
            actor,
            {"result": result, "reason": (reason or "")[:500]},
        ),
    )
    if not ok:
        fresh = await store.delivery(d.id)
        if fresh is not None and fresh.state == target:
            return fresh
        state = fresh.state if fresh else d.state
        raise Conflict(
            f"delivery is {state}; it cannot be acknowledged as {result}",
            code="ack_conflict",
            details={"state": str(state)},
        )
    return replace(d, state=target, updated_us=now)  # known: no read back


async def mark_fetched(store: Store, clock: Clock, d: DeliveryRow, actor: str) -> None:
    if d.state == State.AVAILABLE:
        await store.transition(
            d.id,
            frozenset({State.AVAILABLE}),
            State.FETCHED,
            Event("fetched", clock.now_us(), d.package_id, d.id, d.recipient, actor, {}),
        )
