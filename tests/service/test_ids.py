"""Buffered random identifiers: well-formed, distinct, and never shared with a fork."""

from __future__ import annotations

import os
import uuid

from hub.ids import new_hex, new_id


def test_identifiers_are_version_4_uuids_and_do_not_repeat() -> None:
    ids = [new_id() for _ in range(5000)]  # more than one buffer's worth
    assert len(set(ids)) == len(ids)
    for i in ids[:300]:
        u = uuid.UUID(i)
        assert str(u) == i and u.version == 4 and u.variant == uuid.RFC_4122
    h = new_hex()
    assert len(h) == 32 and uuid.UUID(h).version == 4


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
