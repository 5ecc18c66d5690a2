"""Content-addressed blob store on disk: ``<root>/ab/cd/<sha256>``.

Writes go to a temporary file in the same directory, are fsynced and renamed, so
a blob is either absent or complete; the directory is fsynced too so the name
survives a crash. Identical packages share one file.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from hub.errors import NotFound

_SHA = re.compile(r"^[0-9a-f]{64}$")
_INLINE_READ = 64 * 1024  # smaller blobs are read on the event loop
_CHUNK = 256 * 1024  # streamed reads


class FileBlobStore:
    def __init__(self, root: Path, *, threads: int = 16) -> None:
        self.root = root
        # fsyncs wait on the disk, not the CPU: many in parallel let the journal merge them.
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="blob-io")

    def _path(self, sha256: str) -> Path:
        if not _SHA.match(sha256):
            raise ValueError("not a SHA-256 hex digest")
        return self.root / sha256[:2] / sha256[2:4] / sha256

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
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return sha256

    async def get(self, sha256: str) -> bytes:
        path = self._path(sha256)
        try:
            if path.stat().st_size <= _INLINE_READ:
                # A small, recently written file comes from the page cache faster than a
                # hop to a worker thread and back.
                return path.read_bytes()
            return await asyncio.get_running_loop().run_in_executor(self._pool, path.read_bytes)
        except FileNotFoundError as exc:
            raise NotFound("package bytes not found", code="blob_missing") from exc

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
