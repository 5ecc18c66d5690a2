"""Evidence bundles: everything needed to prove, offline, what happened to one package.

A bundle is one canonical JSON document (sorted keys, no spaces, ASCII): the package
bytes, every ledger event of the package with its inclusion proof, the checkpoint
that covers them and the hub's certificate chain. ``verify_bundle`` needs no
database: it re-derives every leaf, checks every proof against the checkpoint root,
the checkpoint signature, the certificate chain, and that the bytes are the ones the
ledger recorded. The file must be byte-for-byte canonical, so no byte of it can be
altered without verification failing.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding

from hub.errors import NotFound
from hub.ledger.checkpoint import chain_problem, signature_ok
from hub.ledger.leaf import event_leaf
from hub.ledger.merkle import inclusion_path, verify_inclusion
from hub.ledger.proofs import b64, checkpoint_from_json, checkpoint_json
from hub.ledger.tiles import TileSource
from hub.ports import BlobStore, Outgoing, Store
from hub.records import LedgerEvent
from hub.signature.trust import fingerprint

FORMAT = "lienthong-evidence/1"


def canonical(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


_BYTES_SLOT = "lienthong-evidence-package-bytes"  # where the base64 goes, while building


@dataclass(slots=True)
class Bundle:
    """A bundle ready to be written: the canonical JSON around the package's base64, which
    is encoded as the bytes stream from the blob store (base64 needs no JSON escaping, so
    the pieces joined are exactly the canonical document). A bundle can be written once."""

    head: bytes
    package: Outgoing | None  # None when the bytes were purged
    tail: bytes = b""

    @property
    def size(self) -> int:
        middle = self.package.base64_size if self.package is not None else 0
        return len(self.head) + middle + len(self.tail)

    async def chunks(self) -> AsyncIterator[bytes]:
        yield self.head
        if self.package is not None:
            encoded = self.package.base64()
            if isinstance(encoded, bytes):
                yield encoded
            else:
                async for piece in encoded:
                    yield piece
        if self.tail:
            yield self.tail

    async def read(self) -> bytes:
        """The whole bundle in memory (tests; the hub and the CLI write it in pieces)."""
        return b"".join([c async for c in self.chunks()])


async def export_bundle(store: Store, blobs: BlobStore, package_id: str) -> Bundle:
    package = await store.package(package_id)
    if package is None:
        raise NotFound(f"no package {package_id}", code="package_not_found")
    events = await store.package_ledger_events(package_id)
    cp = await store.latest_checkpoint()
    if cp is None or not events or events[-1].seq >= cp.size:
        raise NotFound(
            f"package {package_id} has events not sealed yet; export again after the next "
            "checkpoint",
            code="not_sealed",
        )
    pem = await store.certificate(cp.key_id)
    if pem is None:
        raise NotFound(f"no certificate stored for checkpoint key {cp.key_id}", code="no_cert")
    source = TileSource(store.tiles)
    proofs = [
        {"seq": e.seq, "path": [b64(h) for h in await inclusion_path(source, e.seq, cp.size)]}
        for e in events
    ]
    # Opened before anything is answered: a missing blob is an error, not a cut-off file.
    data = None if package.purged_us else await Outgoing.of(blobs, package.sha256, package.size)
    doc = {
        "format": FORMAT,
        "package": {
            "id": package.id,
            "sha256": package.sha256,
            "size": package.size,
            "bytes": _BYTES_SLOT if data is not None else None,
        },
        "events": [asdict(e) for e in events],
        "proofs": proofs,
        "checkpoint": checkpoint_json(cp),
        "certificates": [
            c.public_bytes(Encoding.PEM).decode()
            for c in x509.load_pem_x509_certificates(pem.encode())
        ],
    }
    text = canonical(doc)
    if data is None:
        return Bundle(text, None)
    # The last occurrence is the slot: only the proofs (base64 hashes, numbers) and the
    # package's id, SHA-256 and size follow it in canonical (sorted) order.
    head, found, tail = text.rpartition(f'"{_BYTES_SLOT}"'.encode())
    assert found
    return Bundle(head + b'"', data, b'"' + tail)


@dataclass(slots=True)
class BundleReport:
    package_id: str = ""
    events: int = 0
    checkpoint_size: int = 0
    anchored: bool = False  # the chain ends in an anchor given by the verifier
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_bundle(raw: bytes, anchors: Sequence[x509.Certificate] = ()) -> BundleReport:
    report = BundleReport()
    try:
        doc = json.loads(raw)
        if not isinstance(doc, dict) or canonical(doc) != raw:
            report.problems.append("the bundle is not in its canonical form: it was altered")
            return report
        _check(doc, anchors, report)
    except (KeyError, TypeError, ValueError) as exc:
        report.problems.append(f"the bundle is malformed: {exc!r}")
    return report


def _check(doc: dict[str, Any], anchors: Sequence[x509.Certificate], report: BundleReport) -> None:
    if doc["format"] != FORMAT:
        report.problems.append(f"unknown bundle format {doc['format']!r}")
        return
    cp = checkpoint_from_json(doc["checkpoint"])
    report.checkpoint_size = cp.size
    certs = [x509.load_pem_x509_certificate(p.encode()) for p in doc["certificates"]]
    if not certs or not signature_ok(cp, certs[0]):
        report.problems.append("the checkpoint signature does not verify")
    report.anchored = bool(anchors)
    problem = _chain_bytes(certs, anchors) or chain_problem(
        certs, list(anchors) or certs[-1:], cp.at_us
    )
    if problem:
        report.problems.append(f"the hub certificate does not chain to the trust anchor: {problem}")
    pkg = doc["package"]
    report.package_id = pkg["id"]
    events = [LedgerEvent(**e) for e in doc["events"]]
    report.events = len(events)
    proofs = doc["proofs"]
    if [p["seq"] for p in proofs] != [e.seq for e in events] or not events:
        report.problems.append("the proofs do not match the events one to one")
        return
    for e, p in zip(events, proofs, strict=True):
        path = [base64.b64decode(h, validate=True) for h in p["path"]]
        if e.package_id != pkg["id"]:
            report.problems.append(f"event {e.seq} belongs to another package")
        if not verify_inclusion(event_leaf(e), e.seq, cp.size, path, cp.root):
            report.problems.append(f"event {e.seq} is not in the checkpoint's tree")
    _check_bytes(pkg, events, report)


def _chain_bytes(certs: list[x509.Certificate], anchors: Sequence[x509.Certificate]) -> str | None:
    """Every certificate carried is the issuer of the one before; the last is the anchor."""
    try:
        for cert, issuer in zip(certs, [*certs[1:], certs[-1]], strict=True):
            cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature) as exc:
        return f"the certificate chain in the bundle is broken ({exc!r})"
    if anchors and fingerprint(certs[-1]) not in {fingerprint(a) for a in anchors}:
        return "the bundle's CA is not the trust anchor given"
    return None


def _check_bytes(pkg: dict[str, Any], events: list[LedgerEvent], report: BundleReport) -> None:
    received = [json.loads(e.data_json).get("sha256") for e in events if e.type == "received"]
    if pkg["sha256"] not in received:
        report.problems.append("no sealed 'received' event records this package's SHA-256")
    if pkg["bytes"] is None:
        if not any(e.type == "purged" for e in events):
            report.problems.append("the package bytes are missing and no purge was recorded")
        return
    data = base64.b64decode(pkg["bytes"], validate=True)
    if hashlib.sha256(data).hexdigest() != pkg["sha256"] or len(data) != pkg["size"]:
        report.problems.append("the package bytes are not the ones the ledger recorded")


def bundle_bytes(raw: bytes) -> bytes | None:
    """The package bytes carried by a bundle (after it verified)."""
    data = json.loads(raw)["package"]["bytes"]
    return base64.b64decode(data) if data is not None else None
