"""Content-addressed blob store on disk: ``<root>/ab/cd/<sha256>``.

Writes go to a temporary file in the same directory and are renamed, so a blob is
either absent or complete, and ``put`` returns only once the bytes and the new name are on
disk. How they get there is ``flush``: ``"group"`` (the default on Linux) makes every
write that finished while the previous flush ran durable with one ``syncfs(2)`` of the
blob file system, as the stores group their commits; ``"each"`` fsyncs each file and its
directory (about three times the CPU per 10 KB blob here, and the kernel's journal
commits one by one). Identical packages share one file.

Large uploads are written to ``<root>/.spool/`` as they arrive (``spool``) and become
a blob by a rename (``adopt``); large downloads are read in chunks (``stream``). Either
way a package is never held in memory whole.

The volume failing is ``Unavailable`` (503), never an unexplained 500: a write that finds
it full is ``blob_store_full``, any other failure of the disk (read-only, I/O error)
``blob_store_unavailable``, each logged as ``blob_store_failed``. Before that happens,
``check_room`` (called as an upload is admitted, and by ``/readyz``) refuses new packages
with ``blob_store_full`` while the volume has less than ``min_free_bytes`` free, as a
mail server stops taking mail (postfix's ``queue_minfree``): uploads already in flight
still finish, and fetches, acknowledgements and the ledger (the embedded store's file
sits on the same disk by default) go on working.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import functools
import os
import re
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import structlog

from hub.config import BLOB_FLUSH_MODES
from hub.errors import NotFound, Unavailable
from hub.files import fsync_dir
from hub.ids import new_hex
from hub.ports import Spool

_SHA = re.compile(r"^[0-9a-f]{64}$")
_INLINE_READ = 64 * 1024  # smaller blobs are read on the event loop
_CHUNK = 256 * 1024  # streamed reads
_STALE_SPOOL_S = 3600.0  # a spool file this old was left by a crash
_ROOM_CHECK_S = 1.0  # free space is looked at most this often
_FULL = (errno.ENOSPC, errno.EDQUOT)

P = ParamSpec("P")
R = TypeVar("R")
log = structlog.get_logger(__name__)


def _log_failure(action: str, exc: OSError) -> None:
    log.warning(
        "blob_store_failed",
        action=action,
        errno=errno.errorcode.get(exc.errno or 0, str(exc.errno)),
        error=exc.strerror or str(exc),
    )


def _failure(action: str, exc: OSError) -> tuple[str, str]:
    """(code, message) of the blob volume failing ``action``."""
    code = "blob_store_full" if exc.errno in _FULL else "blob_store_unavailable"
    return code, f"the package store could not {action}: {exc.strerror or exc}; retry later"


def disk_failure(action: str, exc: OSError) -> Unavailable:
    """The blob volume failed ``action``: ``blob_store_full`` or ``blob_store_unavailable``,
    logged."""
    _log_failure(action, exc)
    code, message = _failure(action, exc)
    return Unavailable(message, code=code)


def _on_disk(
    action: str,
) -> Callable[[Callable[P, Coroutine[Any, Any, R]]], Callable[P, Coroutine[Any, Any, R]]]:
    """The method's ``OSError`` (the disk's, not a missing blob: those are ``NotFound``
    already) as ``disk_failure``."""

    def wrap(fn: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, Coroutine[Any, Any, R]]:
        @functools.wraps(fn)
        async def run(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return await fn(*args, **kwargs)
            except OSError as exc:
                raise disk_failure(action, exc) from exc

        return run

    return wrap


def _libc_syncfs() -> Callable[[int], int] | None:
    """``syncfs(2)`` from the C library, or ``None`` where there is none (not Linux)."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).syncfs
    except (AttributeError, OSError):
        return None
    fn.argtypes = [ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


_SYNCFS = _libc_syncfs()


def _syncfs(path: str) -> None:
    """Every write so far to the file system holding ``path``, data and names, on disk."""
    assert _SYNCFS is not None
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if _SYNCFS(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"syncfs {path}: {os.strerror(err)}")
    finally:
        os.close(fd)


class FlushGroup:
    """Many writers, one flush: ``flushed()`` returns once a flush that *started after the
    call* has finished, so whatever the caller wrote before calling is on disk. Callers
    arriving while a flush runs share the next one; a flush that fails fails all of them
    (and the one after starts afresh). No task of its own: each flush starts the next."""

    def __init__(self, flush: Callable[[], None], pool: ThreadPoolExecutor) -> None:
        self._flush = flush
        self._pool = pool
        self._running = False
        self._next: asyncio.Future[None] | None = None
        self.flushes = 0  # flushes started (for tests and the benchmark's record)

    async def flushed(self) -> None:
        waiting = self._next
        if waiting is None:
            waiting = self._next = asyncio.get_running_loop().create_future()
            if not self._running:
                self._start()
        # One caller cancelled must not cancel the flush the others wait on.
        await asyncio.shield(waiting)

    def _start(self) -> None:
        waiting, self._next = self._next, None
        assert waiting is not None
        self._running = True
        self.flushes += 1
        running = asyncio.get_running_loop().run_in_executor(self._pool, self._flush)
        running.add_done_callback(lambda done: self._finished(done, waiting))

    def _finished(self, done: asyncio.Future[None], waiting: asyncio.Future[None]) -> None:
        self._running = False
        if done.cancelled():  # the loop is shutting down
            waiting.cancel()
        elif (exc := done.exception()) is not None:
            waiting.set_exception(exc)
        else:
            waiting.set_result(None)
        if self._next is not None:
            self._start()


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
    blobs, so adopting it is a rename). ``fsync``: finishing and trimming make the file
    durable themselves; without it the flush that follows the adoption does."""

    def __init__(self, path: Path, pool: ThreadPoolExecutor, *, fsync: bool) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.size = 0
        self._pool = pool
        self._fsync = fsync
        self._fd: int | None = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)

    def _write_all(self, chunk: bytes) -> None:
        assert self._fd is not None
        view = memoryview(chunk)
        while view:
            view = view[os.write(self._fd, view) :]

    @_on_disk("write an upload")
    async def write(self, chunk: bytes) -> None:
        await asyncio.get_running_loop().run_in_executor(self._pool, self._write_all, chunk)
        self.size += len(chunk)

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    @_on_disk("write an upload")
    async def finish(self) -> None:
        assert self._fd is not None
        if self._fsync:
            await asyncio.get_running_loop().run_in_executor(self._pool, os.fsync, self._fd)
        self._close()

    def discard(self) -> None:
        self._close()
        self.path.unlink(missing_ok=True)

    def _truncate(self, size: int) -> None:
        fd = os.open(self.path, os.O_WRONLY)
        try:
            os.ftruncate(fd, size)
            if self._fsync:
                os.fsync(fd)
        finally:
            os.close(fd)

    @_on_disk("write an upload")
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


class _EachWrite:
    """Flush mode ``"each"``: each file, and each name given to it, made durable at once."""

    mode = "each"

    def file(self, fd: int) -> None:
        os.fsync(fd)

    def names(self, *directories: str) -> None:
        for d in directories:
            fsync_dir(Path(d))

    async def settled(self) -> None:
        return None


class _GroupWrite:
    """Flush mode ``"group"``: nothing per file; a writer waits for the next shared flush."""

    mode = "group"

    def __init__(self, group: FlushGroup) -> None:
        self.group = group

    def file(self, fd: int) -> None:
        pass

    def names(self, *directories: str) -> None:
        pass

    async def settled(self) -> None:
        await self.group.flushed()


class FileBlobStore:
    def __init__(
        self, root: Path, *, threads: int = 16, flush: str = "group", min_free_bytes: int = 0
    ) -> None:
        if flush not in BLOB_FLUSH_MODES:
            raise ValueError(f"flush must be one of {BLOB_FLUSH_MODES}")
        self.root = root
        self._root = os.fspath(root)
        self._room: tuple[float, tuple[str, str] | None] = (0.0, None)  # (when, shortage)
        self.min_free_bytes = min_free_bytes
        _sweep_spool(root / ".spool")
        # Writes and fsyncs wait on the disk, not the CPU: several at once.
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="blob-io")
        self._durable: _EachWrite | _GroupWrite = _EachWrite()
        if flush == "group" and _SYNCFS is not None:
            root.mkdir(parents=True, exist_ok=True)
            # Its own thread: a flush waits on the disk and must not queue behind writes.
            flusher = ThreadPoolExecutor(1, thread_name_prefix="blob-flush")
            self._durable = _GroupWrite(FlushGroup(functools.partial(_syncfs, self._root), flusher))

    @property
    def flush(self) -> str:
        """``"group"`` or ``"each"``: how writes are made durable (see the module)."""
        return self._durable.mode

    def _name(self, sha256: str) -> str:
        return _blob_name(self._root, sha256)

    def _path(self, sha256: str) -> Path:
        return Path(self._name(sha256))

    @property
    def min_free_bytes(self) -> int:
        return self._min_free

    @min_free_bytes.setter
    def min_free_bytes(self, value: int) -> None:
        """A new reserve counts from the next check (not a second later)."""
        self._min_free = value
        self._room = (time.monotonic() - _ROOM_CHECK_S, self._room[1])

    def free_bytes(self) -> int:
        """Space on the blob volume that this process may still write."""
        st = os.statvfs(self._root)
        return st.f_bavail * st.f_frsize

    def check_room(self) -> None:
        """``blob_store_full`` while the volume has less than ``min_free_bytes`` free;
        ``blob_store_unavailable`` when it cannot be looked at. The volume is looked at
        once a second; each refusal is a new error (each is counted and recorded)."""
        now = time.monotonic()
        when, short = self._room
        if now - when >= _ROOM_CHECK_S:
            short = self._look(short)
            self._room = (now, short)
        if short is not None:
            raise Unavailable(short[1], code=short[0])

    def _look(self, before: tuple[str, str] | None) -> tuple[str, str] | None:
        """(code, message) while short of room, else None; logged when that changes."""
        try:
            free = self.free_bytes()
        except OSError as exc:
            # Asked again every second while the volume fails: one log line per change.
            failing = _failure("look at its volume", exc)
            if before != failing:
                _log_failure("look at its volume", exc)
            return failing
        if free >= self._min_free:
            if before is not None:
                log.info("blob_store_room_again", free_bytes=free, min_free_bytes=self._min_free)
            return None
        if before is None or before[0] != "blob_store_full":  # had room, or had failed
            log.warning("blob_store_low", free_bytes=free, min_free_bytes=self._min_free)
        return "blob_store_full", (
            f"the package store has {free // 2**20} MiB free, below its reserve of "
            f"{self._min_free // 2**20} MiB ([blobs] min_free_mb): no new package is "
            "taken until space is freed; retry later"
        )

    @_on_disk("store a package")
    async def put(self, sha256: str, data: bytes) -> str:
        await asyncio.get_running_loop().run_in_executor(self._pool, self._put, sha256, data)
        # Also when the file was there already: it may be another write's, not yet
        # flushed (in this process or another on the same volume).
        await self._durable.settled()
        return sha256

    def _put(self, sha256: str, data: bytes) -> None:
        # Bare system calls on the name: on a blob-io thread each pathlib step (exists,
        # mkdir, with_name) held the interpreter lock the event loop was waiting for.
        name = self._name(sha256)
        if os.path.exists(name):
            return
        parent = os.path.dirname(name)
        # Its own name per process and thread: writers of the same bytes never share one.
        tmp = f"{parent}/.{sha256}.{os.getpid()}.{threading.get_ident()}.tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
        try:
            fd = os.open(tmp, flags, 0o640)
        except FileNotFoundError:  # the first blob under this prefix
            self._make_dir(parent)
            fd = os.open(tmp, flags, 0o640)
        try:
            try:
                view = memoryview(data)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                self._durable.file(fd)
            finally:
                os.close(fd)
            os.replace(tmp, name)
        except BaseException:
            with contextlib.suppress(OSError):  # a full disk must not keep the part
                os.unlink(tmp)
            raise
        self._durable.names(parent)

    def _make_dir(self, parent: str) -> None:
        """Create a blob's directory (``<root>/ab/cd``) and make the new names durable."""
        os.makedirs(parent, exist_ok=True)
        self._durable.names(os.path.dirname(parent), self._root)

    def spool(self) -> FileSpool:
        path = self.root / ".spool" / f"{new_hex()}.part"
        try:
            return FileSpool(path, self._pool, fsync=self._durable.mode == "each")
        except OSError as exc:
            raise disk_failure("write an upload", exc) from exc

    @_on_disk("store a package")
    async def adopt(self, sha256: str, spool: Spool) -> str:
        await asyncio.get_running_loop().run_in_executor(
            self._pool, self._adopt, sha256, spool.path
        )
        await self._durable.settled()
        return sha256

    def _adopt(self, sha256: str, source: Path) -> None:
        name = self._name(sha256)
        if os.path.exists(name):  # the same bytes are held already
            source.unlink(missing_ok=True)
            return
        parent = os.path.dirname(name)
        if not os.path.isdir(parent):
            self._make_dir(parent)
        os.replace(source, name)  # finish() fsynced the spool, or the flush below covers it
        self._durable.names(parent)

    @_on_disk("read a package")
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
        except OSError as exc:
            raise disk_failure("read a package", exc) from exc
        try:
            while True:
                try:
                    chunk = await loop.run_in_executor(self._pool, f.read, _CHUNK)
                except OSError as exc:  # mid-answer: the connection is cut, and logged
                    raise disk_failure("read a package", exc) from exc
                if not chunk:
                    break
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
