"""The seams of the core: storage, blobs, broker, clock and the national axis.

``hub/`` depends only on these protocols; ``adapters/`` implements them and the
application factory receives whichever implementations the configuration chose.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from hub.records import (
    AuditQuery,
    AuditRow,
    CertBinding,
    Checkpoint,
    Credential,
    DeliveryRow,
    Event,
    InboxItem,
    IntakeCommit,
    LedgerEvent,
    Organ,
    OutboxItem,
    PackageRow,
    State,
    Stats,
    System,
)


class Clock(Protocol):
    def now_us(self) -> int: ...


class SystemClock:
    def now_us(self) -> int:
        return time.time_ns() // 1000


@dataclass(frozen=True, slots=True)
class Directory:
    """A consistent snapshot of the directory, cached by the service."""

    version: int
    organs: dict[str, Organ]  # by organ id
    aliases: dict[str, str]  # alias -> organ id
    systems: dict[str, System]
    credentials: dict[str, Credential]  # by token id
    bindings: tuple[CertBinding, ...]
    vxp_secrets: dict[str, str] = field(default_factory=dict)  # system id -> sealed secret
    # TLS client certificate SHA-256 fingerprint -> the system it authenticates (mTLS)
    client_certs: dict[str, str] = field(default_factory=dict)
    # system id -> (its sealed VXP secret before the last rotation, accepted until then, µs)
    vxp_previous: dict[str, tuple[str, int]] = field(default_factory=dict)

    def resolve(self, organ_id: str) -> Organ | None:
        organ = self.organs.get(organ_id)
        if organ is None and organ_id in self.aliases:
            organ = self.organs.get(self.aliases[organ_id])
        return organ


class LedgerStore(Protocol):
    """The sealed ledger: genesis, tiles of the Merkle tree, signed checkpoints."""

    async def ledger_genesis(self, origin: str | None, now_us: int) -> tuple[str, int] | None:
        """The ledger's (origin, created_us); written on first use unless ``origin`` is None."""
        ...

    def seal_lock(self) -> AbstractAsyncContextManager[bool]:
        """Yield True when this process may seal now (one sealer across processes)."""
        ...

    async def seal_barrier(self) -> int:
        """The highest event sequence below which no transaction can still add an event."""
        ...

    async def ledger_events(
        self, after_seq: int, upto_seq: int, limit: int
    ) -> list[LedgerEvent]: ...
    async def package_ledger_events(self, package_id: str) -> list[LedgerEvent]: ...
    async def tiles(self, keys: Sequence[tuple[int, int]]) -> dict[tuple[int, int], bytes]: ...
    async def tile_range(self, level: int, first: int, last: int) -> dict[int, bytes]:
        """Tiles ``first``..``last`` (inclusive) of one level, by index."""
        ...

    async def put_seal(
        self, tiles: Mapping[tuple[int, int], bytes], checkpoint: Checkpoint, cert_pem: str
    ) -> None:
        """Write the grown tiles and the new checkpoint in one transaction."""
        ...

    async def checkpoints(self, after_size: int, limit: int) -> list[Checkpoint]: ...
    async def latest_checkpoint(self) -> Checkpoint | None: ...
    async def checkpoint_at_least(self, size: int) -> Checkpoint | None:
        """The earliest checkpoint whose tree has at least ``size`` leaves."""
        ...

    async def certificate(self, key_id: str) -> str | None:
        """The PEM certificate (with its chain) that signs checkpoints under ``key_id``."""
        ...


class AuditStore(Protocol):
    """Audit queries over packages and deliveries; retention and legal hold."""

    async def audit(
        self, query: AuditQuery, *, after: tuple[int, str] | None, limit: int
    ) -> list[AuditRow]:
        """Newest first; ``after`` is the (received_us, package id) of the last row seen."""
        ...

    async def purge_due(self, received_before_us: int, limit: int) -> list[PackageRow]:
        """Packages old enough to purge: not purged yet, not under legal hold."""
        ...

    async def mark_purged(self, package_id: str, event: Event) -> bool:
        """Record the purge (and its tombstone event); False if held or already purged."""
        ...

    async def sha256_in_use(self, sha256: str) -> bool:
        """True while some package with these bytes is not purged."""
        ...

    async def set_hold(self, package_id: str, reason: str | None, event: Event) -> bool:
        """Place (reason) or lift (None) a legal hold; False when nothing changed."""
        ...

    async def holds(self) -> dict[str, str]: ...
    async def hold_reason(self, package_id: str) -> str | None:
        """The reason of one package's legal hold (``None``: not held)."""
        ...

    async def intake_counts(self, since_us: int) -> dict[str, int]:
        """Packages accepted and submissions refused since a time (dashboard throughput)."""
        ...


class Store(LedgerStore, AuditStore, Protocol):
    """Ledger, deliveries, outbox and directory: the hub's durable state."""

    # True when a commit that failed (connection lost) may still have happened on the
    # server, so the caller must look before answering (network databases).
    commit_ambiguous: bool

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def ping(self) -> None: ...

    # directory
    async def directory(self) -> Directory: ...
    async def directory_version(self) -> int: ...
    async def put_organ(self, organ: Organ, event: Event) -> None: ...
    async def put_organs(self, items: Sequence[tuple[Organ, Event]]) -> None: ...
    async def put_system(self, system: System, event: Event) -> None:
        """Add a system or change its settings; a suspension is kept as it is."""
        ...

    async def set_suspended(self, system_id: str, reason: str | None, event: Event) -> bool:
        """Suspend a system (a reason) or resume it (None); False when nothing changed
        (no such system, or already in that state)."""
        ...

    async def put_credential(self, cred: Credential, event: Event) -> None: ...
    async def put_binding(self, binding: CertBinding, event: Event) -> None: ...
    async def delete_binding(self, binding: CertBinding, event: Event) -> bool:
        """False when the certificate was not bound to that organ (nothing written)."""
        ...

    async def put_client_cert(
        self, fingerprint: str, system_id: str, subject: str, event: Event
    ) -> None: ...
    async def delete_client_cert(self, fingerprint: str, event: Event) -> bool:
        """False when no such certificate was registered (nothing written)."""
        ...

    async def put_vxp_secret(
        self, system_id: str, sealed: str, event: Event, previous_until_us: int | None = None
    ) -> None:
        """A system's VXP secret; with ``previous_until_us`` the one it replaces is still
        accepted until then (without, it is refused at once)."""
        ...

    async def use_stamp(
        self, system_id: str, stamp: str, now_us: int, forget_before_us: int
    ) -> bool:
        """Record a VXP strict-mode timestamp; False when this system already used it."""
        ...

    # intake
    async def commit_intake(self, commit: IntakeCommit) -> None:
        """Raise ``Duplicate`` (with the existing package id) on a de-duplication key."""
        ...

    async def append_events(self, events: Sequence[Event]) -> None: ...
    async def find_document(self, sender: str, document_id: str) -> PackageRow | None: ...

    # packages and deliveries
    async def package(self, package_id: str) -> PackageRow | None: ...
    async def package_by_sha256(self, sha256: str) -> PackageRow | None: ...
    async def deliveries(self, package_id: str) -> list[DeliveryRow]: ...
    async def package_with_deliveries(
        self, package_id: str
    ) -> tuple[PackageRow, list[DeliveryRow]] | None:
        """A package and its deliveries in one query (``None`` when there is no package)."""
        ...

    async def deliveries_of(self, package_ids: Sequence[str]) -> dict[str, list[DeliveryRow]]:
        """The deliveries of several packages in one query, by package id."""
        ...

    async def delivery(self, delivery_id: str) -> DeliveryRow | None: ...
    async def transition(
        self,
        delivery_id: str,
        allowed: frozenset[State],
        to: State,
        event: Event,
        *,
        attempts: int | None = None,
        next_attempt_us: int | None = None,
        last_error: str | None = None,
        outbox: Sequence[OutboxItem] = (),
    ) -> bool:
        """Move a delivery if its state is in ``allowed``; append ``event`` only then."""
        ...

    async def inbox(
        self,
        organs: Sequence[str],
        *,
        kind: str | None,
        since_us: int | None,
        after_seq: int | None,
        limit: int,
        states: frozenset[State],
    ) -> list[InboxItem]: ...
    async def inbox_count(
        self, organs: Sequence[str], *, kind: str | None, states: frozenset[State]
    ) -> int: ...
    async def sent(self, system_id: str, *, kind: str | None, limit: int) -> list[PackageRow]:
        """The newest packages a system submitted (VXP getSentEdocList without a docId)."""
        ...

    async def events(self, package_id: str) -> list[Event]: ...
    async def ledger(self, after_seq: int, limit: int) -> list[Event]:
        """Every event in ledger order (all packages, refusals, directory changes)."""
        ...

    # outbox and recovery
    async def outbox_due(self, older_than_us: int, limit: int) -> list[OutboxItem]: ...
    async def outbox_done(self, ids: Sequence[str]) -> None: ...
    async def stuck_deliveries(self, older_than_us: int, limit: int) -> list[DeliveryRow]: ...
    async def parked_pushes(
        self, organs: Sequence[str], mark: str, limit: int
    ) -> list[DeliveryRow]:
        """Push deliveries to ``organs`` left available (not fetched) with ``last_error``
        ``mark``: parked while their system was suspended."""
        ...

    async def stats(self, now_us: int, overdue_before_us: int) -> Stats: ...


class Duplicate(Exception):
    def __init__(self, key: str, existing_id: str | None) -> None:
        super().__init__(key)
        self.key = key
        self.existing_id = existing_id


class Spool(Protocol):
    """A large upload being written straight to the blob store's disk as it arrives."""

    path: Path  # the file, readable once ``finish`` returned
    size: int

    async def write(self, chunk: bytes) -> None: ...
    async def finish(self) -> None:
        """The file is complete (and on disk once ``adopt`` has returned)."""
        ...

    def discard(self) -> None:
        """Remove the file (a refused or failed upload); harmless once adopted."""
        ...

    async def trim(self, n: int) -> None:
        """Drop the last ``n`` bytes of a finished spool (on disk once adopted)."""
        ...


class BlobStore(Protocol):
    async def put(self, sha256: str, data: bytes) -> str: ...
    def spool(self) -> Spool: ...
    async def adopt(self, sha256: str, spool: Spool) -> str:
        """Make a finished spool the blob ``sha256`` (a rename, no copy)."""
        ...

    async def get(self, sha256: str) -> bytes: ...
    def local_path(self, sha256: str) -> Path:
        """The file holding the bytes (a large package is parsed from it, not read whole)."""
        ...

    def stream(self, sha256: str) -> AsyncIterator[bytes]:
        """The bytes in chunks, for sending a large package without holding it in memory
        (raises ``NotFound`` with code ``blob_missing`` before the first chunk)."""
        ...

    async def exists(self, sha256: str) -> bool: ...
    def free_bytes(self) -> int:
        """Space left on the blob volume (``OSError`` when it cannot be looked at)."""
        ...

    def check_room(self) -> None:
        """``Unavailable`` (``blob_store_full``) while the volume is below its reserve."""
        ...

    async def delete(self, sha256: str) -> None:
        """Remove the bytes (retention); absent bytes are not an error."""
        ...


# A package larger than this is never held whole: spooled to disk on the way in, sent in
# chunks on the way out (downloads, push, forwarding, lienthong's VXP client).
STREAM_ABOVE = 1024 * 1024


@dataclass(slots=True)
class Outgoing:
    """A stored package's bytes on their way out of the hub (download, push, forward).

    A package up to ``STREAM_ABOVE`` is ``data``; a larger one is ``chunks``, a stream
    from the blob store whose first chunk was already read (a missing blob fails before
    anything is sent), so it is never in memory whole. A stream can be sent once.
    """

    sha256: str
    size: int
    data: bytes | None = None
    chunks: AsyncIterator[bytes] | None = None

    @classmethod
    async def of(cls, blobs: BlobStore, sha256: str, size: int) -> Outgoing:
        """Open a package's bytes; ``NotFound`` (``blob_missing``) when they are gone."""
        if size <= STREAM_ABOVE:
            return cls(sha256, size, data=await blobs.get(sha256))
        stream = blobs.stream(sha256)
        first = await anext(stream, b"")

        async def chunks() -> AsyncIterator[bytes]:
            yield first
            async for chunk in stream:
                yield chunk

        return cls(sha256, size, chunks=chunks())

    def body(self, suffix: bytes = b"") -> bytes | AsyncIterator[bytes]:
        """What an HTTP client sends: the bytes, then ``suffix`` (``size`` + its length)."""
        if self.data is not None:
            return self.data + suffix if suffix else self.data
        chunks, self.chunks = self.chunks, None
        if chunks is None:
            raise RuntimeError("a streamed package body can be sent only once")
        if not suffix:
            return chunks

        async def with_suffix() -> AsyncIterator[bytes]:
            async for chunk in chunks:
                yield chunk
            yield suffix

        return with_suffix()

    def base64(self) -> bytes | AsyncIterator[bytes]:
        """The bytes in base64: at once when small, else encoded as they stream (each piece
        a multiple of 3 bytes, so no padding inside; the 0-2 left over go to the next).
        ``base64_size`` long either way."""
        body = self.body()
        if isinstance(body, bytes):
            return base64.b64encode(body)

        async def encoded(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
            carry = b""
            async for chunk in chunks:
                data = carry + chunk
                cut = len(data) - len(data) % 3
                carry = data[cut:]
                yield base64.b64encode(data[:cut])
            yield base64.b64encode(carry)

        return encoded(body)

    @property
    def base64_size(self) -> int:
        return 4 * ((self.size + 2) // 3)

    async def read(self) -> bytes:
        """The whole bytes in memory (test doubles; never on a production path)."""
        body = self.body()
        if isinstance(body, bytes):
            return body
        return b"".join([chunk async for chunk in body])


@dataclass(frozen=True, slots=True)
class Message:
    routing_key: str
    body: dict[str, Any]
    attempt: int = 0


Handler = Callable[[Message], Awaitable[None]]


class Broker(Protocol):
    """Topic routing of small JSON references (never package bytes)."""

    volatile: bool  # True when messages do not survive a process restart

    async def connect(self) -> None: ...
    async def close(self) -> None: ...
    async def ping(self) -> None: ...
    async def publish_many(self, messages: Sequence[Message]) -> None:
        """Return once every message is confirmed by the broker (pipelined)."""
        ...

    async def consume(self, queue: str, binding: str, handler: Handler, prefetch: int) -> None:
        """Run ``handler`` for each message; the broker applies the retry decision."""
        ...

    async def dead_letters(self) -> list[Message]: ...
    async def dead_count(self) -> int:
        """How many messages wait on the dead-letter queue (cheap; for the gauge)."""
        ...

    async def depth(self) -> dict[str, int]: ...


class Retry(Exception):
    """Raised by a handler: deliver this message again after ``delay_s``."""

    def __init__(self, delay_s: float, reason: str) -> None:
        super().__init__(reason)
        self.delay_s = delay_s
        self.reason = reason


class DeadLetter(Exception):
    """Raised by a handler: the message is finished with; park it on the dead-letter queue."""


@dataclass(frozen=True, slots=True)
class RemoteItem:
    """A package waiting for this hub on the upstream axis."""

    doc_id: str
    kind: Literal["edoc", "status"]
    sender: str | None = None


@dataclass(frozen=True, slots=True)
class RemoteOrgan:
    """An organ as the upstream axis lists it (both id forms when it knows them)."""

    organ_id: str
    name: str
    parent: str | None = None
    aliases: tuple[str, ...] = ()
    deleted: bool = False
    version: int = 0


@dataclass(slots=True)
class Taken:
    """A package taken from the upstream axis: in memory (``body``), or written to a spool
    file as it arrived (``spool``; ``body`` empty), with its SHA-256 either way. The taker
    discards the spool once intake is done with it (harmless once adopted)."""

    body: bytes
    sha256: str
    spool: Spool | None = None

    @classmethod
    def of(cls, data: bytes) -> Taken:
        """Bytes taken whole, hashed here."""
        return cls(data, hashlib.sha256(data).hexdigest())

    @property
    def size(self) -> int:
        return self.spool.size if self.spool is not None else len(self.body)


class UpstreamAxis(Protocol):
    """The national axis (or a parent hub): forward to it, and take what it holds for us.

    Transient trouble raises ``Unavailable`` (retry with backoff); a definitive
    refusal raises ``UpstreamRejected``.
    """

    async def forward(self, package: PackageRow, body: Outgoing) -> str:
        """Send the original bytes as their sender; return the upstream's document id."""
        ...

    async def pending(self, kind: Literal["edoc", "status"]) -> list[RemoteItem]: ...
    async def fetch(self, doc_id: str, blobs: BlobStore) -> Taken:
        """A received document's bytes (a large one may go to a spool of ``blobs``)."""
        ...

    async def confirm(self, doc_id: str, result: Literal["done", "fail"]) -> None: ...
    async def organs(self) -> list[RemoteOrgan]: ...
    async def close(self) -> None: ...


class Pusher(Protocol):
    """POSTs a package to an agency's own endpoint."""

    async def push(self, url: str, package: PackageRow, body: Outgoing) -> None:
        """Raise ``Unavailable`` (retry) or ``InputError`` (the endpoint refused it)."""
        ...


@dataclass(frozen=True, slots=True)
class FetchedCrl:
    data: bytes
    etag: str | None = None  # for the next conditional request
    last_modified: str | None = None


class CrlSource(Protocol):
    """Downloads a CA's published CRL (``hub/service/crl_refresh.py`` decides whether to
    believe it)."""

    async def fetch(
        self, url: str, *, etag: str | None = None, last_modified: str | None = None
    ) -> FetchedCrl | None:
        """The CRL's bytes, or ``None`` when unchanged since ``etag``/``last_modified``.
        Raise ``Unavailable`` (try again later) or ``PackageTooLarge`` (over the cap)."""
        ...

    async def close(self) -> None: ...


class OcspSource(Protocol):
    """Asks a CA's OCSP responder (``hub/service/ocsp_check.py`` decides whether to
    believe the answer)."""

    async def ask(self, url: str, request: bytes) -> bytes:
        """POST a DER OCSP request; the response's bytes. Raise ``Unavailable`` when the
        responder cannot be reached, answers an error status or too much."""
        ...

    async def close(self) -> None: ...
