"""Reading the events to hash in batches, the next batch read while this one is hashed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from hub.ports import LedgerStore
from hub.records import LedgerEvent


async def prefetched(
    store: LedgerStore, start: int, end: int, batch: int
) -> AsyncIterator[tuple[list[LedgerEvent], int]]:
    """Events of sequence numbers [start, end) in batches, each with the sequence number it
    covers up to (exclusive); the next batch is read while the caller hashes this one."""
    pending = asyncio.ensure_future(store.ledger_events(start - 1, end - 1, batch))
    try:
        while True:
            events = await pending
            stop = events[-1].seq + 1 if len(events) == batch else end
            if stop < end:
                pending = asyncio.ensure_future(store.ledger_events(stop - 1, end - 1, batch))
            yield events, stop
            if stop >= end:
                return
    finally:
        if not pending.done():
            pending.cancel()
