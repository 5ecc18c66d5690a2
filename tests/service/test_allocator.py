"""The hub's allocator setting: large buffers are given back to the system when freed."""

from __future__ import annotations

import platform
import subprocess
import sys
import textwrap

import pytest

# In a fresh interpreter: free an 8 MB block (which, untuned, lifts glibc's mmap
# threshold to 8 MB), then allocate and free a 4 MB block 16 times, touching its pages.
# Tuned, each 4 MB block is its own mapping and is unmapped when freed, so the process
# ends where it started; untuned, they come from the heap, below a small block that
# pins its top, and stay resident after being freed.
_PROBE = textwrap.dedent(
    """
    import ctypes, sys
    from hub.process import tune_allocator
    tuned = tune_allocator() if sys.argv[1] == "tuned" else None
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]

    def rss():
        with open("/proc/self/status") as f:
            return int(next(x for x in f if x.startswith("VmRSS:")).split()[1]) * 1024

    big = libc.malloc(8 << 20)
    ctypes.memset(big, 1, 8 << 20)
    libc.free(big)
    before = rss()
    held = []
    for _ in range(16):
        p = libc.malloc(4 << 20)
        ctypes.memset(p, 1, 4 << 20)
        held.append(p)
    pin = libc.malloc(256 << 10)  # from the top of the heap, above them: it cannot shrink
    for p in held:
        libc.free(p)
    print(tuned, rss() - before)
    libc.free(pin)
    """
)


def _run(mode: str) -> tuple[str, int]:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, check=True
    ).stdout.split()
    return out[0], int(out[1])


@pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
    reason="the mmap threshold is a glibc setting",
)
def test_tuned_allocator_returns_large_blocks_when_freed() -> None:
    tuned, growth = _run("tuned")
    assert tuned == "True"
    assert growth < 4 << 20  # all 64 MB handed back (less than one block left resident)
    _, untuned_growth = _run("untuned")
    assert untuned_growth > 32 << 20  # the setting is what makes the difference here
