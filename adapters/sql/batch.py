"""Group commits for a network store: many concurrent calls, few round trips.

A ``Coalescer`` runs ``batch(items)`` (one statement for the lot) with at most
``lanes`` batches in flight. A call finding a free lane goes out at once, so an idle
hub pays no added latency; under load, calls gather while the lanes are busy and leave
together in the next batch. A batch that fails with anything but an ``Unavailable``
(a constraint one item broke, say) is re-run item by item, so each caller gets its own
answer and no item fails because of another.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from hub.errors import Unavailable

I = TypeVar("I")  # noqa: E741 - the item type
R = TypeVar("R")


class Coalescer(Generic[I, R]):
    def __init__(
        self,
        batch: Callable[[Sequence[I]], Awaitable[Sequence[R]]],
        one: Callable[[I], Awaitable[R]] | None = None,
        *,
        lanes: int = 2,
        max_batch: int = 256,
    ) -> None:
        """``one``: a call that goes alone (default: a batch of one)."""
        self._batch = batch
        self._one = one if one is not None else self._batch_of_one
        self._lanes = lanes
        self._max = max_batch
        self._queue: list[tuple[I, asyncio.Future[R]]] = []
        self._busy = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def __call__(self, item: I) -> R:
        fut: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, fut))
        if self._busy < self._lanes:
            self._busy += 1
            task = asyncio.create_task(self._drain())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        # The caller's cancellation leaves the batch running: the others in it still
        # want their answers, and a statement half sent cannot be taken back.
        return await asyncio.shield(fut)

    async def _batch_of_one(self, item: I) -> R:
        return (await self._batch([item]))[0]

    async def _drain(self) -> None:
        try:
            while self._queue:
                taken, self._queue = self._queue[: self._max], self._queue[self._max :]
                await self._send(taken)
        finally:
            self._busy -= 1

    async def _send(self, taken: list[tuple[I, asyncio.Future[R]]]) -> None:
        try:
            if len(taken) == 1:
                await self._settle(*taken[0])
                return
            try:
                results = await self._batch([i for i, _ in taken])
            except Unavailable:
                raise
            except Exception:  # noqa: BLE001 - one item's fault: each gets its own answer
                for item, fut in taken:
                    await self._settle(item, fut)
                return
            for (_, fut), result in zip(taken, results, strict=True):
                if not fut.done():
                    fut.set_result(result)
        except BaseException as exc:  # Unavailable, or the store closing under us
            failure = (
                exc
                if isinstance(exc, Exception)
                else Unavailable("the store is closing", code="store_unavailable")
            )
            for _, fut in taken:
                if not fut.done():
                    fut.set_exception(failure)
            if not isinstance(exc, Exception):
                raise

    async def _settle(self, item: I, fut: asyncio.Future[R]) -> None:
        try:
            result = await self._one(item)
        except Exception as exc:  # noqa: BLE001 - handed to its caller
            if not fut.done():
                fut.set_exception(exc)
        else:
            if not fut.done():
                fut.set_result(result)

    async def close(self) -> None:
        """Stop: batches in flight are cancelled and their callers told ``Unavailable``,
        as is everyone still waiting."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        queued, self._queue = self._queue, []
        for _, fut in queued:
            if not fut.done():
                fut.set_exception(Unavailable("the store is closing", code="store_unavailable"))
