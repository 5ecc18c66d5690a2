"""Content-addressed blob store on disk: ``<root>/ab/cd/<sha256>``.

Writes go to a temporary file in the same directory, are fsynced and renamed, so
a blob is either absent or complete; the directory is fsynced too so the name
survives a crash. Identical packages share one file.

Large uploads are written to ``<root>/.spool/`` as they arrive (``spool``) and become
a blob by a rename (``adopt``); large downloads are read in chunks (``stream``). Either
way a package is never held in memory whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from hub.errors import NotFound
from hub.files import fsync_dir
from hub.ids import new_hex
from hub.ports import Spool

_SHA = re.compile(r"^[0-9a-f]{64}$")
_INLINE_READ = 64 * 1024  # smaller blobs are read on the event loop
_CHUNK = 256 * 1024  # streamed reads
_STALE_SPOOL_S = 3600.0  # a spool file this old was left by a crash


def _sweep_spool(spool_dir: Path) -> None:
    """Remove uploads a crash left half-written. Only old ones: on a shared blob volume
    another process may be writing the fresh ones right now."""
    cutoff = time.time() - _STALE_SPOOL_S
    for part in spool_dir.glob("*.part"):
        with contextlib.suppress(FileNotFoundError):
            if part.stat().st_mtime < cutoff:
                part.unlink()


class FileSpool:
    """An upload written to ``<root>/.spool/`` as it arrives (same file system as the
    blobs, so adopting it is a rename)."""

    def __init__(self, path: Path, pool: ThreadPoolExecutor) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.size = 0
        self._pool = pool
        self._fd: int | None = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)

    def _write_all(self, chunk: bytes) -> None:
        assert self._fd is not None
        view = memoryview(chunk)
        while view:
            view = view[os.write(self._fd, view) :]

    async def write(self, chunk: bytes) -> None:
        await asyncio.get_running_loop().run_in_executor(self._pool, self._write_all, chunk)
        self.size += len(chunk)

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    async def finish(self) -> None:
        fd = self._fd
        assert fd is not None
        await asyncio.get_running_loop().run_in_executor(self._pool, os.fsync, fd)
        self._close()

    def discard(self) -> None:
        self._close()
        self.path.unlink(missing_ok=True)

    def _truncate(self, size: int) -> None:
        fd = os.open(self.path, os.O_WRONLY)
        try:
            os.ftruncate(fd, size)
            os.fsync(fd)
        finally:
            os.close(fd)

    async def trim(self, n: int) -> None:
        size = max(0, self.size - n)
        await asyncio.get_running_loop().run_in_executor(self._pool, self._truncate, size)
        self.size = size


def _read_to_end(fd: int, size: int) -> bytes:
    """A file's bytes: its size in one read, as a regular file gives them, or more reads
    until the end if it gave fewer."""
    data = os.read(fd, size)
    if len(data) < size:
        parts = [data]
        while chunk := os.read(fd, 1 << 16):
            parts.append(chunk)
        data = b"".join(parts)
    return data


def _blob_name(root: str, sha256: str) -> str:
    """The one layout: ``<root>/ab/cd/<sha256>`` (a string: the hot paths open it bare)."""
    if not _SHA.match(sha256):
        raise ValueError("not a SHA-256 hex digest")
    return f"{root}/{sha256[:2]}/{sha256[2:4]}/{sha256}"


def blob_path(root: Path, sha256: str) -> Path:
    """Where the blob store under ``root`` keeps the bytes whose SHA-256 is ``sha256``."""
    return Path(_blob_name(os.fspath(root), sha256))


class FileBlobStore:
    def __init__(self, root: Path, *, threads: int = 16) -> None:
        self.root = root
        self._root = os.fspath(root)
        _sweep_spool(root / ".spool")
        # fsyncs wait on the disk, not the CPU: many in parallel let the journal merge them.
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="blob-io")

    def _name(self, sha256: str) -> str:
        return _blob_name(self._root, sha256)

    def _path(self, sha256: str) -> Path:
        return Path(self._name(sha256))

    async def put(self, sha256: str, data: bytes) -> str:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._put, sha256, data)

    def _put(self, sha256: str, data: bytes) -> str:
        path = self._path(sha256)
        if path.exists():
            return sha256
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{sha256}.{os.getpid()}.{id(data)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        fsync_dir(path.parent)
        return sha256

    def spool(self) -> FileSpool:
        return FileSpool(self.root / ".spool" / f"{new_hex()}.part", self._pool)

    async def adopt(self, sha256: str, spool: Spool) -> str:
        return await asyncio.get_running_loop().run_in_executor(
            self._pool, self._adopt, sha256, spool.path
        )

    def _adopt(self, sha256: str, source: Path) -> str:
        path = self._path(sha256)
        if path.exists():  # the same bytes are held already
            source.unlink(missing_ok=True)
            return sha256
        path.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, path)  # the spool was fsynced by finish()
        fsync_dir(path.parent)
        return sha256

    async def get(self, sha256: str) -> bytes:
        name = self._name(sha256)
        try:
            fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError as exc:
            raise NotFound("package bytes not found", code="blob_missing") from exc
        try:
            size = os.fstat(fd).st_size
            if size <= _INLINE_READ:
                # A small, recently written file comes from the page cache faster than a
                # hop to a worker thread and back; read with bare system calls (a
                # pathlib read builds a buffered file object around them).
                return _read_to_end(fd, size)
            return await asyncio.get_running_loop().run_in_executor(
                self._pool, _read_to_end, fd, size
            )
        finally:
            os.close(fd)

    def local_path(self, sha256: str) -> Path:
        return self._path(sha256)

    async def stream(self, sha256: str) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        path = self._path(sha256)
        try:
            f = await loop.run_in_executor(self._pool, path.open, "rb")
        except FileNotFoundError as exc:
            raise NotFound("package bytes not found", code="blob_missing") from exc
        try:
            while chunk := await loop.run_in_executor(self._pool, f.read, _CHUNK):
                yield chunk
        finally:
            f.close()

    async def exists(self, sha256: str) -> bool:
        return self._path(sha256).exists()

    async def delete(self, sha256: str) -> None:
        path = self._path(sha256)
        await asyncio.get_running_loop().run_in_executor(
            self._pool, lambda: path.unlink(missing_ok=True)
        )
