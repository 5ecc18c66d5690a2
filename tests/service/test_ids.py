"""Buffered random identifiers: well-formed, distinct, and never shared with a fork."""

from __future__ import annotations

import functools
import operator
import os
import uuid

from hub.ids import new_hex, new_id


def test_identifiers_are_version_4_uuids_and_do_not_repeat() -> None:
    ids = [new_id() for _ in range(5000)]  # more than one buffer's worth
    assert len(set(ids)) == len(ids)
    for i in ids[:300]:
        u = uuid.UUID(i)
        assert str(u) == i and u.version == 4 and u.variant == uuid.RFC_4122
    hexes = [new_hex() for _ in range(300)]
    for h in hexes:
        u = uuid.UUID(h)
        assert u.hex == h and u.version == 4 and u.variant == uuid.RFC_4122
    # Only the version and variant bits are fixed: every other bit takes both values.
    bits = [int(h, 16) for h in hexes]
    fixed = (0xF << 76) | (0x3 << 62)
    assert all(b & fixed == (0x4 << 76) | (0x2 << 62) for b in bits)
    varying = ~fixed & ((1 << 128) - 1)
    assert functools.reduce(operator.or_, bits) & varying == varying
    assert functools.reduce(operator.and_, bits) & varying == 0


def test_a_forked_child_does_not_hand_out_its_parents_next_ids() -> None:
    new_id()  # the parent's buffer now holds unread bytes
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next ids and leave at once
        os.close(r)
        os.write(w, ",".join(new_id() for _ in range(3)).encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        child = f.read().split(",")
    os.waitpid(pid, 0)
    parent = [new_id() for _ in range(3)]
    assert len(child) == 3 and not set(child) & set(parent)
