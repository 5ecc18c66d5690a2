"""Plain records that cross the ports: directory entries, packages, deliveries, events.

They carry no behaviour and no third-party types, so stores, brokers and HTTP faces
can all share them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Literal

Route = Literal["local", "upstream", "push"]
Role = Literal["agency", "admin", "auditor"]


class State(enum.StrEnum):
    """Delivery states (DESIGN.md): per (package, recipient)."""

    PENDING = "pending"
    AVAILABLE = "available"
    FETCHED = "fetched"
    DONE = "done"
    FAILED_BY_RECIPIENT = "failed_by_recipient"
    RETRYING = "retrying"
    DEAD = "dead"


FINAL_STATES = frozenset({State.DONE, State.FAILED_BY_RECIPIENT, State.DEAD})
OPEN_STATES = tuple(sorted(str(s) for s in State if s not in FINAL_STATES))
# What an inbox lists unless asked for more: delivered to the recipient's system and not yet
# acknowledged (the stores keep an index of exactly these, ``adapters/sql/schema.py``).
INBOX_STATES = frozenset({State.AVAILABLE, State.FETCHED})


@dataclass(frozen=True, slots=True)
class Organ:
    organ_id: str
    name: str
    system_id: str | None  # the connected system that serves it (local organs)
    location: Literal["local", "upstream"] = "local"
    parent: str | None = None
    closed: bool = False
    push_url: str | None = None
    aliases: tuple[str, ...] = ()
    modified_us: int = 0  # last change (VXP getSynchronizeUnit's modifyDate)
    version: int = 0  # directory version of that change


@dataclass(frozen=True, slots=True)
class System:
    system_id: str
    name: str
    role: Role = "agency"
    signature_policy: str | None = None  # None: the hub-wide default
    organs: tuple[str, ...] = ()
    vxp_strict: bool = False  # VXP: fresh, never reused timestamps (lienthong peers only)
    may_register: bool = False  # VXP registerAgency / deleteAgency allowed
    networks: tuple[str, ...] = ()  # CIDRs it may connect from (hub/service/networks.py); any
    # Set only by ``Store.set_suspended``, never by ``put_system``: why an administrator
    # suspended the system (its credentials refused, nothing pushed to it); None: active.
    suspended: str | None = None


@dataclass(frozen=True, slots=True)
class Credential:
    """A bearer token: ``<token_id>.<secret>``; only the secret's SHA-256 is stored."""

    token_id: str
    system_id: str
    secret_sha256: str
    created_us: int
    revoked: bool = False
    expires_us: int | None = None  # refused from then on (``[auth] token_days``); None: never

    def expired(self, now_us: int) -> bool:
        return self.expires_us is not None and now_us >= self.expires_us

    def __repr__(self) -> str:  # never print the hash either
        return f"Credential(token_id={self.token_id!r}, system_id={self.system_id!r})"


@dataclass(frozen=True, slots=True)
class CertBinding:
    fingerprint: str
    organ_id: str


@dataclass(frozen=True, slots=True)
class PackageRow:
    id: str
    sha256: str
    size: int
    kind: Literal["edoc", "status"]
    sender_organ: str
    system_id: str
    received_us: int
    document_id: str | None = None
    code: str | None = None
    subject: str | None = None
    business_type: int | None = None
    status_code: str | None = None
    response_for_organ: str | None = None
    response_for_doc: str | None = None
    related_package_id: str | None = None
    signature: dict[str, Any] = field(default_factory=dict)
    dedupe_key: str | None = None
    purged_us: int | None = None  # when retention removed the bytes (the record stays)


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    id: str
    package_id: str
    recipient: str
    route: Route
    state: State
    attempts: int = 0
    next_attempt_us: int | None = None
    updated_us: int = 0
    last_error: str | None = None
    business_status: str | None = None
    business_status_us: int | None = None
    seq: int = 0


@dataclass(frozen=True, slots=True)
class Event:
    """One ledger event. ``data`` is JSON-serialisable; never holds secrets or bytes."""

    type: str
    at_us: int
    package_id: str | None = None
    delivery_id: str | None = None
    organ: str | None = None
    actor: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    seq: int = 0


@dataclass(frozen=True, slots=True)
class OutboxItem:
    id: str
    routing_key: str
    body: dict[str, Any]
    created_us: int


@dataclass(frozen=True, slots=True)
class InboxItem:
    delivery: DeliveryRow
    package: PackageRow


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    """A business status to record against the delivery it answers."""

    package_id: str
    recipient: str
    status_code: str
    at_us: int


@dataclass(frozen=True, slots=True)
class IntakeCommit:
    """Everything one accepted package writes, committed in one transaction."""

    package: PackageRow
    deliveries: tuple[DeliveryRow, ...]
    events: tuple[Event, ...]
    outbox: tuple[OutboxItem, ...]
    status_update: StatusUpdate | None = None


@dataclass(frozen=True, slots=True)
class Stats:
    pending: int
    oldest_pending_age_s: float
    dead: int
    overdue_acks: int
    outbox: int
    oldest_upstream_age_s: float = 0.0  # oldest upstream delivery not yet forwarded
    last_event_seq: int = 0


@dataclass(frozen=True, slots=True)
class LedgerEvent:
    """An event as the ledger hashes it: ``data_json`` is the stored text, byte for byte."""

    seq: int
    type: str
    at_us: int
    package_id: str | None
    delivery_id: str | None
    organ: str | None
    actor: str | None
    data_json: str


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A signed statement of the ledger tree: its size and root at a time."""

    origin: str
    size: int
    root: bytes
    at_us: int
    key_id: str  # SHA-256 fingerprint of the signing certificate
    signature: bytes


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """Audit filters; every one optional, all combined with AND."""

    sender: str | None = None
    recipient: str | None = None
    document_id: str | None = None
    code: str | None = None
    subject: str | None = None  # words, each must appear (case-insensitive)
    kind: str | None = None
    business_type: int | None = None
    state: str | None = None  # delivery state of any recipient
    business_status: str | None = None
    signature: str | None = None  # signature outcome
    since_us: int | None = None
    until_us: int | None = None
    # Documents received before this instant some recipient of which has not answered
    # (``hub.service.workdays.unanswered``): the overdue acknowledgements at the query's
    # time.
    overdue_before_us: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__ if getattr(self, k) is not None}


@dataclass(frozen=True, slots=True)
class AuditRow:
    package: PackageRow
    deliveries: tuple[DeliveryRow, ...]
    held: bool = False
