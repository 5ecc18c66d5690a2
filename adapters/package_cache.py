"""Packages with their deliveries, kept by the one process that owns a SQLite file.

A recipient's fetch and acknowledgement each read the package with its deliveries (to
check who may act on it), and each changes one of those deliveries: four reads of the
same rows per package with two recipients, each after a commit that had emptied the
read connection's page cache. The SQLite store is the only writer of its file, so it
can keep what it read and apply its own changes to it as they commit:

- a read that misses is kept (an absent package is not);
- a delivery transition, once committed, is applied to the kept delivery exactly as the
  SQL applies it (state, time, attempts and last error only when given, next attempt
  always);
- anything else that changes a kept package or its deliveries (a business status, a
  purge) drops it, to be read again.

Reads and the application of committed results both run on the event loop, so a read
sees the file either before a commit (and the change is applied after) or after it (and
applying it again changes nothing). Not for PostgreSQL, where other processes write.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, replace

from hub.records import DeliveryRow, PackageRow, State

Found = tuple[PackageRow, list[DeliveryRow]]


@dataclass(frozen=True, slots=True)
class Move:
    """A delivery transition as ``SqlStore.transition`` writes it."""

    delivery_id: str
    to: State
    at_us: int
    attempts: int | None  # kept as it was when None
    next_attempt_us: int | None  # always written
    last_error: str | None  # kept as it was when None


class PackageCache:
    def __init__(self, size: int = 4096) -> None:
        self._items: OrderedDict[str, tuple[PackageRow, tuple[DeliveryRow, ...]]] = OrderedDict()
        self._package_of: dict[str, str] = {}  # delivery id -> package id, for those kept
        self._size = size

    def get(self, package_id: str) -> Found | None:
        item = self._items.get(package_id)
        if item is None:
            return None
        self._items.move_to_end(package_id)
        return item[0], list(item[1])

    def keep(self, package_id: str, found: Found) -> None:
        package, deliveries = found
        self._items[package_id] = (package, tuple(deliveries))
        self._items.move_to_end(package_id)
        for d in deliveries:
            self._package_of[d.id] = package_id
        while len(self._items) > self._size:
            self._drop(*self._items.popitem(last=False))

    def moved(self, m: Move) -> None:
        """A committed transition of a delivery (the UPDATE in ``SqlStore.transition``)."""
        package_id = self._package_of.get(m.delivery_id)
        item = self._items.get(package_id) if package_id is not None else None
        if package_id is None or item is None:
            return
        package, deliveries = item
        self._items[package_id] = (
            package,
            tuple(
                replace(
                    d,
                    state=m.to,
                    updated_us=m.at_us,
                    attempts=d.attempts if m.attempts is None else m.attempts,
                    next_attempt_us=m.next_attempt_us,
                    last_error=d.last_error if m.last_error is None else m.last_error,
                )
                if d.id == m.delivery_id
                else d
                for d in deliveries
            ),
        )

    def forget(self, package_id: str) -> None:
        item = self._items.pop(package_id, None)
        if item is not None:
            self._drop(package_id, item)

    def clear(self) -> None:
        self._items.clear()
        self._package_of.clear()

    def _drop(self, package_id: str, item: tuple[PackageRow, tuple[DeliveryRow, ...]]) -> None:
        for d in item[1]:
            if self._package_of.get(d.id) == package_id:
                del self._package_of[d.id]
