"""Examiner processes: small packages parsed, validated and their signatures checked on
the machine's other cores.

The event loop is the hub's one busy thread, and examining a 10 KB package (parse, the
model, the rules, libxmlsec1's verification) took about a quarter of its time per
package. Threads cannot take that off it (the model's Python holds the GIL; session 15
measured them slower), so the packages a turn of the loop gathered go, as one batch,
to a child process (``python -m hub.service.examiners``) over its stdin, and the
examinations come back over its stdout: length-prefixed pickles of plain data
(``hub/service/examination.py``) between this process and children it started itself.

What needs the hub's state stays on the loop afterwards: authorisation, routing and
the trust decision on the signer (the trust store, reloaded while the hub runs, lives
here). A child that dies (a crash in a native library on hostile input, the kernel's
OOM killer) fails only the examinations it held, with 503 ``examiner_failed`` (the
clients send again), and is replaced at the next batch. Each child caps its own address
space (``[intake] examiner_memory_mb``, ``RLIMIT_AS``): a package that makes a native
library allocate without end fails in that child, as an allocation that failed, before
the machine's memory (and the OOM killer's choice among the hub, PostgreSQL and
RabbitMQ) is at stake.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import pickle
import resource
import signal
import struct
import sys
import time
import traceback
from collections.abc import Sequence
from typing import Any, BinaryIO

import structlog

from hub.edxml.xmlsafe import XmlLimits
from hub.errors import HubError, Unavailable
from hub.process import tune_allocator, tune_gc
from hub.service.examination import Examination, ExamineRequest, ExamineSettings, examine
from hub.service.metrics import Metrics

log = structlog.get_logger(__name__)

_FRAME = struct.Struct("!I")
MAX_FRAME = 1 << 30  # a batch of small packages is far below; anything larger is a bug
RESPAWN_S = 1.0  # a child that died is replaced at most this often
STOP_S = 5.0
# A batch of small packages takes milliseconds; one unanswered this long means a child
# stuck in a native library. It is killed: what it held is answered 503, it is replaced.
STUCK_S = 60.0


def auto_count(configured: int) -> int:
    """``[intake] examiners``: -1 is one examiner when the machine has a core to spare."""
    if configured >= 0:
        return configured
    return 1 if (os.cpu_count() or 1) > 1 else 0


def _failed(message: str) -> Unavailable:
    return Unavailable(message, code="examiner_failed")


class _Child:
    """One examiner process and the examinations it owes, in the order it was sent them."""

    def __init__(
        self, settings: ExamineSettings, metrics: Metrics | None, memory_mb: int = 0
    ) -> None:
        self._settings = settings
        self._metrics = metrics
        self._memory_mb = memory_mb
        self._proc: asyncio.subprocess.Process | None = None
        self._waiting: list[bytes] = []  # frames sent before the process was up
        # seq -> the examination owed and when it was sent (answered in that order)
        self._owed: dict[int, tuple[asyncio.Future[Examination], float]] = {}
        self._seq = 0
        self._task: asyncio.Task[None] | None = None
        self.alive = True
        self.stopping = False

    @property
    def load(self) -> int:
        return len(self._owed)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="examiner")

    def send(self, requests: Sequence[ExamineRequest]) -> list[asyncio.Future[Examination]]:
        loop = asyncio.get_running_loop()
        futs: list[asyncio.Future[Examination]] = []
        batch = []
        for r in requests:
            self._seq += 1
            fut: asyncio.Future[Examination] = loop.create_future()
            self._owed[self._seq] = (fut, time.monotonic())
            futs.append(fut)
            batch.append((self._seq, r))
        payload = pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL)
        frame = _FRAME.pack(len(payload)) + payload
        if self._proc is None or self._proc.stdin is None:
            self._waiting.append(frame)
        else:
            self._proc.stdin.write(frame)  # buffered by the transport; never blocks
        return futs

    async def _run(self) -> None:
        try:
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "hub.service.examiners",
                _settings_arg(self._settings),
                str(self._memory_mb),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
            assert self._proc.stdin is not None and self._proc.stdout is not None
            for frame in self._waiting:
                self._proc.stdin.write(frame)
            self._waiting.clear()
            log.info("examiner_started", pid=self._proc.pid)
            await self._read(self._proc.stdout)
        except asyncio.CancelledError:
            self._fail_all("the hub is stopping")
            raise
        except Exception as exc:  # noqa: BLE001 - EOF, or a reply that cannot be read
            if self._proc is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._proc.wait(), 1.0)
            self._died(exc)

    async def _read(self, out: asyncio.StreamReader) -> None:
        while True:
            (size,) = _FRAME.unpack(await out.readexactly(_FRAME.size))
            if size > MAX_FRAME:
                raise ValueError(f"an examiner reply of {size} bytes")
            # Written by the child this process started, over its own pipe.
            replies = pickle.loads(await out.readexactly(size))  # noqa: S301
            for seq, ok, value in replies:
                fut, _sent = self._owed.pop(seq, (None, 0.0))
                if fut is None or fut.done():
                    continue
                if ok:
                    fut.set_result(value)
                elif isinstance(value, BaseException):
                    fut.set_exception(value)
                else:  # a bug in the examination: the traceback, as a 500 would carry
                    fut.set_exception(RuntimeError(f"examiner: {value}"))

    def _died(self, exc: BaseException) -> None:
        self.alive = False
        code = self._proc.returncode if self._proc is not None else None
        if not self.stopping:
            log.error(
                "examiner_died",
                pid=self.pid,
                returncode=code,
                error=f"{type(exc).__name__}: {exc}",
                owed=len(self._owed),
            )
            if self._metrics is not None:
                self._metrics.examiner_exits.inc()
        self._fail_all(
            "the package examiner process stopped while examining this package; send it again"
        )
        if self._proc is not None and self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()

    def _fail_all(self, message: str) -> None:
        owed, self._owed = self._owed, {}
        for fut, _sent in owed.values():
            if not fut.done():  # one error each: a request marks its own as recorded
                fut.set_exception(_failed(message))
        self._waiting.clear()

    def overdue(self, now: float, limit: float) -> bool:
        """Whether the oldest examination owed (they are answered in order) is older
        than ``limit`` seconds."""
        oldest = next(iter(self._owed.values()), None)
        return oldest is not None and now - oldest[1] > limit

    def kill(self) -> None:
        """End a stuck child: its reader sees the pipe close and fails what it held."""
        if self._proc is not None and self._proc.returncode is None:
            log.error("examiner_stuck", pid=self._proc.pid, owed=len(self._owed))
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()

    async def stop(self) -> None:
        self.stopping = True
        proc = self._proc
        if proc is not None and proc.stdin is not None:
            proc.stdin.close()  # the child finishes what it has and exits on EOF
        if proc is not None:
            try:
                await asyncio.wait_for(proc.wait(), STOP_S)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._fail_all("the hub is stopping")


class ProcessExaminers:
    """A few examiner processes; each batch goes to the one owing the fewest."""

    def __init__(
        self,
        count: int,
        settings: ExamineSettings,
        metrics: Metrics | None,
        *,
        memory_mb: int = 0,
    ) -> None:
        if count < 1:
            raise ValueError("ProcessExaminers needs at least one process")
        self.count = count
        self.settings = settings
        self.memory_mb = memory_mb  # each child's address space; 0: not capped
        self._metrics = metrics
        self._children: list[_Child] = []
        self._respawned = 0.0
        self._watch: asyncio.Task[None] | None = None

    async def start(self) -> None:
        for _ in range(self.count):
            self._spawn()
        self._watch = asyncio.get_running_loop().create_task(
            self._watchdog(), name="examiner-watchdog"
        )

    async def _watchdog(self) -> None:
        while True:
            await asyncio.sleep(min(5.0, STUCK_S / 4))
            now = time.monotonic()
            for child in self._children:
                if child.alive and child.overdue(now, STUCK_S):
                    child.kill()

    def _spawn(self) -> _Child:
        child = _Child(self.settings, self._metrics, self.memory_mb)
        child.start()
        self._children.append(child)
        return child

    def pids(self) -> list[int]:
        return [p for c in self._children if c.alive and (p := c.pid) is not None]

    def examine_many(self, requests: Sequence[ExamineRequest]) -> list[asyncio.Future[Examination]]:
        self._children = [c for c in self._children if c.alive]
        now = time.monotonic()
        if len(self._children) < self.count and now - self._respawned >= RESPAWN_S:
            self._respawned = now
            self._spawn()
        if not self._children:
            loop = asyncio.get_running_loop()
            futs: list[asyncio.Future[Examination]] = []
            for _ in requests:
                fut: asyncio.Future[Examination] = loop.create_future()
                fut.set_exception(_failed("no package examiner process is running"))
                futs.append(fut)
            return futs
        return min(self._children, key=lambda c: c.load).send(requests)

    async def stop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None
        children, self._children = self._children, []
        await asyncio.gather(*(c.stop() for c in children))


# --------------------------------------------------------------------- the child


def _settings_arg(settings: ExamineSettings) -> str:
    return json.dumps(
        {"limits": dataclasses.asdict(settings.limits), "allow_sha1": settings.allow_sha1}
    )


def _settings_of(arg: str) -> ExamineSettings:
    d = json.loads(arg)
    return ExamineSettings(XmlLimits(**d["limits"]), bool(d["allow_sha1"]))


def _read_exactly(f: BinaryIO, n: int) -> bytes | None:
    chunks, got = [], 0
    while got < n:
        chunk = f.read(n - got)
        if not chunk:
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _examine_one(r: ExamineRequest, settings: ExamineSettings) -> tuple[bool, Any]:
    try:
        return True, examine(r, settings)
    except HubError as exc:
        return False, exc
    except MemoryError:  # over the cap: this package's own allocations are freed again
        return False, _failed(
            "examining this package needed more memory than an examiner process may use; "
            "if it is a genuine package, tell the hub's operator"
        )
    except Exception:  # noqa: BLE001 - reported to the parent as a 500, the child goes on
        return False, traceback.format_exc(limit=8)


def serve(inp: BinaryIO, out: BinaryIO, settings: ExamineSettings) -> None:
    """Examine batches from ``inp`` until it closes; each reply in the order asked."""
    while True:
        head = _read_exactly(inp, _FRAME.size)
        if head is None:
            return
        (size,) = _FRAME.unpack(head)
        if size > MAX_FRAME:
            raise SystemExit(f"examiner: a request of {size} bytes")
        body = _read_exactly(inp, size)
        if body is None:
            return
        # From the parent, over the pipe it made: the package bytes inside are data only.
        batch: list[tuple[int, ExamineRequest]] = pickle.loads(body)  # noqa: S301
        replies = [(seq, *_examine_one(r, settings)) for seq, r in batch]
        payload = pickle.dumps(replies, protocol=pickle.HIGHEST_PROTOCOL)
        out.write(_FRAME.pack(len(payload)) + payload)
        out.flush()


def cap_memory(memory_mb: int) -> None:
    """Cap this process's address space (``RLIMIT_AS``) at ``memory_mb``; 0 leaves it."""
    if memory_mb > 0:
        limit = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def main(argv: Sequence[str]) -> int:
    # Ctrl-C in a terminal reaches the whole process group: the hub stops its children.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    cap_memory(int(argv[1]) if len(argv) > 1 else 0)
    tune_allocator()
    tune_gc()
    # The replies own stdout; anything a library prints goes to stderr (the hub's log).
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    serve(sys.stdin.buffer, replies, _settings_of(argv[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
