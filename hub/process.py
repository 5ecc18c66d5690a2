"""Process-wide settings a hub process applies once, before it serves.

glibc's malloc serves a large allocation from ``mmap`` only while it is above a
*dynamic* threshold that rises (up to 32 MB) each time such a block is freed. After the
first large package, the multi-megabyte buffers of the next one (libxml2's text nodes,
libxmlsec1's canonicalisation output) then come from the heap, where freed memory stays
mapped and a growing buffer's ``realloc`` may need the old and the new block at once.
Fixing the threshold keeps every buffer above it in its own mapping: it grows with
``mremap`` (no copy) and is returned to the system the moment it is freed, so a 20 MB
package's peak is its working set and no more. Smaller allocations are unaffected.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_MMAP_THRESHOLD = -3  # glibc <malloc.h>
MMAP_THRESHOLD = 128 * 1024  # glibc's own initial value, kept fixed


def tune_allocator(threshold: int = MMAP_THRESHOLD) -> bool:
    """Fix glibc's mmap threshold; False where the C library is not glibc."""
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    libc = ctypes.CDLL(name)
    mallopt = getattr(libc, "mallopt", None)  # glibc has it; musl does not
    if mallopt is None:
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, threshold))
