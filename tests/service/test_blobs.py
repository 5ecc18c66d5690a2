"""The file blob store's spool: large uploads written as they arrive, adopted by rename."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from adapters.blobs import FileBlobStore
from hub.errors import NotFound


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
