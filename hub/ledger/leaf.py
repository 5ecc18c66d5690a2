"""What a ledger leaf is, byte for byte.

Leaf 0 is the genesis record (the ledger's origin and creation time); leaf ``i`` is
the event with sequence number ``i``, or a *void* record when that sequence number
was never used (a rolled-back transaction on PostgreSQL). Each field is written as a
4-byte big-endian length and its UTF-8 bytes (0xFFFFFFFF for an absent field), so the
encoding is unambiguous and simple to reimplement in any language (docs/ledger.md).
Event ``data`` is hashed as the stored JSON text, never re-serialised.
"""

from __future__ import annotations

from hub.ledger.merkle import leaf_hash
from hub.records import LedgerEvent

_ABSENT = b"\xff\xff\xff\xff"


def encode(*fields: str | int | None) -> bytes:
    out = bytearray()
    for f in fields:
        if f is None:
            out += _ABSENT
            continue
        b = f.encode() if isinstance(f, str) else str(f).encode()
        out += len(b).to_bytes(4, "big")
        out += b
    return bytes(out)


def genesis_bytes(origin: str, created_us: int) -> bytes:
    return encode("lienthong-genesis/1", origin, created_us)


def event_bytes(e: LedgerEvent) -> bytes:
    return encode(
        "lienthong-event/1",
        e.seq,
        e.type,
        e.at_us,
        e.package_id,
        e.delivery_id,
        e.organ,
        e.actor,
        e.data_json,
    )


def void_bytes(seq: int) -> bytes:
    return encode("lienthong-void/1", seq)


def event_leaf(e: LedgerEvent) -> bytes:
    return leaf_hash(event_bytes(e))


def void_leaf(seq: int) -> bytes:
    return leaf_hash(void_bytes(seq))


def genesis_leaf(origin: str, created_us: int) -> bytes:
    return leaf_hash(genesis_bytes(origin, created_us))
