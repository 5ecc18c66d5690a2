"""Process-wide settings a hub process applies once, before it serves.

**The allocator.** glibc's malloc serves a large allocation from ``mmap`` only while it
is above a *dynamic* threshold that rises (up to 32 MB) each time such a block is freed.
After the first large package, the multi-megabyte buffers of the next one (libxml2's
text nodes, libxmlsec1's canonicalisation output) then come from the heap, where freed
memory stays mapped and a growing buffer's ``realloc`` may need the old and the new
block at once. Fixing the threshold keeps every buffer above it in its own mapping: it
grows with ``mremap`` (no copy) and is returned to the system the moment it is freed, so
a 20 MB package's peak is its working set and no more. Smaller allocations are
unaffected.

**The cyclic garbage collector.** With CPython's default thresholds (700, 10, 10) a
loaded hub ran about 250 collections a second: the youngest generation filled within
every burst of short-lived containers (a page of inbox JSON, a package's model) and was
searched while those were still alive, and each full collection walked the ~90,000
objects that live as long as the process (modules, routes, the directory). Together
that took about 0.2 ms of the event loop's CPU per package (8%), in pauses of up to
40 ms. Once the hub is up, the objects it started with are frozen (left out of every
collection) and the youngest generation holds 10,000 objects before it is searched:
bursts come and go between collections, and collections take ~0.01 ms per package.
Garbage in reference cycles is still collected; it waits a little longer.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import sys

_M_MMAP_THRESHOLD = -3  # glibc <malloc.h>
MMAP_THRESHOLD = 128 * 1024  # glibc's own initial value, kept fixed
# Objects the young generation holds before it is searched; then how many searches of
# each generation before the next one is searched too (CPython's own: 700, 10, 10).
GC_THRESHOLD = (10_000, 20, 50)


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


def tune_gc(threshold: tuple[int, int, int] = GC_THRESHOLD) -> int:
    """Freeze what the process holds now and raise the collector's thresholds; call it
    once the hub is up. Returns how many objects were frozen."""
    gc.collect()  # what is garbage now is not frozen with the rest
    gc.freeze()
    gc.set_threshold(*threshold)
    return gc.get_freeze_count()
