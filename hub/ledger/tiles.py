"""The tree at rest: tiles of 256 hashes, in the manner of transparency-log tiles.

A tile at level ``L`` holds up to 256 consecutive hashes of perfect subtrees of
height ``8*L``: level 0 holds leaf hashes, level 1 the roots of each 256 leaves, and
so on. Any perfect aligned subtree is then at most 255 hash operations away from
one stored tile, so proofs over tens of millions of events read a handful of rows.
Only the right-hand tile of each level is ever rewritten (it grows until full).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence

from hub.errors import LedgerCorrupt
from hub.ledger.merkle import HASH_SIZE, Frontier, perfect_root

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT
TILE_BYTES = TILE_WIDTH * HASH_SIZE

TileKey = tuple[int, int]  # (level, index)
TileLoader = Callable[[Sequence[TileKey]], Awaitable[dict[TileKey, bytes]]]


class TileSource:
    """Perfect-subtree hashes from stored tiles (a ``merkle.SubtreeSource``), cached per use."""

    def __init__(self, load: TileLoader, overlay: Mapping[TileKey, bytes] | None = None) -> None:
        self._load = load
        self._cache: dict[TileKey, bytes] = dict(overlay or {})

    async def tile(self, key: TileKey) -> bytes:
        t = self._cache.get(key)
        if t is None:
            t = (await self._load([key])).get(key, b"")
            self._cache[key] = t
        return t

    async def __call__(self, height: int, index: int) -> bytes:
        level, rest = divmod(height, TILE_HEIGHT)
        first = index << rest
        tile = await self.tile((level, first // TILE_WIDTH))
        start = (first % TILE_WIDTH) * HASH_SIZE
        end = start + (HASH_SIZE << rest)
        if len(tile) < end:
            raise LedgerCorrupt(
                f"ledger tile {level}/{first // TILE_WIDTH} is too short for subtree "
                f"{height}/{index}",
                code="ledger_tile_missing",
            )
        return perfect_root([tile[i : i + HASH_SIZE] for i in range(start, end, HASH_SIZE)])

    async def leaf(self, index: int) -> bytes:
        return await self(0, index)


class TileBuilder:
    """Appends leaf hashes, keeping the frontier and the tiles they fill."""

    def __init__(self, frontier: Frontier, edge: dict[TileKey, bytearray]) -> None:
        self.frontier = frontier
        self._tiles = edge
        self._dirty: set[TileKey] = set()

    @classmethod
    async def restore(cls, size: int, load: TileLoader) -> TileBuilder:
        """Pick up a tree of ``size`` leaves from its stored tiles."""
        source = TileSource(load)
        subtrees: list[tuple[int, bytes]] = []
        start = 0
        for height in range(size.bit_length() - 1, -1, -1):
            if size >> height & 1:
                subtrees.append((height, await source(height, start >> height)))
                start += 1 << height
        edge: dict[TileKey, bytearray] = {}
        level = 0
        while size >> (TILE_HEIGHT * level):
            count = size >> (TILE_HEIGHT * level)
            if count % TILE_WIDTH:
                key = (level, count // TILE_WIDTH)
                tile = await source.tile(key)
                edge[key] = bytearray(tile[: (count % TILE_WIDTH) * HASH_SIZE])
            level += 1
        return cls(Frontier.restore(size, subtrees), edge)

    @property
    def size(self) -> int:
        return self.frontier.size

    def root(self) -> bytes:
        return self.frontier.root()

    def append(self, h: bytes) -> None:
        self._put(0, self.frontier.size, h)
        for height, index, sub in self.frontier.append(h):
            if height % TILE_HEIGHT == 0:
                self._put(height // TILE_HEIGHT, index, sub)

    def extend(self, hashes: Sequence[bytes]) -> None:
        """``append`` each hash in turn; whole aligned tiles of leaves go in at once (the
        tile's bytes joined, its root hashed level by level, the frontier told of one
        subtree): the same tree and tiles, for a third of the per-leaf cost."""
        i, n = 0, len(hashes)
        while i < n:
            size = self.frontier.size
            if size % TILE_WIDTH or n - i < TILE_WIDTH:
                self.append(hashes[i])
                i += 1
                continue
            block = hashes[i : i + TILE_WIDTH]
            key = (0, size // TILE_WIDTH)
            self._tiles.setdefault(key, bytearray()).extend(b"".join(block))
            self._dirty.add(key)
            for height, index, sub in self.frontier.append_subtree(
                TILE_HEIGHT, perfect_root(block)
            ):
                if height % TILE_HEIGHT == 0:
                    self._put(height // TILE_HEIGHT, index, sub)
            i += TILE_WIDTH

    def _put(self, level: int, index: int, h: bytes) -> None:
        key = (level, index // TILE_WIDTH)
        tile = self._tiles.setdefault(key, bytearray())
        tile += h
        self._dirty.add(key)

    def take_dirty(self) -> dict[TileKey, bytes]:
        """Tiles changed since the last call; full ones are then dropped from memory."""
        out = {k: bytes(self._tiles[k]) for k in sorted(self._dirty)}
        for k, t in out.items():
            if len(t) == TILE_BYTES:
                del self._tiles[k]
        self._dirty.clear()
        return out
