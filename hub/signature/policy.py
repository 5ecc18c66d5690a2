"""Signature policy: what a package's signature must be for it to be accepted.

* ``required``: only a valid W3C signature whose certificate chains to a trusted
  CA, is within its validity period, is not revoked, has a signing key usage and
  is bound to the sending organ.
* ``if-present``: a real signature must pass all of that; a placeholder or no
  signature is accepted and recorded as such.
* ``off``: not checked; recorded as unchecked.

The result is always a ``SignatureRecord`` (refusals too), so the ledger can keep
which case applied and why; ``enforce`` turns a refusal into ``SignatureRefused``.
"""

from __future__ import annotations

import datetime as dt
import enum
import functools
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from hub.edxml.parser import ParsedPackage, SignatureForm
from hub.errors import SignatureRefused
from hub.signature.trust import TrustStore
from hub.signature.verify import SignedBy, check_signature, validate_signer


class SignaturePolicy(enum.StrEnum):
    REQUIRED = "required"
    IF_PRESENT = "if-present"
    OFF = "off"


class Outcome(enum.StrEnum):
    VALID = "valid"  # real signature, verified, trusted, bound
    INVALID = "invalid"  # real signature that failed a check (see reason_code)
    PLACEHOLDER = "placeholder"  # the SDK's dummy Signature / DigitalSignature
    ABSENT = "absent"
    UNCHECKED = "unchecked"  # policy off


@dataclass(frozen=True, slots=True)
class SignatureRecord:
    outcome: Outcome
    policy: SignaturePolicy
    accepted: bool
    reason_code: str | None = None
    reason: str | None = None
    signer_subject: str | None = None
    cert_fingerprint: str | None = None
    chain: tuple[str, ...] = ()
    chain_fingerprints: tuple[str, ...] = ()
    signature_method: str | None = None
    digest_method: str | None = None
    revocation: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """A fresh dict (callers may extend it); built from a per-record cache, since one
        signer's packages share one record and ``asdict`` is slow on the intake path."""
        return dict(_record_dict(self))


@functools.lru_cache(maxsize=1024)
def _record_dict(record: SignatureRecord) -> dict[str, Any]:
    d = asdict(record)
    d["outcome"] = str(record.outcome)
    d["policy"] = str(record.policy)
    d["chain"] = list(record.chain)
    d["chain_fingerprints"] = list(record.chain_fingerprints)
    return d


@dataclass(frozen=True, slots=True)
class CertBindings:
    """Which organs a signer certificate may sign for: by SHA-256 fingerprint or subject."""

    by_fingerprint: Mapping[str, frozenset[str]] = field(default_factory=dict)
    by_subject: Mapping[str, frozenset[str]] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        fingerprints: Mapping[str, Iterable[str]] | None = None,
        subjects: Mapping[str, Iterable[str]] | None = None,
    ) -> CertBindings:
        return cls(
            {k.lower(): frozenset(v) for k, v in (fingerprints or {}).items()},
            {k: frozenset(v) for k, v in (subjects or {}).items()},
        )

    def allows(self, fingerprint: str, subject: str, organ: str) -> bool:
        return organ in self.by_fingerprint.get(fingerprint, frozenset()) or organ in (
            self.by_subject.get(subject, frozenset())
        )


@dataclass(frozen=True, slots=True)
class SignatureEvidence:
    """What the package's bytes alone say about its signature: its form and, for a real
    signature that was checked, whether it matched (``signed``) or why not
    (``refusal``: code, message). Plain data: made wherever the package was parsed
    (another process, for small packages), judged by ``SignatureChecker.decide``."""

    form: SignatureForm
    signed: SignedBy | None = None
    refusal: tuple[str, str] | None = None


def signature_evidence(
    parsed: ParsedPackage, *, check: bool, allow_sha1: bool = False
) -> SignatureEvidence:
    """The bytes' part of the signature check (shape and cryptographic match);
    ``check=False`` (policy off) looks at nothing but the form."""
    form = parsed.signature_form
    if not check or form != "xmldsig":
        return SignatureEvidence(form)
    try:
        return SignatureEvidence(form, signed=check_signature(parsed, allow_sha1=allow_sha1))
    except SignatureRefused as exc:
        return SignatureEvidence(form, refusal=(exc.error_code, exc.message))


@dataclass(slots=True)
class SignatureChecker:
    trust: TrustStore
    bindings: CertBindings = field(default_factory=CertBindings)
    allow_sha1: bool = False

    def check(
        self,
        parsed: ParsedPackage,
        policy: SignaturePolicy,
        sender_organ: str | None,
        *,
        at: dt.datetime | None = None,
    ) -> SignatureRecord:
        evidence = signature_evidence(
            parsed, check=policy is not SignaturePolicy.OFF, allow_sha1=self.allow_sha1
        )
        return self.decide(evidence, policy, sender_organ, at=at)

    def decide(
        self,
        evidence: SignatureEvidence,
        policy: SignaturePolicy,
        sender_organ: str | None,
        *,
        at: dt.datetime | None = None,
    ) -> SignatureRecord:
        """The policy's verdict on the evidence: trust in the signer's certificate (chain,
        validity, revocation, key usage) and its binding to the sending organ."""
        if policy is SignaturePolicy.OFF:
            return SignatureRecord(Outcome.UNCHECKED, policy, accepted=True)
        if evidence.form != "xmldsig":
            return _unsigned(evidence.form, policy)
        if evidence.refusal is not None:
            code, message = evidence.refusal
            return SignatureRecord(Outcome.INVALID, policy, False, code, message)
        if evidence.signed is None:
            raise ValueError("evidence for an XML signature that was not checked")
        try:
            v = validate_signer(evidence.signed, self.trust, at=at)
        except SignatureRefused as exc:
            return SignatureRecord(Outcome.INVALID, policy, False, exc.error_code, exc.message)
        c = v.chain
        record = SignatureRecord(
            Outcome.VALID,
            policy,
            True,
            signer_subject=c.subject,
            cert_fingerprint=c.fingerprint,
            chain=c.chain,
            chain_fingerprints=c.chain_fingerprints,
            signature_method=v.signature_method,
            digest_method=v.digest_method,
            revocation=c.revocation,
        )
        if sender_organ is None or not self.bindings.allows(c.fingerprint, c.subject, sender_organ):
            return replace(
                record,
                outcome=Outcome.INVALID,
                accepted=False,
                reason_code="cert_not_bound",
                reason=f"the signer ({c.subject}) is not registered to sign for organ "
                f"{sender_organ}",
            )
        return record


def _unsigned(form: SignatureForm, policy: SignaturePolicy) -> SignatureRecord:
    outcome = Outcome.PLACEHOLDER if form == "placeholder" else Outcome.ABSENT
    if policy is SignaturePolicy.IF_PRESENT:
        return SignatureRecord(outcome, policy, accepted=True)
    code = "signature_placeholder" if form == "placeholder" else "signature_missing"
    reason = (
        "the package carries only a placeholder signature, which nobody can verify"
        if form == "placeholder"
        else "the package carries no signature"
    ) + "; this system's policy requires a valid XML signature"
    return SignatureRecord(outcome, policy, False, code, reason)


def enforce(record: SignatureRecord) -> SignatureRecord:
    """Raise ``SignatureRefused`` for a refused record; return it otherwise."""
    if not record.accepted:
        raise SignatureRefused(
            record.reason or "signature refused",
            code=record.reason_code or "signature_refused",
            details={"signature": record.as_dict()},
        )
    return record
