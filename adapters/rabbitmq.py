"""RabbitMQ broker through aio-pika.

Topology (all durable, work queues are quorum queues):
  exchange ``<prefix>`` (topic) --delivery.<route>--> queue ``<prefix>.<route>``
  retry: queue ``<prefix>.<route>.retry.<ms>`` (x-message-ttl, dead-letters back to
  the work queue through the default exchange); dead letters: ``<prefix>.dead``.
Publisher confirms are pipelined: every publish of a batch is started, then all
confirms awaited together. Consumers use manual acks with a prefetch; the ack,
retry or dead-letter decision comes from ``hub.service.retry.decide``. The
connection is robust (reconnects with backoff); client errors become
``Unavailable`` at this seam.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import aio_pika
import aiormq
import aiormq.abc
import orjson
import structlog
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractRobustConnection,
)

from hub.errors import Unavailable, Unroutable
from hub.ports import Handler, Message
from hub.service.retry import decide

log = structlog.get_logger(__name__)

PUBLISH_LANES = 8
RETRY_BUCKETS_MS = (1_000, 5_000, 30_000, 120_000, 600_000)
_QUORUM: dict[str, Any] = {"x-queue-type": "quorum"}


def _concrete(channel: aiormq.abc.AbstractChannel) -> aiormq.Channel:
    if not isinstance(channel, aiormq.Channel):  # the concrete one publishes with ``wait``
        raise TypeError(f"unexpected AMQP channel type {type(channel).__name__}")
    return channel


def _properties(m: Message) -> dict[str, Any]:
    """A message's AMQP properties (aio-pika's ``Message`` and aiormq's take the same)."""
    return {
        "content_type": "application/json",
        "delivery_mode": int(aio_pika.DeliveryMode.PERSISTENT),
        "headers": {"x-attempt": m.attempt, "x-routing-key": m.routing_key},
    }


def _bucket(delay_s: float) -> int:
    ms = int(delay_s * 1000)
    return next((b for b in RETRY_BUCKETS_MS if b >= ms), RETRY_BUCKETS_MS[-1])


class RabbitBroker:
    volatile = False

    def __init__(self, url: str, bindings: dict[str, str], *, prefix: str = "lienthong") -> None:
        self._url = url
        self._bindings = dict(bindings)
        self.prefix = prefix
        self._conn: AbstractRobustConnection | None = None
        self._pub: AbstractChannel | None = None
        self._lanes: list[AbstractChannel] = []  # publisher channels, _pub the first
        self._exchange: AbstractExchange | None = None
        self._retry_declared: set[str] = set()
        self._consumers: list[AbstractChannel] = []

    def __repr__(self) -> str:  # the URL carries credentials
        return f"RabbitBroker(prefix={self.prefix!r})"

    @property
    def dead_queue(self) -> str:
        return f"{self.prefix}.dead"

    async def connect(self) -> None:
        try:
            self._conn = await aio_pika.connect_robust(self._url, timeout=10)
            self._pub = await self._conn.channel(publisher_confirms=True)
            self._exchange = await self._pub.declare_exchange(
                self.prefix, aio_pika.ExchangeType.TOPIC, durable=True
            )
            for queue, pattern in self._bindings.items():
                q = await self._pub.declare_queue(queue, durable=True, arguments=_QUORUM)
                await q.bind(self._exchange, routing_key=pattern)
            await self._pub.declare_queue(self.dead_queue, durable=True, arguments=_QUORUM)
            self._lanes = [self._pub]
            for _ in range(PUBLISH_LANES - 1):
                self._lanes.append(await self._conn.channel(publisher_confirms=True))
        except (TimeoutError, aio_pika.exceptions.AMQPError, OSError) as exc:
            raise Unavailable(f"RabbitMQ unreachable: {exc}", code="broker_unavailable") from exc

    async def close(self) -> None:
        self._lanes = []
        self._pub = None
        self._exchange = None
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def ping(self) -> None:
        if self._conn is None or self._conn.is_closed or self._pub is None or self._pub.is_closed:
            raise Unavailable("RabbitMQ connection is down", code="broker_unavailable")

    @staticmethod
    def _amqp(m: Message) -> aio_pika.Message:
        return aio_pika.Message(orjson.dumps(m.body), **_properties(m))

    async def publish_many(self, messages: Sequence[Message]) -> None:
        """Every message of the batch written at once, then every confirm awaited.

        aiormq's own publish (which aio-pika's ``Exchange.publish`` calls) waits, holding
        the channel's lock, until the connection's writer task has written the frame, so
        a batch went out one message per two or three turns of the event loop: with the
        loop busy serving requests, 0.4-1.8 s for 500 references (the outbox piled up and
        deliveries waited in ``pending``). Published without that wait, each message
        holds the lock only while it is queued for the writer."""
        if not self._lanes:
            raise Unavailable("RabbitMQ is not connected", code="broker_unavailable")
        try:
            lanes = [_concrete(await ch.get_underlay_channel()) for ch in self._lanes]
            results = await asyncio.gather(
                *(
                    lanes[i % len(lanes)].basic_publish(
                        orjson.dumps(m.body),
                        exchange=self.prefix,
                        routing_key=m.routing_key,
                        properties=aiormq.spec.Basic.Properties(**_properties(m)),
                        mandatory=True,
                        wait=False,
                    )
                    for i, m in enumerate(messages)
                )
            )
        except (aio_pika.exceptions.AMQPError, OSError, RuntimeError) as exc:
            raise Unavailable(f"RabbitMQ publish failed: {exc}", code="broker_unavailable") from exc
        # aiormq types the result as the confirm frame; a mandatory publish that found no
        # queue is answered with the returned message instead.
        outcomes: list[object] = list(results)
        returned = [r for r in outcomes if isinstance(r, aiormq.abc.DeliveredMessage)]
        if returned:  # no queue bound for them: kept in the outbox, published again later
            raise Unroutable(
                f"no queue is bound to routing key {returned[0].routing_key!r} "
                f"({len(returned)} of {len(results)} messages returned)"
            )

    async def _retry_queue(self, ch: AbstractChannel, work_queue: str, ms: int) -> str:
        name = f"{work_queue}.retry.{ms}"
        if name not in self._retry_declared:
            await ch.declare_queue(
                name,
                durable=True,
                arguments={
                    **_QUORUM,
                    "x-message-ttl": ms,
                    "x-dead-letter-exchange": "",
                    "x-dead-letter-routing-key": work_queue,
                },
            )
            self._retry_declared.add(name)
        return name

    async def consume(self, queue: str, binding: str, handler: Handler, prefetch: int) -> None:
        if self._conn is None:
            raise Unavailable("RabbitMQ is not connected", code="broker_unavailable")
        ch = await self._conn.channel(publisher_confirms=True)
        await ch.set_qos(prefetch_count=prefetch)
        q = await ch.declare_queue(queue, durable=True, arguments=_QUORUM)
        if self._exchange is not None:
            await q.bind(self._exchange, routing_key=binding)
        self._consumers.append(ch)

        async def on_message(raw: AbstractIncomingMessage) -> None:
            headers: dict[str, Any] = dict(raw.headers or {})
            attempt = int(headers.get("x-attempt", 0) or 0)
            key = str(headers.get("x-routing-key") or raw.routing_key or "")
            msg = Message(key, orjson.loads(raw.body), attempt)
            err: BaseException | None = None
            try:
                await handler(msg)
            except Exception as exc:  # noqa: BLE001 - handed to the retry decision
                err = exc
            d = decide(err, attempt)
            try:
                if d.action == "retry":
                    target = await self._retry_queue(ch, queue, _bucket(d.delay_s))
                    again = Message(key, msg.body, attempt + 1)
                    await ch.default_exchange.publish(self._amqp(again), routing_key=target)
                elif d.action == "dead":
                    log.warning("dead_lettered", queue=queue, reason=d.reason)
                    await ch.default_exchange.publish(self._amqp(msg), routing_key=self.dead_queue)
                await raw.ack()
            except (aio_pika.exceptions.AMQPError, OSError, RuntimeError) as exc:
                # Not acked: RabbitMQ redelivers it after the channel recovers.
                log.warning("broker_settle_failed", queue=queue, error=str(exc))

        await q.consume(on_message, no_ack=False)

    async def _count(self, queue: str) -> int:
        """Messages ready in ``queue`` now. Asked of the channel underneath: the robust
        channel answers a passive declaration of a queue it declared itself with the
        queue object it kept, whose count is the one from that first declaration."""
        assert self._pub is not None
        channel = await self._pub.get_underlay_channel()
        ok = await channel.queue_declare(queue, passive=True)
        return int(ok.message_count or 0)

    async def dead_count(self) -> int:
        if self._pub is None or self._pub.is_closed:
            return 0
        return await self._count(self.dead_queue)

    async def dead_letters(self) -> list[Message]:
        """Peek the dead-letter queue (messages are returned to it)."""
        if self._conn is None:
            return []
        out: list[Message] = []
        ch = await self._conn.channel()
        try:
            q = await ch.declare_queue(self.dead_queue, durable=True, arguments=_QUORUM)
            while (raw := await q.get(no_ack=False, fail=False)) is not None:
                headers = dict(raw.headers or {})
                key = str(headers.get("x-routing-key", ""))
                out.append(Message(key, orjson.loads(raw.body), 0))
        finally:
            await ch.close()  # unacked gets return to the queue
        return out

    async def depth(self) -> dict[str, int]:
        if self._pub is None or self._pub.is_closed:
            return {}
        return {q: await self._count(q) for q in [*self._bindings, self.dead_queue]}

    async def purge(self) -> None:
        """Tests only: empty this prefix's queues."""
        if self._pub is None:
            return
        for queue in [*self._bindings, self.dead_queue]:
            q = await self._pub.declare_queue(queue, durable=True, arguments=_QUORUM)
            await q.purge()

    async def delete_all(self) -> None:
        """Tests only: remove this prefix's queues and exchange."""
        if self._pub is None:
            return
        retries = {f"{q}.retry.{ms}" for q in self._bindings for ms in RETRY_BUCKETS_MS}
        names = [*self._bindings, self.dead_queue, *retries]
        for name in names:
            await self._pub.queue_delete(name)
        await self._pub.exchange_delete(self.prefix)
