"""``ledger verify``: recompute the whole tree from the events and check every checkpoint.

Each event is re-encoded and hashed and compared with its sealed leaf (which names
the event that was changed, deleted or inserted); every tile the recomputation fills
is compared with the stored one; at each checkpoint size the recomputed root must
equal the checkpoint's root and the checkpoint's signature must verify under a
certificate that chains to the trust anchors at the checkpoint's time. Verification
stops at the first inconsistency, in ledger order.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from cryptography import x509

from hub.ledger.checkpoint import chain_problem, signature_ok
from hub.ledger.leaf import event_leaf, genesis_leaf, leaves_for, void_leaf
from hub.ledger.merkle import HASH_SIZE, Frontier
from hub.ledger.reading import prefetched
from hub.ledger.tiles import TILE_WIDTH, TileBuilder
from hub.ports import LedgerStore
from hub.records import Checkpoint, LedgerEvent

_BATCH = 20_000
_WINDOW = 16  # how far a moved event is looked for

Progress = Callable[[int, int, float], None]  # (leaves done, leaves to do, seconds)


@dataclass(frozen=True, slots=True)
class Finding:
    code: str
    message: str
    seq: int | None = None


@dataclass(slots=True)
class Report:
    leaves: int = 0
    checkpoints: int = 0
    unsealed: int = 0
    seconds: float = 0.0
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings


class _Certs:
    """Certificates by key id, from the store, each chain checked once per validity window."""

    def __init__(self, store: LedgerStore, anchors: Sequence[x509.Certificate]) -> None:
        self.store = store
        self.anchors = list(anchors)
        self._chains: dict[str, list[x509.Certificate] | None] = {}

    async def problem(self, cp: Checkpoint) -> str | None:
        if cp.key_id not in self._chains:
            pem = await self.store.certificate(cp.key_id)
            self._chains[cp.key_id] = x509.load_pem_x509_certificates(pem.encode()) if pem else None
        chain = self._chains[cp.key_id]
        if chain is None:
            return f"no certificate is stored for key {cp.key_id}"
        if not signature_ok(cp, chain[0]):
            return "its signature does not verify"
        return chain_problem(chain, self.anchors, cp.at_us)


class _Verifier:
    def __init__(self, store: LedgerStore, anchors: Sequence[x509.Certificate]) -> None:
        self.store = store
        self.certs = _Certs(store, anchors)
        self.builder = TileBuilder(Frontier(), {})
        self.report = Report()
        self.pending: list[Checkpoint] = []
        self._tile_key = (-1, -1)
        self._tile = b""

    async def stored_leaf(self, index: int) -> bytes | None:
        key = (0, index // TILE_WIDTH)
        if key != self._tile_key:
            self._tile_key = key
            self._tile = (await self.store.tiles([key])).get(key, b"")
        off = (index % TILE_WIDTH) * HASH_SIZE
        leaf = self._tile[off : off + HASH_SIZE]
        return leaf if len(leaf) == HASH_SIZE else None

    async def genesis(self, recomputed: bytes) -> bool:
        if await self.stored_leaf(0) != recomputed:
            self.fail("genesis_altered", "the ledger's genesis record was altered", 0)
            return False
        self.builder.append(recomputed)
        return True

    async def reached(self, size: int) -> bool:
        """Check every checkpoint of exactly ``size`` leaves (the tree has that many now)."""
        while self.pending and self.pending[0].size == size:
            if not await self.checkpoint(self.pending.pop(0)):
                return False
            if not self.pending:
                self.pending = await self.store.checkpoints(size, 1000)
        return True

    async def walk(self, total: int, progress: Progress | None, started: float) -> None:
        """Leaves 1 .. total-1, a batch at a time; stop at the first inconsistency."""
        seq = 1
        batches = prefetched(self.store, 1, total, _BATCH)
        async for events, end in batches:
            leaves = leaves_for(events, seq, end)
            if await self.sealed_as(seq, leaves):  # the usual case: one comparison per batch
                while leaves:  # in runs that end where checkpoints are
                    cut = self.pending[0].size - seq if self.pending else len(leaves)
                    if cut <= 0:  # a checkpoint size the walk has passed: not a real one
                        self.fail("checkpoint_size", f"checkpoint {seq + cut} is out of order")
                        return
                    run, leaves = leaves[:cut], leaves[cut:]
                    self.builder.extend(run)
                    seq += len(run)
                    if not await self.reached(seq):
                        return
            elif not await self._leaf_by_leaf(events, seq, end):
                return
            else:
                seq = end
            if not await self.tiles():
                return
            self.report.leaves = seq
            if progress is not None:
                progress(seq, total, time.perf_counter() - started)

    async def _leaf_by_leaf(self, events: list[LedgerEvent], seq: int, end: int) -> bool:
        """Find and name the first difference in a batch that did not match as a whole."""
        i = 0
        while seq < end:
            event = events[i] if i < len(events) and events[i].seq == seq else None
            if event is not None:
                i += 1
            following = events[i] if i < len(events) else None
            ok = await self.leaf(seq, event, following)
            seq += 1
            if not (ok and await self.reached(seq)):
                return False
        return True

    async def sealed_as(self, start: int, leaves: list[bytes]) -> bool:
        """True when the stored level-0 tiles hold exactly ``leaves`` from ``start`` on."""
        first, last = start // TILE_WIDTH, (start + len(leaves) - 1) // TILE_WIDTH
        tiles = await self.store.tile_range(0, first, last)
        stored = b"".join(tiles.get(i, b"") for i in range(first, last + 1))
        off = (start % TILE_WIDTH) * HASH_SIZE
        return stored[off : off + len(leaves) * HASH_SIZE] == b"".join(leaves)

    def fail(self, code: str, message: str, seq: int | None = None) -> None:
        self.report.findings.append(Finding(code, message, seq))

    async def leaf(
        self, seq: int, event: LedgerEvent | None, following: LedgerEvent | None = None
    ) -> bool:
        recomputed = event_leaf(event) if event is not None else void_leaf(seq)
        stored = await self.stored_leaf(seq)
        if stored == recomputed:
            self.builder.append(recomputed)
            return True
        if stored is None:
            self.fail("leaf_missing", f"leaf {seq} is missing from the stored tree", seq)
        else:
            code, message = await self._classify(seq, stored, event, following)
            self.fail(code, message, seq)
        return False

    async def _is_sealed_as(self, event: LedgerEvent, seq: int) -> bool:
        return event_leaf(replace(event, seq=seq)) == await self.stored_leaf(seq)

    async def _classify(
        self, seq: int, stored: bytes, event: LedgerEvent | None, following: LedgerEvent | None
    ) -> tuple[str, str]:
        """Name what happened to the event at ``seq``, looking at its neighbours."""
        if event is None:
            return "event_deleted", f"event {seq} was sealed but is missing"
        if stored == void_leaf(seq):
            return "event_inserted", f"event {seq} was inserted where the sealed tree has none"
        for d in (*range(1, _WINDOW), *range(-1, -_WINDOW, -1)):
            if seq + d <= 0 or not await self._is_sealed_as(event, seq + d):
                continue
            renumbered = (
                d == 1
                and following is not None
                and following.seq == seq + 1
                and await self._is_sealed_as(following, seq + 2)
            )
            if renumbered:
                return "event_deleted", f"sealed event {seq} was deleted and later ones renumbered"
            return "event_reordered", f"event {seq} is the sealed event {seq + d}: reordered"
        if following is not None and event_leaf(replace(following, seq=seq)) == stored:
            return (
                "event_inserted",
                f"event {seq} was inserted; the sealed events from {seq} on were renumbered",
            )
        return "event_altered", f"event {seq} does not match its sealed leaf: it was changed"

    async def checkpoint(self, cp: Checkpoint) -> bool:
        problem = await self.certs.problem(cp)
        if problem is not None:
            self.fail("checkpoint_signature", f"checkpoint {cp.size}: {problem}")
            return False
        if self.builder.root() != cp.root:
            self.fail(
                "checkpoint_root",
                f"checkpoint {cp.size}: its root does not match the tree recomputed from "
                "the events (the stored tree or the checkpoint was altered)",
            )
            return False
        self.report.checkpoints += 1
        return True

    async def tiles(self) -> bool:
        built = self.builder.take_dirty()
        upper = [k for k in built if k[0] > 0]
        stored = await self.store.tiles(upper)
        for key in upper:
            if not stored.get(key, b"").startswith(built[key]):
                self.fail("tile_altered", f"stored tree tile {key[0]}/{key[1]} was altered")
                return False
        return True


async def verify_ledger(
    store: LedgerStore,
    anchors: Sequence[x509.Certificate],
    progress: Progress | None = None,
) -> Report:
    started = time.perf_counter()
    v = _Verifier(store, anchors)
    latest = await store.latest_checkpoint()
    genesis = await store.ledger_genesis(None, 0)
    if latest is None:
        return v.report
    if genesis is None:
        v.fail("genesis_missing", "the ledger's genesis record is missing", 0)
        return v.report
    v.pending = await store.checkpoints(0, 1000)
    if await v.genesis(genesis_leaf(*genesis)) and await v.reached(1):
        v.report.leaves = 1
        await v.walk(latest.size, progress, started)
    v.report.unsealed = max(0, await store.seal_barrier() + 1 - latest.size)
    v.report.seconds = time.perf_counter() - started
    return v.report
