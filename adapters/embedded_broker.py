"""In-process broker with RabbitMQ's routing semantics (the embedded default).

A topic exchange over named queues, consumers with a prefetch (concurrency) limit,
delayed retries and a dead-letter list. Publishing a key that no queue is bound to
fails loudly, as a mandatory publish does on RabbitMQ. Messages live in memory only
(``volatile``): the outbox and the delivery sweeper re-create them after a restart.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import structlog

from hub.errors import Unavailable, Unroutable
from hub.ports import Handler, Message
from hub.service.retry import decide
from hub.service.topology import topic_matches

log = structlog.get_logger(__name__)


class EmbeddedBroker:
    volatile = True

    def __init__(self, bindings: dict[str, str]) -> None:
        self._bindings = dict(bindings)  # queue -> pattern
        self._routes: dict[str, list[str]] = {}  # routing key -> queues (bindings fixed)
        self._queues: dict[str, asyncio.Queue[Message]] = {}
        self._dead: list[Message] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._inflight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._open = False

    async def connect(self) -> None:
        self._queues = {q: asyncio.Queue() for q in self._bindings}
        self._open = True

    async def close(self) -> None:
        self._open = False
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def ping(self) -> None:
        if not self._open:
            raise Unavailable("embedded broker is closed", code="broker_unavailable")

    def _route(self, key: str) -> list[str]:
        queues = self._routes.get(key)
        if queues is None:
            queues = [q for q, pattern in self._bindings.items() if topic_matches(pattern, key)]
            self._routes[key] = queues
        return queues

    def _put(self, queue: str, msg: Message) -> None:
        self._inflight += 1
        self._idle.clear()
        self._queues[queue].put_nowait(msg)

    async def publish_many(self, messages: Sequence[Message]) -> None:
        if not self._open:
            raise Unavailable("embedded broker is closed", code="broker_unavailable")
        routed = []
        for m in messages:
            queues = self._route(m.routing_key)
            if not queues:
                raise Unroutable(f"no queue is bound to routing key {m.routing_key!r}")
            routed.append((m, queues))
        for m, queues in routed:
            for q in queues:
                self._put(q, m)

    async def consume(self, queue: str, binding: str, handler: Handler, prefetch: int) -> None:
        if queue not in self._queues:
            self._bindings[queue] = binding
            self._routes.clear()
            self._queues[queue] = asyncio.Queue()
        for i in range(max(1, prefetch)):
            task = asyncio.create_task(self._worker(queue, handler), name=f"{queue}-{i}")
            self._tasks.add(task)

    async def _worker(self, queue: str, handler: Handler) -> None:
        q = self._queues[queue]
        while True:
            msg = await q.get()
            try:
                err: BaseException | None = None
                try:
                    await handler(msg)
                except Exception as exc:  # noqa: BLE001 - handed to the retry decision
                    err = exc
                d = decide(err, msg.attempt)
                if d.action == "retry":
                    again = Message(msg.routing_key, msg.body, msg.attempt + 1)
                    self._inflight += 1
                    asyncio.get_running_loop().call_later(d.delay_s, self._requeue, queue, again)
                elif d.action == "dead":
                    self._dead.append(msg)
                    log.warning("dead_lettered", queue=queue, reason=d.reason)
            finally:
                self._done()

    def _requeue(self, queue: str, msg: Message) -> None:
        if self._open:
            self._queues[queue].put_nowait(msg)
        else:
            self._done()

    def _done(self) -> None:
        self._inflight -= 1
        if self._inflight <= 0:
            self._inflight = 0
            self._idle.set()

    async def join(self) -> None:
        """Tests: wait until every published message (and its retries) is handled."""
        await self._idle.wait()

    async def dead_count(self) -> int:
        return len(self._dead)

    async def dead_letters(self) -> list[Message]:
        return list(self._dead)

    async def depth(self) -> dict[str, int]:
        return {q: qq.qsize() for q, qq in self._queues.items()}
