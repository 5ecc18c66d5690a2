"""The file blob store: the spool (large uploads written as they arrive, adopted by
rename) and the flush that makes writes durable, grouped or one by one."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from adapters.blobs import FileBlobStore, FlushGroup
from hub.config import load
from hub.errors import ConfigError, NotFound, Unavailable
from tests.logged import record_logs


async def test_a_spool_becomes_the_blob_and_a_duplicate_spool_disappears(tmp_path: Path) -> None:
    blobs = FileBlobStore(tmp_path)
    data = os.urandom(700_000)
    sha = hashlib.sha256(data).hexdigest()
    spools = []
    for _ in range(2):
        spool = blobs.spool()
        for i in range(0, len(data), 65536):
            await spool.write(data[i : i + 65536])
        await spool.finish()
        assert spool.size == len(data)
        assert await blobs.adopt(sha, spool) == sha
        spool.discard()  # what the HTTP face does afterwards: harmless once adopted
        spools.append(spool.path)
    assert await blobs.get(sha) == data
    assert b"".join([c async for c in blobs.stream(sha)]) == data
    assert not any(p.exists() for p in spools)
    assert list((tmp_path / ".spool").iterdir()) == []
    with pytest.raises(NotFound):
        await anext(blobs.stream("0" * 64))


async def test_stale_spools_are_swept_and_fresh_ones_kept(tmp_path: Path) -> None:
    blobs = FileBlobStore(tmp_path)
    stale, fresh = blobs.spool(), blobs.spool()
    for spool in (stale, fresh):
        await spool.write(b"partial")
    old = time.time() - 2 * 3600
    os.utime(stale.path, (old, old))
    FileBlobStore(tmp_path)  # a restart after a crash
    assert not stale.path.exists()
    assert fresh.path.exists(), "an upload another process may be writing was removed"
    fresh.discard()
    stale.discard()
    assert not fresh.path.exists()


@pytest.mark.parametrize("size", [0, 1, 10_240, 64 * 1024, 64 * 1024 + 1, 300_000])
async def test_put_then_get_gives_the_bytes_back_at_every_size(tmp_path: Path, size: int) -> None:
    blobs = FileBlobStore(tmp_path)
    data = os.urandom(size)
    sha = hashlib.sha256(data).hexdigest()
    assert await blobs.put(sha, data) == sha
    assert await blobs.get(sha) == data  # on the loop up to 64 KB, in a thread above
    assert blobs.local_path(sha).read_bytes() == data
    with pytest.raises(NotFound) as missing:
        await blobs.get("f" * 64)
    assert missing.value.error_code == "blob_missing"
    with pytest.raises(ValueError):
        await blobs.get("../" + sha[3:])


class _Flushes:
    """A flush that records each run and can be held or made to fail."""

    def __init__(self, fail: frozenset[int] = frozenset()) -> None:
        self.runs = 0
        self.release = threading.Event()
        self.fail = fail  # which runs fail (1 is the first)

    def __call__(self) -> None:
        self.release.wait(5)
        self.runs += 1
        if self.runs in self.fail:
            raise OSError(5, "Input/output error")


async def _running(group: FlushGroup) -> asyncio.Task[None]:
    """A flush started and held (its flush object's ``release`` is clear)."""
    task = asyncio.create_task(group.flushed())
    await asyncio.sleep(0.01)
    return task


async def test_writes_finished_while_a_flush_runs_share_the_next_flush() -> None:
    flushes = _Flushes()
    group = FlushGroup(flushes, ThreadPoolExecutor(1))
    first = await _running(group)
    # Written after that flush began: it may not cover them, so they wait for another.
    later = [asyncio.create_task(group.flushed()) for _ in range(20)]
    await asyncio.sleep(0.01)
    assert not first.done() and not any(t.done() for t in later)
    flushes.release.set()
    await asyncio.gather(first, *later)
    assert flushes.runs == 2 and group.flushes == 2  # 21 callers, two flushes


async def test_a_failed_flush_fails_its_writers_and_the_next_one_starts_afresh() -> None:
    flushes = _Flushes(fail=frozenset({2}))
    group = FlushGroup(flushes, ThreadPoolExecutor(1))
    first = await _running(group)
    failing = [asyncio.create_task(group.flushed()) for _ in range(2)]
    flushes.release.set()
    await first
    results = await asyncio.gather(*failing, return_exceptions=True)
    assert [type(r) for r in results] == [OSError, OSError]
    await group.flushed()  # not failed by the one before
    assert flushes.runs == 3


async def test_a_writer_that_gives_up_does_not_cancel_the_flush_others_wait_on() -> None:
    flushes = _Flushes()
    group = FlushGroup(flushes, ThreadPoolExecutor(1))
    first = await _running(group)
    quitter = asyncio.create_task(group.flushed())  # these two share the next flush
    stayer = asyncio.create_task(group.flushed())
    await asyncio.sleep(0.01)
    quitter.cancel()
    flushes.release.set()
    await asyncio.gather(first, stayer)
    assert quitter.cancelled() and flushes.runs == 2


@pytest.mark.parametrize("flush", ["group", "each"])
async def test_both_flush_modes_keep_every_blob_whole(tmp_path: Path, flush: str) -> None:
    blobs = FileBlobStore(tmp_path, flush=flush)
    expected = "group" if flush == "group" and sys.platform == "linux" else "each"
    assert blobs.flush == expected
    data = [os.urandom(10_240) for _ in range(30)]
    shas = [hashlib.sha256(d).hexdigest() for d in data]
    await asyncio.gather(*(blobs.put(s, d) for s, d in zip(shas, data, strict=True)))
    await blobs.put(shas[0], data[0])  # already there: still answered once flushed
    # The same new bytes put by several writers at once: one whole file.
    same = os.urandom(10_240)
    same_sha = hashlib.sha256(same).hexdigest()
    await asyncio.gather(*(blobs.put(same_sha, bytes(same)) for _ in range(5)))
    assert await blobs.get(same_sha) == same
    assert [await blobs.get(s) for s in shas] == data
    assert not [n for _d, _s, names in os.walk(tmp_path) for n in names if n.endswith(".tmp")]
    with pytest.raises(ValueError):
        FileBlobStore(tmp_path, flush="never")


def test_the_flush_mode_is_configured_and_checked_at_start() -> None:
    assert load(None, env={}).blobs.flush == "group"
    assert load(None, env={"LIENTHONG_BLOBS_FLUSH": "each"}).blobs.flush == "each"
    with pytest.raises(ConfigError, match=r"\[blobs\] flush = 'never'"):
        load(None, env={"LIENTHONG_BLOBS_FLUSH": "never"})


async def test_a_write_that_fails_leaves_no_part_behind(tmp_path: Path) -> None:
    """A disk that fails mid-write (full, say): the error reaches the writer and no
    half-written temporary file stays in the blob directory."""
    blobs = FileBlobStore(tmp_path, flush="each")

    class _FullDisk:
        mode = "each"

        def file(self, fd: int) -> None:
            raise OSError(28, "No space left on device")

        def names(self, *directories: str) -> None:
            pass

        async def settled(self) -> None:
            return None

    blobs._durable = _FullDisk()  # type: ignore[assignment]
    data = os.urandom(1000)
    sha = hashlib.sha256(data).hexdigest()
    with pytest.raises(Unavailable, match="No space left") as err:
        await blobs.put(sha, data)
    assert err.value.error_code == "blob_store_full"
    assert not await blobs.exists(sha)
    assert not [n for _d, _s, names in os.walk(tmp_path) for n in names]


# ------------------------------------------------------------------ a failing volume


@pytest.fixture
def small_volume(tmp_path: Path) -> Iterator[Path]:
    """A real 1 MiB file system (tmpfs), to fill up: needs the right to mount (root)."""
    vol = tmp_path / "vol"
    vol.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(vol)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield vol
    finally:
        subprocess.run(["umount", "-l", str(vol)], check=False)


async def test_a_full_volume_is_a_503_and_leaves_no_part_behind(small_volume: Path) -> None:
    blobs = FileBlobStore(small_volume, flush="each")
    small = os.urandom(100_000)
    assert await blobs.put(hashlib.sha256(small).hexdigest(), small)
    big = os.urandom(2 << 20)  # more than the volume holds
    with pytest.raises(Unavailable) as err:
        await blobs.put(hashlib.sha256(big).hexdigest(), big)
    assert err.value.error_code == "blob_store_full" and err.value.http_status == 503
    spool = blobs.spool()
    with pytest.raises(Unavailable) as err:
        for i in range(0, len(big), 65536):
            await spool.write(big[i : i + 65536])
    assert err.value.error_code == "blob_store_full"
    spool.discard()
    # What was stored before is intact; nothing half-written stays to fill the disk more.
    assert await blobs.get(hashlib.sha256(small).hexdigest()) == small
    leftovers = [n for _d, _s, names in os.walk(small_volume) for n in names]
    assert leftovers == [hashlib.sha256(small).hexdigest()]


async def test_below_its_reserve_the_store_refuses_new_packages(tmp_path: Path) -> None:
    blobs = FileBlobStore(tmp_path)
    free = blobs.free_bytes()
    assert free > 0
    blobs.check_room()  # no reserve: room
    blobs = FileBlobStore(tmp_path, min_free_bytes=free * 4)
    with pytest.raises(Unavailable) as err:
        blobs.check_room()
    assert err.value.error_code == "blob_store_full" and "min_free_mb" in err.value.message
    with pytest.raises(Unavailable) as again:
        blobs.check_room()  # from the verdict kept for a second: a new error all the same
    assert again.value is not err.value and again.value.error_code == "blob_store_full"
    blobs.min_free_bytes = 0
    blobs.check_room()


async def test_a_volume_that_cannot_be_looked_at_is_logged_once_per_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every put looks at the volume (here at once, not a second apart): a volume that
    keeps failing is one log line, not one per look; it is logged again once it has
    come back and failed anew."""
    from adapters import blobs as blobs_module  # noqa: PLC0415

    monkeypatch.setattr(blobs_module, "_ROOM_CHECK_S", 0.0)
    blobs = FileBlobStore(tmp_path / "vol")
    logged = record_logs(monkeypatch, blobs_module)
    os.rmdir(tmp_path / "vol")
    for _ in range(5):
        with pytest.raises(Unavailable) as err:
            blobs.check_room()
        assert err.value.error_code == "blob_store_unavailable"
    (tmp_path / "vol").mkdir()
    blobs.check_room()  # back: room again
    os.rmdir(tmp_path / "vol")
    with pytest.raises(Unavailable):
        blobs.check_room()
    failed = [e for e in logged.by_level["warning"] if e["event"] == "blob_store_failed"]
    assert len(failed) == 2 and failed[0]["errno"] == "ENOENT"


async def test_a_volume_back_from_failing_but_low_is_logged_low(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A volume that failed and comes back short of its reserve says so (it had not
    been logged low before it failed, so nothing else would)."""
    from adapters import blobs as blobs_module  # noqa: PLC0415

    monkeypatch.setattr(blobs_module, "_ROOM_CHECK_S", 0.0)
    blobs = FileBlobStore(tmp_path / "vol")
    blobs.min_free_bytes = blobs.free_bytes() * 4
    logged = record_logs(monkeypatch, blobs_module)
    os.rmdir(tmp_path / "vol")
    with pytest.raises(Unavailable) as err:
        blobs.check_room()
    assert err.value.error_code == "blob_store_unavailable"
    (tmp_path / "vol").mkdir()
    for _ in range(3):
        with pytest.raises(Unavailable) as err:
            blobs.check_room()
        assert err.value.error_code == "blob_store_full"
    events = [e["event"] for e in logged.events]
    assert events == ["blob_store_failed", "blob_store_low"]


async def test_a_volume_that_fails_otherwise_is_unavailable(tmp_path: Path) -> None:
    blobs = FileBlobStore(tmp_path / "gone")
    os.rmdir(tmp_path / "gone")  # the mount went away under the hub
    with pytest.raises(Unavailable) as err:
        blobs.check_room()
    assert err.value.error_code == "blob_store_unavailable"
    data = b"x" * 10
    target = tmp_path / "gone"
    target.write_bytes(b"")  # a file where the volume's root was: ENOTDIR on every write
    with pytest.raises(Unavailable) as err:
        await blobs.put(hashlib.sha256(data).hexdigest(), data)
    assert err.value.error_code == "blob_store_unavailable"
