"""Admission: how many uploads one system may have in flight in this hub process.

A system with a valid credential could otherwise occupy the hub on its own: each upload in
flight holds event-loop work, and a large one (spooled to disk) up to ``[server]
max_body_bytes`` of the blob volume. Three caps, checked before the body is read:

- uploads in flight per system (``max_uploads_per_system``): 429 ``too_many_uploads``;
- large uploads (over 1 MB, or of unknown length: spooled) per system
  (``max_large_uploads_per_system``): 429 ``too_many_large_uploads``;
- large uploads in flight in the process, all systems together (``max_large_uploads``),
  which bounds the spool's disk use: 503 ``large_uploads_busy``;
- room on the blob volume (``room``, the blob store's ``check_room``): 503
  ``blob_store_full`` below ``[blobs] min_free_mb``.

Every refusal answers with ``Retry-After`` and is recorded like any other refusal. The caps
hold per process: with ``[server] workers = N`` a system may have up to N times as many.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from hub.errors import TooManyUploads, Unavailable


class UploadSlots:
    def __init__(
        self,
        *,
        per_system: int,
        large_per_system: int,
        large_total: int,
        room: Callable[[], None] | None = None,
    ) -> None:
        if min(per_system, large_per_system, large_total) < 1:
            raise ValueError("upload caps must be at least 1")
        self.room = room
        self.per_system = per_system
        self.large_per_system = large_per_system
        self.large_total = large_total
        self._held: dict[str, int] = {}
        self._large: dict[str, int] = {}
        self._large_total = 0

    def in_flight(self, system_id: str) -> tuple[int, int]:
        """(uploads, large uploads) the system has in flight now."""
        return self._held.get(system_id, 0), self._large.get(system_id, 0)

    @contextmanager
    def hold(self, system_id: str, *, large: bool) -> Iterator[None]:
        """A slot for one upload of ``system_id`` while the block runs, or a refusal."""
        if self.room is not None:
            self.room()
        held = self._held.get(system_id, 0)
        if held >= self.per_system:
            raise TooManyUploads(
                f"system {system_id} already has {held} uploads in flight (the limit is "
                f"{self.per_system}); retry after one of them is answered",
                details={"limit": self.per_system},
            )
        if large:
            mine = self._large.get(system_id, 0)
            if mine >= self.large_per_system:
                raise TooManyUploads(
                    f"system {system_id} already has {mine} large uploads in flight (the "
                    f"limit is {self.large_per_system} over 1 MB); retry after one of them "
                    "is answered",
                    code="too_many_large_uploads",
                    details={"limit": self.large_per_system},
                )
            if self._large_total >= self.large_total:
                raise Unavailable(
                    f"the hub has {self._large_total} large uploads in flight (its limit); "
                    "retry shortly",
                    code="large_uploads_busy",
                )
            self._large[system_id] = mine + 1
            self._large_total += 1
        self._held[system_id] = held + 1
        try:
            yield
        finally:
            _release(self._held, system_id)
            if large:
                _release(self._large, system_id)
                self._large_total -= 1


def _release(counts: dict[str, int], system_id: str) -> None:
    left = counts[system_id] - 1
    if left:
        counts[system_id] = left
    else:
        del counts[system_id]  # no entry per system that ever sent: the dict stays small
