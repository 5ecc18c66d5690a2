"""Tiles: a tree rebuilt from its stored tiles gives the same roots and proofs."""

from __future__ import annotations

import pytest

from hub.errors import LedgerCorrupt
from hub.ledger.merkle import (
    Frontier,
    hashes_from,
    inclusion_path,
    list_source,
    root_of,
)
from hub.ledger.tiles import TileBuilder, TileKey, TileSource


class MemoryTiles:
    def __init__(self) -> None:
        self.rows: dict[TileKey, bytes] = {}

    async def load(self, keys: list[TileKey]) -> dict[TileKey, bytes]:  # type: ignore[override]
        return {k: self.rows[k] for k in keys if k in self.rows}


async def test_restored_builders_continue_exactly_where_they_stopped() -> None:
    store = MemoryTiles()
    leaves = hashes_from([i.to_bytes(4, "big") for i in range(70_000)])
    builder = TileBuilder(Frontier(), {})
    cuts = [1, 255, 256, 257, 65_535, 65_536, 65_537, 70_000]
    done = 0
    for cut in cuts:
        builder = await TileBuilder.restore(done, store.load)
        for h in leaves[done:cut]:
            builder.append(h)
        store.rows.update(builder.take_dirty())
        done = cut
        assert builder.root() == root_of(leaves[:cut]), cut
    assert (2, 0) in store.rows  # 65,536 leaves made one level-2 entry


async def test_proofs_from_tiles_equal_proofs_from_the_leaves() -> None:
    store = MemoryTiles()
    leaves = hashes_from([i.to_bytes(4, "big") for i in range(3_000)])
    builder = TileBuilder(Frontier(), {})
    for h in leaves:
        builder.append(h)
    store.rows.update(builder.take_dirty())
    tiles, mem = TileSource(store.load), list_source(leaves)
    for m in (0, 255, 256, 1_024, 2_999):
        assert await inclusion_path(tiles, m, 3_000) == await inclusion_path(mem, m, 3_000)


async def test_a_missing_tile_is_reported_not_guessed() -> None:
    store = MemoryTiles()
    with pytest.raises(LedgerCorrupt, match="too short"):
        await TileSource(store.load)(0, 5)


@pytest.mark.parametrize("start", [0, 1, 255, 256, 300, 65_280, 65_536])
async def test_extending_in_bulk_builds_the_same_tiles_as_leaf_by_leaf(start: int) -> None:
    """Whole aligned tiles go in at once; the tree, the tiles written and the root are
    those of appending every leaf, from any starting size and in uneven runs."""
    leaves = hashes_from([i.to_bytes(4, "big") for i in range(start + 78_000)])
    one, bulk = MemoryTiles(), MemoryTiles()
    a, b = TileBuilder(Frontier(), {}), TileBuilder(Frontier(), {})
    for h in leaves[:start]:
        a.append(h)
        b.append(h)
    one.rows.update(a.take_dirty())
    bulk.rows.update(b.take_dirty())
    done = start
    for run in (1, 255, 513, 20_000, 256, 49_231, 0, 7_744):
        a = await TileBuilder.restore(done, one.load)
        b = await TileBuilder.restore(done, bulk.load)
        for h in leaves[done : done + run]:
            a.append(h)
        b.extend(leaves[done : done + run])
        assert b.size == a.size == done + run and b.root() == a.root(), run
        dirty_a, dirty_b = a.take_dirty(), b.take_dirty()
        assert dirty_b == dirty_a, run
        one.rows.update(dirty_a)
        bulk.rows.update(dirty_b)
        done += run
    assert bulk.rows == one.rows
    assert b.root() == root_of(leaves[:done])


def test_a_subtree_is_only_appended_where_it_is_aligned() -> None:
    f = Frontier()
    f.append(b"\x00" * 32)
    with pytest.raises(ValueError, match="cannot start at leaf 1"):
        f.append_subtree(8, b"\x01" * 32)
