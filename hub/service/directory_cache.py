"""The directory as the service reads it: a snapshot refreshed when its version moves.

Every directory write bumps a version number in the store; each hub process polls
that number (one indexed read) and reloads only when it changed, so several
processes converge within one poll interval.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from hub.ports import Directory, Store
from hub.signature.policy import CertBindings

log = structlog.get_logger(__name__)


class DirectoryCache:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._current: Directory | None = None
        self._bindings = CertBindings()
        self._lock = asyncio.Lock()

    @property
    def current(self) -> Directory:
        if self._current is None:
            raise RuntimeError("directory not loaded")
        return self._current

    @property
    def bindings(self) -> CertBindings:
        return self._bindings

    async def load(self) -> Directory:
        async with self._lock:
            d = await self._store.directory()
            fps: dict[str, set[str]] = {}
            for b in d.bindings:
                fps.setdefault(b.fingerprint.lower(), set()).add(b.organ_id)
            self._bindings = CertBindings.of(fps)
            self._current = d
            log.info("directory_loaded", version=d.version, organs=len(d.organs))
            return d

    async def refresh(self) -> None:
        version = await self._store.directory_version()
        if self._current is None or version != self._current.version:
            await self.load()

    async def run(self, interval_s: float = 2.0) -> None:
        while True:
            await asyncio.sleep(interval_s)
            with contextlib.suppress(Exception):  # store down: keep serving the last snapshot
                await self.refresh()
