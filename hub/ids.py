"""Random identifiers (package, delivery, outbox and request ids) without a system call
each: 16 bytes at a time from a 4 KB read of the kernel's generator. A forked child
starts with an empty buffer, so two processes never hand out the same bytes.

Identifiers only: secrets (tokens, keys, nonces) come from ``secrets`` directly.
"""

from __future__ import annotations

import os
import threading

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


def new_hex() -> str:
    """A random (version 4) UUID as 32 hex digits: RFC 9562's version and variant bits
    set on the random bytes, as ``uuid.UUID(bytes=..., version=4)`` sets them, in a third
    of its time (several ids per package and per request)."""
    b = bytearray(_random16())
    b[6] = (b[6] & 0x0F) | 0x40  # version 4
    b[8] = (b[8] & 0x3F) | 0x80  # variant 10 (RFC 4122 / 9562)
    return b.hex()


def new_id() -> str:
    """A random (version 4) UUID in its usual text form."""
    h = new_hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
