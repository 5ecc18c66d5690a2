"""Inclusion and consistency proofs served from the stored tiles, as JSON-ready records."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from hub.errors import NotFound
from hub.ledger.merkle import consistency_path, inclusion_path
from hub.ledger.tiles import TileSource
from hub.ports import LedgerStore
from hub.records import Checkpoint


def b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def checkpoint_json(cp: Checkpoint) -> dict[str, Any]:
    return {
        "origin": cp.origin,
        "size": cp.size,
        "root": b64(cp.root),
        "at_us": cp.at_us,
        "key_id": cp.key_id,
        "signature": b64(cp.signature),
    }


def checkpoint_from_json(d: dict[str, Any]) -> Checkpoint:
    return Checkpoint(
        origin=str(d["origin"]),
        size=int(d["size"]),
        root=base64.b64decode(d["root"], validate=True),
        at_us=int(d["at_us"]),
        key_id=str(d["key_id"]),
        signature=base64.b64decode(d["signature"], validate=True),
    )


@dataclass(frozen=True, slots=True)
class InclusionProof:
    seq: int
    leaf: bytes
    path: list[bytes]
    checkpoint: Checkpoint

    def as_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "leaf_hash": b64(self.leaf),
            "path": [b64(p) for p in self.path],
            "checkpoint": checkpoint_json(self.checkpoint),
        }


async def _checkpoint(store: LedgerStore, size: int | None, at_least: int) -> Checkpoint:
    if size is None:
        cp = await store.latest_checkpoint()
        if cp is None or cp.size < at_least:
            raise NotFound("not sealed yet: wait for the next checkpoint", code="not_sealed")
        return cp
    cp = await store.checkpoint_at_least(size)
    if cp is None or cp.size != size:
        raise NotFound(f"no checkpoint of size {size}", code="checkpoint_not_found")
    if size < at_least:
        raise NotFound(f"the checkpoint of size {size} does not cover it", code="not_sealed")
    return cp


async def inclusion(store: LedgerStore, seq: int, size: int | None = None) -> InclusionProof:
    """Prove that event ``seq`` is leaf ``seq`` of a checkpoint (the latest by default)."""
    if seq < 0:
        raise NotFound(f"no event {seq}", code="event_not_found")
    cp = await _checkpoint(store, size, seq + 1)
    source = TileSource(store.tiles)
    path = await inclusion_path(source, seq, cp.size)
    return InclusionProof(seq, await source.leaf(seq), path, cp)


async def consistency(store: LedgerStore, old: int, new: int | None = None) -> dict[str, Any]:
    """Prove that checkpoint ``old`` is a prefix of checkpoint ``new`` (the latest by default)."""
    old_cp = await _checkpoint(store, old, 1)
    new_cp = await _checkpoint(store, new, old)
    path = await consistency_path(TileSource(store.tiles), old_cp.size, new_cp.size)
    return {
        "old": checkpoint_json(old_cp),
        "new": checkpoint_json(new_cp),
        "path": [b64(p) for p in path],
    }
