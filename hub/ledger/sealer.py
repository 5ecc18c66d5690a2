"""The sealer: appends new ledger events to the Merkle tree and signs checkpoints.

One round: take the seal lock (exactly one sealer across hub processes), find the
highest event sequence no open transaction can still add below (the barrier), hash
each event from the last checkpoint up to it (a sequence number never used becomes a
*void* leaf, so leaf index = sequence number always holds), and write the grown tiles
and a signed checkpoint in one transaction, in steps of at most ``checkpoint_size``
leaves.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from hub.errors import HubError
from hub.ledger.checkpoint import CheckpointSigner
from hub.ledger.leaf import genesis_leaf, leaves_for
from hub.ledger.reading import prefetched
from hub.ledger.tiles import TileBuilder
from hub.ports import Clock, LedgerStore
from hub.records import Checkpoint

log = structlog.get_logger(__name__)

# A round runs on the event loop beside the requests it seals: events are read and hashed
# in slices, the loop serving requests between them, so a backlog (after a restart, or a
# busy second) never holds it for more than one slice (~2,000 reads, ~500 leaves).
_READ_BATCH = 2_000
_HASH_SLICE = 512


class Sealer:
    def __init__(
        self,
        store: LedgerStore,
        signer: CheckpointSigner,
        clock: Clock,
        *,
        origin: str,
        interval_s: float,
        checkpoint_size: int,
    ) -> None:
        self.store = store
        self.signer = signer
        self.clock = clock
        self.origin = origin
        self.interval_s = interval_s
        self.checkpoint_size = max(1, checkpoint_size)
        self._cert_pem = "".join(signer.chain_pem())
        self.sealed_leaves = 0  # this process's total, for metrics and the benchmark
        self._genesis: tuple[str, int] | None = None  # never changes once written

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            with contextlib.suppress(HubError):
                await self.seal_once()

    async def seal_once(self) -> Checkpoint | None:
        """One round; the last checkpoint written, or None when there was nothing to do."""
        async with self.store.seal_lock() as leader:
            if not leader:
                return None
            return await self._seal()

    async def _seal(self) -> Checkpoint | None:
        latest = await self.store.latest_checkpoint()
        size = latest.size if latest else 0
        target = await self.store.seal_barrier() + 1  # leaves 0 (genesis) .. barrier
        if target <= size:
            return None
        if self._genesis is None:  # one write, on the first round that seals anything
            self._genesis = await self.store.ledger_genesis(self.origin, self.clock.now_us())
        assert self._genesis is not None  # written just now if it was missing
        origin, created_us = self._genesis
        builder = await TileBuilder.restore(size, self.store.tiles)
        if size == 0:
            builder.append(genesis_leaf(origin, created_us))
        checkpoint = None
        while builder.size < target:
            voids = await self._append(builder, min(target, builder.size + self.checkpoint_size))
            checkpoint = self.signer.sign(origin, builder.size, builder.root(), self.clock.now_us())
            await self.store.put_seal(builder.take_dirty(), checkpoint, self._cert_pem)
            self.sealed_leaves += checkpoint.size - size
            log.info(
                "ledger_sealed",
                size=checkpoint.size,
                added=checkpoint.size - size,
                voids=voids,
                root=checkpoint.root.hex(),
            )
            size = checkpoint.size
        return checkpoint

    async def _append(self, builder: TileBuilder, end: int) -> int:
        """Append the leaves for sequence numbers [builder.size, end); return the voids."""
        voids = 0
        async for events, stop in prefetched(self.store, builder.size, end, _READ_BATCH):
            for i in range(0, max(len(events), 1), _HASH_SLICE):
                chunk = events[i : i + _HASH_SLICE]
                last = i + _HASH_SLICE >= len(events)
                upto = stop if last else chunk[-1].seq + 1
                start = builder.size
                builder.extend(leaves_for(chunk, start, upto))
                voids += (upto - start) - len(chunk)
                if not last:
                    await asyncio.sleep(0)  # let waiting requests run
        return voids
