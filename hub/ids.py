"""Random identifiers (package, delivery, outbox and request ids) without a system call
each: 16 bytes at a time from a 4 KB read of the kernel's generator. A forked child
starts with an empty buffer, so two processes never hand out the same bytes.

Identifiers only: secrets (tokens, keys, nonces) come from ``secrets`` directly.
"""

from __future__ import annotations

import os
import threading
import uuid

_CHUNK = 4096
_lock = threading.Lock()
_buf = b""
_pos = 0


def _forget() -> None:
    global _buf, _pos
    _buf, _pos = b"", 0


os.register_at_fork(after_in_child=_forget)


def _random16() -> bytes:
    global _buf, _pos  # noqa: PLW0603 - the module's one buffer
    with _lock:
        if _pos + 16 > len(_buf):
            _buf, _pos = os.urandom(_CHUNK), 0
        b = _buf[_pos : _pos + 16]
        _pos += 16
    return b


def new_id() -> str:
    """A random (version 4) UUID in its usual text form."""
    return str(uuid.UUID(bytes=_random16(), version=4))


def new_hex() -> str:
    """A random (version 4) UUID as 32 hex digits."""
    return uuid.UUID(bytes=_random16(), version=4).hex
