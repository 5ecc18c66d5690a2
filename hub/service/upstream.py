"""Taking what the upstream axis holds for this hub, and keeping the directory in step.

The poller lists received documents and statuses on the upstream axis, fetches
each, feeds it to the same intake pipeline as any submission (source
``upstream``: only this hub's own organs get deliveries), and only after the
commit answers ``updateStatus`` done; a package the pipeline refuses for good is
answered ``fail``. A crash between the commit and the answer is harmless: the next
take finds the same bytes here and answers done without creating anything.

Directory synchronisation adds the upstream's organs (both id forms as aliases)
as ``upstream`` organs and updates them when they change; organs this hub serves
are never touched by it.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from typing import Literal

import structlog

from hub.edxml.organ import classify
from hub.errors import HubError, InputError, NotFound, Unavailable
from hub.ports import Clock, RemoteItem, RemoteOrgan, Store, Taken, UpstreamAxis
from hub.records import Organ, System
from hub.service.auth import Caller
from hub.service.directory_admin import DirectoryAdmin
from hub.service.directory_cache import DirectoryCache
from hub.service.intake import Intake, Submission
from hub.service.metrics import Metrics
from hub.service.retry import backoff

log = structlog.get_logger(__name__)

UPSTREAM_SYSTEM = "upstream"
TAKE_CONCURRENCY = 8
_KINDS: tuple[Literal["edoc", "status"], ...] = ("edoc", "status")
_RETRY_LATER = frozenset({"sender_not_allowed"})  # a directory sync may fix these


class UpstreamPoller:
    def __init__(
        self,
        *,
        axis: UpstreamAxis,
        intake: Intake,
        store: Store,
        directory: DirectoryCache,
        clock: Clock,
        metrics: Metrics,
        poll_s: float,
        sync_s: float,
    ) -> None:
        self.axis = axis
        self.intake = intake
        self.store = store
        self.directory = directory
        self.clock = clock
        self.metrics = metrics
        self.poll_s = poll_s
        self.sync_s = sync_s
        self._last_sync: float | None = None  # monotonic time of the last sync
        self._caller: tuple[int, Caller] | None = None  # (directory version, caller)

    def caller(self) -> Caller:
        """The upstream axis as a caller: it may speak for every organ it serves.

        Built once per directory version (the national directory has thousands of organs).
        """
        d = self.directory.current
        if self._caller is None or self._caller[0] != d.version:
            organs = tuple(o.organ_id for o in d.organs.values() if o.location == "upstream")
            system = System(UPSTREAM_SYSTEM, "upstream axis", organs=organs)
            self._caller = (d.version, Caller(system, "upstream"))
        return self._caller[1]

    # ------------------------------------------------------------------ loop
    async def run(self) -> None:
        failures = 0
        while True:
            try:
                if self.sync_s > 0 and (
                    self._last_sync is None or time.monotonic() - self._last_sync >= self.sync_s
                ):
                    await self.sync()
                taken = await self.poll_once()
                failures = 0
                self.metrics.upstream_last_ok.set(self.clock.now_us() / 1e6)
                await asyncio.sleep(0 if taken else self.poll_s)
            except Unavailable as exc:
                failures += 1
                self.metrics.upstream_failures.labels("poll").inc()
                delay = backoff(failures, base_s=self.poll_s, cap_s=60.0)
                log.warning("upstream_poll_failed", error=exc.message, retry_in_s=round(delay, 2))
                await asyncio.sleep(delay)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("upstream_poll_crashed")
                await asyncio.sleep(self.poll_s)

    async def poll_once(self) -> int:
        """Take everything waiting: documents first (a status may answer one of them),
        ``TAKE_CONCURRENCY`` at a time."""
        taken = 0
        sem = asyncio.Semaphore(TAKE_CONCURRENCY)

        async def one(item: RemoteItem) -> None:
            async with sem:
                await self.take(item)

        for kind in _KINDS:
            items = await self.axis.pending(kind)
            await asyncio.gather(*(one(i) for i in items))
            taken += len(items)
        return taken

    async def take(self, item: RemoteItem) -> str:
        """Fetch, submit, confirm. Returns the outcome (accepted, duplicate, refused, later)."""
        bound = log.bind(upstream_id=item.doc_id, kind=item.kind)
        try:
            self.intake.blobs.check_room()  # no room: left upstream, taken when there is
        except Unavailable:
            return "later"
        try:
            taken = await self.axis.fetch(item.doc_id, self.intake.blobs)
        except NotFound:
            bound.warning("upstream_item_vanished")
            return "vanished"
        except InputError as exc:  # over the size limit: refused like a bad package
            await self.intake.record_refusal(
                self.caller(), exc, source="upstream", declared_kind=item.kind
            )
            outcome = "refused"
        else:
            try:
                outcome = await self._submit(item, taken)
            finally:
                if taken.spool is not None:
                    taken.spool.discard()  # refused or left for later; adopted: moved
        if outcome == "later":
            return outcome
        await self.axis.confirm(item.doc_id, "fail" if outcome == "refused" else "done")
        self.metrics.upstream_received.labels(outcome).inc()
        bound.info("upstream_taken", outcome=outcome)
        return outcome

    async def _submit(self, item: RemoteItem, taken: Taken, *, synced: bool = False) -> str:
        sub = Submission(
            taken.body,
            taken.sha256,
            item.kind,
            self.clock.now_us(),
            time.perf_counter(),
            source="upstream",
            upstream_id=item.doc_id,
            spool=taken.spool,
        )
        try:
            result = await self.intake.submit(sub, self.caller())
        except Unavailable:
            raise  # not committed: leave it upstream, take it again later
        except HubError as exc:
            if exc.error_code in _RETRY_LATER and not synced and self.sync_s > 0:
                await self.sync()
                return await self._submit(item, taken, synced=True)
            return "refused"
        return "duplicate" if result.duplicate else "accepted"

    # ------------------------------------------------------------------ directory
    async def sync(self) -> dict[str, int]:
        remote = await self.axis.organs()
        self._last_sync = time.monotonic()
        admin = DirectoryAdmin(self.store, self.clock, "upstream-sync")
        d = self.directory.current
        counts = {"added": 0, "updated": 0, "unchanged": 0, "ours": 0}
        changed: dict[str, Organ] = {}
        for r in remote:
            existing = d.resolve(r.organ_id)
            if existing is not None and existing.location == "local":
                counts["ours"] += 1
                continue
            wanted = _organ(r, existing)
            if existing is not None and _same(existing, wanted):
                counts["unchanged"] += 1
                continue
            changed[wanted.organ_id] = wanted
            counts["updated" if existing else "added"] += 1
        # One transaction for the lot: a first sync brings thousands of organs.
        for organ_id, code in await admin.put_organs(changed.values()):
            log.warning("upstream_organ_skipped", organ=organ_id, error=code)
            counts["updated" if d.resolve(organ_id) else "added"] -= 1
        if counts["added"] or counts["updated"]:
            await self.directory.load()
        log.info("upstream_directory_synced", **counts)
        return counts


def _valid(organ_id: str | None) -> str | None:
    if not organ_id:
        return None
    try:
        classify(organ_id)
    except ValueError:
        return None
    return organ_id


def _organ(r: RemoteOrgan, existing: Organ | None) -> Organ:
    organ = Organ(
        r.organ_id,
        r.name,
        None,
        "upstream",
        parent=_valid(r.parent),
        closed=r.deleted,
        aliases=tuple(a for a in r.aliases if _valid(a)),
    )
    if existing is not None:  # keep what an administrator set locally
        organ = replace(organ, aliases=tuple(sorted({*organ.aliases, *existing.aliases})))
    return organ


def _same(a: Organ, b: Organ) -> bool:
    return (a.name, a.closed, a.location, set(a.aliases)) == (
        b.name,
        b.closed,
        b.location,
        set(b.aliases),
    )
