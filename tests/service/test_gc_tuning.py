"""The hub's collector setting (``hub/process.py``): start-up objects frozen, bursts of
short-lived containers no longer set off collections, and garbage in reference cycles
still collected without anyone asking once the young generation fills."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

# In a fresh interpreter, tuned or not: 200 bursts of 1,000 short-lived dicts (a page of
# inbox JSON each), counting the collections they set off; then 50 reference cycles that
# each hold 1 MB, dropped, and long-lived containers up to the young generation's
# threshold. The cycles must be gone (their finalizers run) with no gc.collect().
_PROBE = textwrap.dedent(
    """
    import gc, json, sys, weakref
    from hub.process import GC_THRESHOLD, tune_gc

    frozen = tune_gc() if sys.argv[1] == "tuned" else 0
    runs = []
    gc.callbacks.append(lambda phase, info: runs.append(1) if phase == "stop" else None)
    for _ in range(200):
        burst = [{"id": j} for j in range(1000)]
        del burst
    during_bursts = len(runs)

    freed = []

    class Node:
        pass

    for i in range(50):
        a, b = Node(), Node()
        a.other, b.other, a.blob = b, a, bytearray(1 << 20)
        weakref.finalize(a, freed.append, i)
    del a, b
    kept = [[i] for i in range(gc.get_threshold()[0] + 100)]
    print(json.dumps({
        "frozen": frozen,
        "threshold": list(gc.get_threshold()),
        "expected": list(GC_THRESHOLD),
        "during_bursts": during_bursts,
        "freed": len(freed),
    }))
    """
)


def _run(mode: str) -> dict[str, int | list[int]]:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, check=True
    ).stdout
    result: dict[str, int | list[int]] = json.loads(out)
    return result


def test_tuned_collector_skips_bursts_and_still_collects_cycles() -> None:
    tuned = _run("tuned")
    assert tuned["threshold"] == tuned["expected"]
    assert isinstance(tuned["frozen"], int) and tuned["frozen"] > 1000  # modules' objects
    assert tuned["during_bursts"] == 0  # bursts come and go between collections
    assert tuned["freed"] == 50  # every cycle collected by the collector on its own
    untuned = _run("untuned")
    assert isinstance(untuned["during_bursts"], int) and untuned["during_bursts"] >= 100
    assert untuned["freed"] == 50
