"""The intake pipeline: every mandatory step, in order, as explicit calls.

read (size limit, SHA-256 while reading; done by the HTTP face) → parse (hardened)
→ classify → validate → authorise the sender → route → ask the signer's CA about the
signer's certificate (OCSP, when it names a responder and no current answer is held)
→ verify the signature under the system's policy → de-duplicate → store the blob
→ ONE transaction: package, deliveries, ledger events, outbox → hand the outbox to
the relay → answer.

Nothing here is optional middleware. Every refusal is recorded in the ledger with
its code before the error goes back to the caller.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from hub.edxml.model import DocumentPackage, Package, StatusPackage
from hub.edxml.parser import Kind
from hub.errors import Conflict, Forbidden, HubError, Unavailable
from hub.ids import new_id
from hub.ports import BlobStore, Clock, Directory, Duplicate, Spool, Store
from hub.records import (
    DeliveryRow,
    Event,
    IntakeCommit,
    OutboxItem,
    PackageRow,
    State,
    StatusUpdate,
)
from hub.service.auth import Caller
from hub.service.delivery import outbox_for_package
from hub.service.directory_cache import DirectoryCache
from hub.service.examination import Examination, ExamineRequest, ExamineSettings, examine
from hub.service.examiners import ProcessExaminers
from hub.service.metrics import Metrics
from hub.service.ocsp_check import OcspChecker
from hub.service.retention import drop_unheld
from hub.service.routing import Target, dedupe_key, targets
from hub.signature.policy import SignatureChecker, SignaturePolicy, SignatureRecord, enforce
from hub.signature.trust import TrustStore

log = structlog.get_logger(__name__)

INLINE_BYTES = 512 * 1024  # smaller packages are examined on the event loop; larger in a thread


@dataclass(frozen=True, slots=True)
class Submission:
    body: bytes
    sha256: str
    declared_kind: Kind | None  # None: the content says (``parser.kind_of``)
    received_us: int
    started: float  # perf_counter at first byte
    source: str = "native"  # native | vxp | upstream
    upstream_id: str | None = None  # the upstream axis's id, for packages taken from it
    # A large upload, written to disk as it arrived (``body`` is then empty): parsed from
    # the file and adopted as the blob by a rename, never held in memory whole.
    spool: Spool | None = None

    @property
    def size(self) -> int:
        return self.spool.size if self.spool is not None else len(self.body)


@dataclass(frozen=True, slots=True)
class Accepted:
    package: PackageRow
    deliveries: tuple[DeliveryRow, ...]
    signature: dict[str, Any]
    duplicate: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.package.id,
            "kind": self.package.kind,
            "sha256": self.package.sha256,
            "size": self.package.size,
            "duplicate": self.duplicate,
            "signature": self.signature,
            "deliveries": [
                {"recipient": d.recipient, "route": d.route, "state": str(d.state)}
                for d in self.deliveries
            ],
        }


@dataclass(frozen=True, slots=True)
class _Examined:
    kind: Kind
    package: Package
    sender: str
    targets: list[Target]
    signature: SignatureRecord


def _fields(pkg: DocumentPackage | StatusPackage) -> dict[str, Any]:
    """The package columns the ledger and audit queries filter on."""
    if isinstance(pkg, DocumentPackage):
        return {
            "document_id": pkg.document_id,
            "code": pkg.code.text if pkg.code else None,
            "subject": pkg.subject,
            "business_type": int(pkg.business_type),
        }
    rf = pkg.response_for
    return {
        "document_id": rf.document_id if rf else None,
        "code": rf.code.text if rf and rf.code else None,
        "subject": pkg.description,
        "status_code": pkg.status_code,
        "response_for_organ": pkg.addressee,
        "response_for_doc": rf.document_id if rf else None,
    }


@dataclass(frozen=True, slots=True)
class _Queued:
    sub: Submission
    caller: Caller
    context: contextvars.Context
    fut: asyncio.Future[Examination]


class Intake:
    def __init__(
        self,
        *,
        store: Store,
        blobs: BlobStore,
        directory: DirectoryCache,
        trust: TrustStore,
        clock: Clock,
        metrics: Metrics,
        settings: ExamineSettings,
        default_policy: SignaturePolicy,
        on_commit: Callable[[tuple[OutboxItem, ...]], None],
        large_examinations: int = 2,
        examiners: ProcessExaminers | None = None,
        ocsp: OcspChecker | None = None,
    ) -> None:
        self.store = store
        self.blobs = blobs
        self.directory = directory
        self.trust = trust
        self.clock = clock
        self.metrics = metrics
        self.settings = settings  # limits, SHA-1 allowed or not
        self.default_policy = default_policy
        self.on_commit = on_commit
        # Small packages go to examiner processes when there are any (the machine's other
        # cores); otherwise they are examined on the event loop.
        self.examiners = examiners
        # Large packages are examined in threads, a few at a time: each needs about three
        # times its size while verified (the tree and the canonical form), so this, not
        # the number of uploads in flight, bounds the memory they take. They wait (on
        # disk, when spooled) for their turn.
        self._large = asyncio.Semaphore(large_examinations)
        self._queued: list[_Queued] = []  # small packages waiting for this turn's examination
        self.ocsp = ocsp  # asks signers' CAs (hub/service/ocsp_check.py), when on

    # ------------------------------------------------------------------ steps
    def _examine_soon(self, sub: Submission, caller: Caller) -> asyncio.Future[Examination]:
        """Examine a small package after the other submissions ready in this turn of the
        event loop: as one batch to an examiner process, or here one after another (the
        parser's and libxmlsec1's code then stays in the CPU's caches: a package examined
        between other requests' work took ~0.2 ms more of the loop)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Examination] = loop.create_future()
        self._queued.append(_Queued(sub, caller, contextvars.copy_context(), fut))
        if len(self._queued) == 1:
            loop.call_soon(self._examine_queued)
        return fut

    def _examine_queued(self) -> None:
        queued, self._queued = self._queued, []
        live = [q for q in queued if not q.fut.done()]  # done: the client went away
        if not live:
            return
        if self.examiners is not None:
            # A spooled upload (sent without a length) is on disk, not in ``body``: here.
            remote = [q for q in live if q.sub.spool is None]
            live = [q for q in live if q.sub.spool is not None]
            if remote:
                sent = self.examiners.examine_many([self._request(q.sub, q.caller) for q in remote])
                for q, examined in zip(remote, sent, strict=True):
                    examined.add_done_callback(functools.partial(self._examined, q))
        for q in live:
            self._settle(q, self._examine, q.sub, q.caller)

    def _examined(self, q: _Queued, examined: asyncio.Future[Examination]) -> None:
        if q.fut.done():
            return
        if examined.cancelled():
            q.fut.cancel()
            return
        self._settle(q, examined.result)

    @staticmethod
    def _settle(q: _Queued, step: Callable[..., Examination], *args: Any) -> None:
        """``step`` in the request's own context (its log lines carry its request id),
        its outcome handed to the request."""
        try:
            q.fut.set_result(q.context.run(step, *args))
        except Exception as exc:  # noqa: BLE001 - handed to the request it belongs to
            q.fut.set_exception(exc)

    def _policy(self, caller: Caller) -> SignaturePolicy:
        system_policy = caller.system.signature_policy
        return SignaturePolicy(system_policy) if system_policy else self.default_policy

    def _request(self, sub: Submission, caller: Caller) -> ExamineRequest:
        return ExamineRequest(
            sub.spool.path if sub.spool is not None else sub.body,
            sub.sha256,
            sub.declared_kind,
            self._policy(caller) is not SignaturePolicy.OFF,
        )

    def _examine(self, sub: Submission, caller: Caller) -> Examination:
        """Parse, check and verify the bytes (here, or in a thread for a large package)."""
        return examine(self._request(sub, caller), self.settings)

    async def _decide(
        self, ex: Examination, sub: Submission, caller: Caller, directory: Directory
    ) -> _Examined:
        """What needs the hub's state: authorise the sender, route, then judge the
        signature (after asking the signer's CA, when that is called for: only for a
        sender allowed to send, so nobody else makes the hub ask anything)."""
        sender = self._authorise(ex.package, caller, directory)
        route = targets(ex.package, directory, from_upstream=sub.source == "upstream")
        policy = self._policy(caller)
        if self.ocsp is not None and policy is not SignaturePolicy.OFF:
            await self.ocsp.prepare(ex.evidence, self.trust)
        checker = SignatureChecker(self.trust, self.directory.bindings, self.settings.allow_sha1)
        record = enforce(checker.decide(ex.evidence, policy, sender))
        return _Examined(ex.kind, ex.package, sender, route, record)

    @staticmethod
    def _authorise(pkg: Package, caller: Caller, directory: Directory) -> str:
        sender_id = pkg.from_.organ_id or ""
        organ = directory.resolve(sender_id)
        if organ is None or organ.organ_id not in caller.organs:
            raise Forbidden(
                f"system {caller.system_id} may not send as organ {sender_id!r}",
                code="sender_not_allowed",
                details={"organ": sender_id},
            )
        return organ.organ_id

    async def _link(
        self, pkg: DocumentPackage | StatusPackage, sender: str
    ) -> tuple[str | None, StatusUpdate | None]:
        """The earlier document this package refers to, and a status to record on it."""
        if isinstance(pkg, DocumentPackage):
            # Types 1/2/3 name the earlier document in Bussiness/DocumentId (or reuse it).
            earlier_id = (pkg.business.document_id if pkg.business else None) or pkg.document_id
            if pkg.business_type == 0 or not earlier_id:
                return None, None
            earlier = await self.store.find_document(sender, earlier_id)
            return (earlier.id if earlier else None), None
        rf = pkg.response_for
        if rf is None or not rf.document_id or not rf.organ_id or not pkg.status_code:
            return None, None
        at_us = pkg.timestamp.value.timestamp() if pkg.timestamp else None
        at = int(at_us * 1_000_000) if at_us is not None else self.clock.now_us()
        if pkg.status_code == "13":  # the sender asks to take its own document back
            doc = await self.store.find_document(sender, rf.document_id)
            recipient = rf.organ_id
        else:
            doc = await self.store.find_document(rf.organ_id, rf.document_id)
            recipient = sender
        if doc is None:
            return None, None
        resolved = self.directory.current.resolve(recipient)
        return doc.id, StatusUpdate(
            doc.id, resolved.organ_id if resolved else recipient, pkg.status_code, at
        )

    # ------------------------------------------------------------------ pipeline
    async def submit(self, sub: Submission, caller: Caller) -> Accepted:
        bound = log.bind(system=caller.system_id, sha256=sub.sha256, size=sub.size)
        kind_label = sub.declared_kind or "unknown"
        try:
            if sub.source == "upstream" and (echo := await self._echo(sub, caller)):
                return echo
            directory = self.directory.current
            if sub.size <= INLINE_BYTES:
                examination = await self._examine_soon(sub, caller)
            else:
                async with self._large:
                    examination = await asyncio.to_thread(self._examine, sub, caller)
            kind_label = examination.kind
            ex = await self._decide(examination, sub, caller, directory)
            result = await self._commit(sub, caller, ex)
        except HubError as exc:
            await self.record_refusal(
                caller,
                exc,
                source=sub.source,
                kind=kind_label,
                declared_kind=sub.declared_kind,
                sha256=sub.sha256,
                size=sub.size,
            )
            raise
        outcome = "duplicate" if result.duplicate else "accepted"
        self.metrics.intake.labels(kind_label, outcome).inc()
        self.metrics.intake_seconds.labels(kind_label).observe(time.perf_counter() - sub.started)
        bound.info(
            "package_" + outcome,
            package_id=result.package.id,
            sender=result.package.sender_organ,
            recipients=[d.recipient for d in result.deliveries],
            signature=result.signature.get("outcome"),
        )
        return result

    async def _echo(self, sub: Submission, caller: Caller) -> Accepted | None:
        """The upstream axis hands back bytes we already hold (a package of ours it
        also delivered to one of our organs, or a retried take): nothing new."""
        existing = await self.store.package_by_sha256(sub.sha256)
        if existing is None:
            return None
        data = {"key": "upstream_echo", "upstream_id": sub.upstream_id}
        return await self._answer_duplicate(existing, caller.actor, data)

    async def _commit(self, sub: Submission, caller: Caller, ex: _Examined) -> Accepted:
        pkg = ex.package
        now = self.clock.now_us()
        related, status_update = await self._link(pkg, ex.sender)
        row = PackageRow(
            id=new_id(),
            sha256=sub.sha256,
            size=sub.size,
            kind=ex.kind,
            sender_organ=ex.sender,
            system_id=caller.system_id,
            received_us=sub.received_us,
            **_fields(pkg),
            related_package_id=related,
            signature=ex.signature.as_dict(),
            dedupe_key=dedupe_key(pkg, ex.sender),
        )
        deliveries = tuple(
            DeliveryRow(new_id(), row.id, t.recipient, t.route, State.PENDING, updated_us=now)
            for t in ex.targets
        )
        actor = caller.actor
        events = [
            Event(
                "received",
                now,
                row.id,
                organ=ex.sender,
                actor=actor,
                data={
                    "sha256": row.sha256,
                    "size": row.size,
                    "kind": row.kind,
                    "source": sub.source,
                    "upstream_id": sub.upstream_id,
                },
            ),
            Event(
                "accepted",
                now,
                row.id,
                organ=ex.sender,
                actor=actor,
                data={
                    "signature": row.signature,
                    "document_id": row.document_id,
                    "code": row.code,
                    "business_type": row.business_type,
                    "status_code": row.status_code,
                    "related_package_id": related,
                },
            ),
            *(
                Event(
                    "routed",
                    now,
                    row.id,
                    d.id,
                    d.recipient,
                    actor,
                    {
                        "route": d.route,
                        "addressed_as": t.addressed_as,
                    },
                )
                for d, t in zip(deliveries, ex.targets, strict=True)
            ),
        ]
        if status_update is not None:
            events.append(
                Event(
                    "status_received",
                    now,
                    status_update.package_id,
                    organ=ex.sender,
                    actor=actor,
                    data={
                        "status_code": status_update.status_code,
                        "recipient": status_update.recipient,
                        "status_package_id": row.id,
                    },
                )
            )
        outbox = outbox_for_package(deliveries, now)
        if sub.spool is not None:
            await self.blobs.adopt(row.sha256, sub.spool)
        else:
            await self.blobs.put(row.sha256, sub.body)
        try:
            await self.store.commit_intake(
                IntakeCommit(row, deliveries, tuple(events), outbox, status_update)
            )
        except Duplicate as dup:
            return await self._duplicate(row, dup, actor)
        except Unavailable:
            # A network store's connection may have died after the server committed:
            # look before saying no. (An embedded store's failed commit did not happen.)
            if not self.store.commit_ambiguous or not await self._committed_anyway(row.id):
                raise
        self.on_commit(outbox)
        return Accepted(row, deliveries, row.signature)

    async def _committed_anyway(self, package_id: str, wait_s: float = 10.0) -> bool:
        """After a failed commit: did it happen? Waits for the store to answer."""
        deadline = asyncio.get_running_loop().time() + wait_s
        while True:
            try:
                return await self.store.package(package_id) is not None
            except Unavailable:
                if asyncio.get_running_loop().time() > deadline:
                    return False
                await asyncio.sleep(0.25)

    async def _duplicate(self, row: PackageRow, dup: Duplicate, actor: str) -> Accepted:
        existing = await self.store.package(dup.existing_id) if dup.existing_id else None
        if existing is None:  # pragma: no cover - the key's row vanished: never deleted
            raise Conflict("duplicate package", code="duplicate_package")
        if dup.key == "same_key":
            await self._drop_bytes(row.sha256)
            if row.kind == "edoc":
                raise Conflict(
                    f"document {row.document_id!r} from {row.sender_organ} was already "
                    f"received as package {existing.id} with different content; send an "
                    "update (business type 2) or a replacement (3) instead",
                    code="duplicate_document",
                    details={"existing_id": existing.id},
                )
        data = {"key": dup.key, "sha256": row.sha256, "kind": row.kind}
        return await self._answer_duplicate(existing, actor, data, organ=row.sender_organ)

    async def _drop_bytes(self, sha256: str) -> None:
        """The bytes just written were not taken (another package holds their document's
        key): unless some package holds these very bytes, they go, as a refused package's
        never come. An agency's DMS that resends a document re-signed (new bytes, same key)
        would otherwise leave a file behind at each try. Retention's rule
        (``drop_unheld``); a failure to delete is logged, the answer stands."""
        try:
            await drop_unheld(self.store, self.blobs, sha256)
        except (HubError, OSError) as exc:
            log.warning("refused_bytes_kept", sha256=sha256, error=str(exc))

    async def _answer_duplicate(
        self, existing: PackageRow, actor: str, data: dict[str, Any], *, organ: str | None = None
    ) -> Accepted:
        """Record the repeat as a ``duplicate`` event; answer with the package already held."""
        event = Event(
            "duplicate",
            self.clock.now_us(),
            existing.id,
            organ=organ or existing.sender_organ,
            actor=actor,
            data=data,
        )
        await self.store.append_events([event])
        deliveries = tuple(await self.store.deliveries(existing.id))
        return Accepted(existing, deliveries, existing.signature, duplicate=True)

    def count_refusal(self, exc: HubError, kind: str = "unknown") -> None:
        """A refused submission in ``lienthong_intake_total``, once, even when recording it
        is tried again after a failure or by a second face."""
        if not exc.counted:
            self.metrics.intake.labels(kind, exc.error_code).inc()
            exc.counted = True

    async def record_refusal(
        self,
        caller: Caller,
        exc: HubError,
        *,
        source: str,
        kind: str | None = None,
        declared_kind: str | None = None,
        sha256: str | None = None,
        size: int | None = None,
    ) -> None:
        """Count, log and record in the ledger a refused submission, once: the pipeline's
        own refusals, and those of the faces before it (over the size limit, a bad
        parameter), which know less of the package (no hash of a body never read whole)."""
        if exc.recorded:
            return
        self.count_refusal(exc, kind or declared_kind or "unknown")
        log.info(
            "package_refused",
            system=caller.system_id,
            sha256=sha256,
            size=size,
            code=exc.error_code,
            reason=exc.message,
        )
        event = Event(
            "refused",
            self.clock.now_us(),
            actor=caller.actor,
            data={
                "code": exc.error_code,
                "message": exc.message[:500],
                "sha256": sha256,
                "size": size,
                "declared_kind": declared_kind,
                "source": source,
            },
        )
        try:
            await self.store.append_events([event])
            exc.recorded = True
        except HubError as err:
            log.warning("refusal_not_recorded", code=exc.error_code, error=err.error_code)
