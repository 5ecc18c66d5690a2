"""Trust store: CA certificates and CRLs from a directory, and signer-chain validation.

Path building and signature checks on the chain are cryptography's X.509
verification API; this module adds what document signing needs on top: a key
usage fit for signing, revocation by CRL (signature and freshness of the CRL
checked; of several CRLs from one CA the newest counts), and specific reason codes for
each refusal. Validated chains also tell where their CAs publish CRLs (``CrlUrls``), for
the hub to fetch them (``hub/service/crl_refresh.py``).
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID, ObjectIdentifier
from cryptography.x509.verification import (
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from hub.errors import ConfigError, SignatureRefused

if TYPE_CHECKING:
    from hub.signature.ocsp import OcspAnswers

# "checked": by CRLs; "ocsp": the signer by its CA's OCSP responder, its CAs by CRLs;
# "no_crl": some certificate of the chain could not be checked (no CRL, no answer).
Revocation = Literal["checked", "ocsp", "no_crl"]

# A signer's extended key usage, when present, must name one of these purposes.
_SIGNING_EKUS = frozenset(
    {
        ExtendedKeyUsageOID.EMAIL_PROTECTION,
        ExtendedKeyUsageOID.CLIENT_AUTH,  # common on Vietnamese CA signing tokens
        ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,
        ObjectIdentifier("1.3.6.1.5.5.7.3.36"),  # id-kp-documentSigning (RFC 9336)
        ObjectIdentifier("1.3.6.1.4.1.311.10.3.12"),  # Microsoft document signing
    }
)


def expired_at(crl: x509.CertificateRevocationList, now: dt.datetime) -> dt.datetime | None:
    """``crl``'s ``nextUpdate`` when it has passed (newer revocations may be missing)."""
    next_update = crl.next_update_utc
    return next_update if next_update is not None and now > next_update else None


def revoked_on(crl: x509.CertificateRevocationList, cert: x509.Certificate) -> str | None:
    """When ``crl`` says ``cert`` was revoked (ISO 8601), or None when it does not list it."""
    entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
    return entry.revocation_date_utc.isoformat() if entry is not None else None


@functools.lru_cache(maxsize=1024)
def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the DER encoding, lower-case hex: how the ledger names a certificate.
    Cached: signers reuse their certificates (a certificate hashes and compares by its
    DER encoding, so a different certificate is a different entry)."""
    return cert.fingerprint(hashes.SHA256()).hex()


@dataclass(frozen=True, slots=True)
class ChainResult:
    subject: str
    fingerprint: str
    chain: tuple[str, ...]  # subjects, leaf first
    chain_fingerprints: tuple[str, ...]
    revocation: Revocation
    not_after: dt.datetime


def _refuse(code: str, message: str, **details: object) -> SignatureRefused:
    return SignatureRefused(message, code=code, details=dict(details))


def check_signing_usage(cert: x509.Certificate) -> None:
    """The leaf must be a signing certificate: digitalSignature or nonRepudiation."""
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        raise _refuse(
            "cert_key_usage", "the signer certificate has no key usage extension"
        ) from None
    if not (ku.digital_signature or ku.content_commitment):
        raise _refuse(
            "cert_key_usage",
            "the signer certificate is not allowed to sign documents "
            "(key usage lacks digitalSignature and nonRepudiation)",
        )
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return
    if not any(oid in _SIGNING_EKUS for oid in eku):
        raise _refuse(
            "cert_key_usage",
            "the signer certificate's extended key usage does not allow document signing",
        )


_CERT_SUFFIXES = (".pem", ".crt", ".cer")
_FILE_SUFFIXES = (*_CERT_SUFFIXES, ".crl")


def _store_files(path: Path, crl_dir: Path | None) -> list[Path]:
    """The files a trust store is read from: the directory's certificates and CRLs, then
    the CRLs of ``crl_dir`` (the fetched ones) when it exists; each directory in order."""
    files = sorted(f for f in path.iterdir() if f.suffix.lower() in _FILE_SUFFIXES)
    if crl_dir is not None and crl_dir.is_dir():
        files += sorted(f for f in crl_dir.iterdir() if f.suffix.lower() == ".crl")
    return files


def directory_state(path: Path, crl_dir: Path | None = None) -> tuple[tuple[str, int, int], ...]:
    """The trust store's files (name, size, mtime): a new CRL, an added or removed CA
    changes it."""
    stats = ((str(f), f.stat()) for f in _store_files(path, crl_dir))
    return tuple(sorted((name, st.st_size, st.st_mtime_ns) for name, st in stats))


def fetchable(url: str) -> bool:
    """Whether the hub fetches CRLs from ``url``: http and https only (no LDAP, no files)."""
    return urlsplit(url).scheme.lower() in ("http", "https")


def crl_urls(cert: x509.Certificate) -> tuple[str, ...]:
    """The http(s) addresses in a certificate's CRL distribution points (where its
    issuer publishes the CRL that would revoke it); LDAP and other schemes are ignored."""
    try:
        points = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    except (x509.ExtensionNotFound, ValueError):
        return ()
    urls = []
    for point in points:
        for name in point.full_name or ():
            if isinstance(name, x509.UniformResourceIdentifier):
                url = name.value.strip()
                if fetchable(url):
                    urls.append(url)
    return tuple(urls)


def read_crl(data: bytes) -> x509.CertificateRevocationList:
    """A CRL in PEM or DER; ``ValueError`` when it is neither."""
    if b"-----BEGIN" in data:
        return x509.load_pem_x509_crl(data)
    return x509.load_der_x509_crl(data)


def crl_newer(a: x509.CertificateRevocationList, b: x509.CertificateRevocationList) -> bool:
    """Whether ``a`` was issued after ``b`` (its thisUpdate, then its CRL number)."""
    return (a.last_update_utc, _crl_number(a)) > (b.last_update_utc, _crl_number(b))


def partial_crl(crl: x509.CertificateRevocationList) -> str | None:
    """Why ``crl`` does not list every revoked certificate of its issuer (a delta CRL, one
    for some reasons only, an indirect CRL, one for attribute certificates): such a CRL
    must never stand in for the full one. ``None`` for a complete CRL."""
    try:
        kinds = {type(e.value) for e in crl.extensions}
    except ValueError:
        return "a CRL with an extension that does not read"
    if x509.DeltaCRLIndicator in kinds:
        return "a delta CRL"
    if x509.IssuingDistributionPoint not in kinds:
        return None
    idp = crl.extensions.get_extension_for_class(x509.IssuingDistributionPoint).value
    limits = (
        (idp.only_some_reasons, "a CRL for some revocation reasons only"),
        (idp.indirect_crl, "an indirect CRL"),
        (idp.only_contains_attribute_certs, "a CRL for attribute certificates"),
    )
    return next((why for limited, why in limits if limited), None)


def _newest(
    crls: Iterable[x509.CertificateRevocationList],
) -> x509.CertificateRevocationList | None:
    """The newest complete CRL of ``crls`` (one CA's): the one in force."""
    newest = None
    for crl in crls:
        if partial_crl(crl) is None and (newest is None or crl_newer(crl, newest)):
            newest = crl
    return newest


def _crl_number(crl: x509.CertificateRevocationList) -> int:
    try:
        return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except (x509.ExtensionNotFound, ValueError):
        return -1


@dataclass(slots=True)
class CrlUrls:
    """Where the CAs of validated chains publish their CRLs: URL -> the CA that signs the
    CRL found there (the certificate's issuer in a chain that reached a trusted CA), and
    that CA's own chain up to the trusted CA (issuer first), which lets the address be
    vouched for again after a restart (``hub/service/crl_addresses.py``). Shared by every
    trust store the hub loads; bounded (the addresses come from certificates, which come
    from outside, if signed by trusted CAs). ``learned`` counts the addresses added, so a
    reader can tell there is something new to keep."""

    limit: int = 64
    found: dict[str, x509.Certificate] = field(default_factory=dict)
    chains: dict[str, tuple[x509.Certificate, ...]] = field(default_factory=dict)
    learned: int = 0

    def note(self, chain: Sequence[x509.Certificate]) -> None:
        for i, cert in enumerate(chain[:-1]):  # each certificate but the trusted CA's
            for url in crl_urls(cert):
                self.add(url, tuple(chain[i + 1 :]))

    def add(self, url: str, issuer_chain: tuple[x509.Certificate, ...]) -> bool:
        """Keep ``url`` as the address of ``issuer_chain[0]``'s CRL; False when it was
        known already or the limit is reached."""
        if url in self.found or len(self.found) >= self.limit:
            return False
        self.chains[url] = issuer_chain  # before ``found``: a snapshot never misses it
        self.found[url] = issuer_chain[0]
        self.learned += 1
        return True

    def snapshot(self) -> dict[str, x509.Certificate]:
        return dict(self.found)  # one C-level copy: safe beside a thread adding

    def chain_snapshot(self) -> dict[str, tuple[x509.Certificate, ...]]:
        return dict(self.chains)


@dataclass(slots=True)
class TrustStore:
    """Trusted CA certificates and the CRLs of their issuers."""

    anchors: list[x509.Certificate]
    crls: list[x509.CertificateRevocationList] = field(default_factory=list)
    require_crl: bool = False
    cache_seconds: float = 300.0
    seen_crl_urls: CrlUrls = field(default_factory=CrlUrls)
    # Answers from the CAs' OCSP responders (hub/service/ocsp_check.py), shared by every
    # store the hub loads; consulted before the CRL.
    ocsp: OcspAnswers | None = None
    _newest: dict[str, x509.CertificateRevocationList | None] = field(
        default_factory=dict, repr=False
    )
    _cache: OrderedDict[tuple[str, ...], tuple[float, int, ChainResult]] = field(
        default_factory=OrderedDict, repr=False
    )
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def from_directory(
        cls,
        path: Path,
        *,
        require_crl: bool = False,
        crl_dir: Path | None = None,
        seen_crl_urls: CrlUrls | None = None,
        ocsp: OcspAnswers | None = None,
    ) -> TrustStore:
        """Load ``*.pem``/``*.crt``/``*.cer`` CA certificates and ``*.crl`` files, and the
        ``*.crl`` files of ``crl_dir`` (the fetched ones) when it exists."""
        if not path.is_dir():
            raise ConfigError(f"trust store directory {path} does not exist")
        anchors: list[x509.Certificate] = []
        crls: list[x509.CertificateRevocationList] = []
        for f in _store_files(path, crl_dir):
            data = f.read_bytes()
            try:
                if f.suffix.lower() in _CERT_SUFFIXES:
                    if b"-----BEGIN" in data:
                        anchors.extend(x509.load_pem_x509_certificates(data))
                    else:
                        anchors.append(x509.load_der_x509_certificate(data))
                else:
                    crls.append(read_crl(data))
            except ValueError as exc:
                raise ConfigError(f"cannot read trust store file {f}: {exc}") from exc
        if not anchors:
            raise ConfigError(f"trust store {path} holds no CA certificate")
        return cls(
            anchors,
            crls,
            require_crl=require_crl,
            seen_crl_urls=seen_crl_urls or CrlUrls(),
            ocsp=ocsp,
        )

    def crl_expiry(self) -> dt.datetime | None:
        """When the first CRL in force goes stale: the earliest ``nextUpdate`` among each
        CA's newest complete CRL (a copy superseded by a newer one going stale is no
        matter). A CRL that a known certificate of its issuer (a trusted CA, or a CA of a
        validated chain) does not verify is left out, as it is when a chain is checked: a
        forged copy dated later must not hide the real one's coming expiry. One whose
        issuer is not known yet still counts (its expiry is worth the warning)."""
        known = {
            fingerprint(c): c
            for c in itertools.chain(self.anchors, *self.seen_crl_urls.chain_snapshot().values())
        }
        in_force = [self.crl_for(ca) for ca in known.values()]  # signatures checked there
        names = {ca.subject for ca in known.values()}
        unknown = [c for c in self.crls if c.issuer not in names]
        in_force += [
            _newest(c for c in unknown if c.issuer == n) for n in {c.issuer for c in unknown}
        ]
        updates = [
            c.next_update_utc for c in in_force if c is not None and c.next_update_utc is not None
        ]
        return min(updates) if updates else None

    def summary(self) -> dict[str, object]:
        """What is trusted, for the ledger: each CA's subject and fingerprint, each CRL's
        issuer, number and validity."""
        crls = []
        for c in self.crls:
            number = _crl_number(c)
            crls.append(
                {
                    "issuer": c.issuer.rfc4514_string(),
                    "number": number if number >= 0 else None,
                    "this_update": c.last_update_utc.isoformat(),
                    "next_update": c.next_update_utc.isoformat() if c.next_update_utc else None,
                    "revoked": len(c),
                }
            )
        return {
            "anchors": [
                {"subject": a.subject.rfc4514_string(), "fingerprint": fingerprint(a)}
                for a in self.anchors
            ],
            "crls": crls,
            "require_crl": self.require_crl,
        }

    def validate(
        self,
        leaf: x509.Certificate,
        intermediates: Sequence[x509.Certificate] = (),
        *,
        at: dt.datetime | None = None,
    ) -> ChainResult:
        """Validate a signer certificate; raise ``SignatureRefused`` with the reason."""
        now = at or dt.datetime.now(dt.UTC)
        key = (fingerprint(leaf), *sorted(fingerprint(c) for c in intermediates))
        # A decision made before an OCSP answer changed a status is not reused.
        version = self.ocsp.version if self.ocsp is not None else 0
        if at is None:
            with self._lock:
                hit = self._cache.get(key)
            if (
                hit is not None
                and hit[0] > now.timestamp()
                and hit[1] == version
                and hit[2].not_after > now
            ):
                return hit[2]
        result = self._validate(leaf, intermediates, now)
        if at is None:
            with self._lock:
                self._cache[key] = (now.timestamp() + self.cache_seconds, version, result)
                while len(self._cache) > 4096:
                    self._cache.popitem(last=False)
        return result

    def _validate(
        self, leaf: x509.Certificate, intermediates: Sequence[x509.Certificate], now: dt.datetime
    ) -> ChainResult:
        subject = leaf.subject.rfc4514_string()
        if now < leaf.not_valid_before_utc:
            raise _refuse(
                "cert_not_yet_valid",
                f"the signer certificate ({subject}) is valid only from "
                f"{leaf.not_valid_before_utc.isoformat()}",
            )
        if now > leaf.not_valid_after_utc:
            raise _refuse(
                "cert_expired",
                f"the signer certificate ({subject}) expired on "
                f"{leaf.not_valid_after_utc.isoformat()}",
            )
        check_signing_usage(leaf)
        chain = self.chain(leaf, intermediates, now)
        self.seen_crl_urls.note(chain)  # before revocation: a refusal for want of a CRL too
        revocation = self._check_revocation(chain, now)
        return ChainResult(
            subject=subject,
            fingerprint=fingerprint(leaf),
            chain=tuple(c.subject.rfc4514_string() for c in chain),
            chain_fingerprints=tuple(fingerprint(c) for c in chain),
            revocation=revocation,
            not_after=min(c.not_valid_after_utc for c in chain),
        )

    def chain(
        self, leaf: x509.Certificate, intermediates: Sequence[x509.Certificate], now: dt.datetime
    ) -> list[x509.Certificate]:
        """The path from ``leaf`` to a trusted CA (leaf first), signatures and validity
        checked, revocation not; ``cert_untrusted`` when there is none."""
        subject = leaf.subject.rfc4514_string()
        verifier = (
            PolicyBuilder()
            .store(Store(self.anchors))
            .time(now)
            .max_chain_depth(6)
            .extension_policies(
                ca_policy=ExtensionPolicy.webpki_defaults_ca(),
                # Document signing certificates are not TLS certificates: no SAN or
                # EKU requirements here; key usage is checked above with a precise code.
                ee_policy=ExtensionPolicy.permit_all(),
            )
            .build_client_verifier()
        )
        try:
            verified = verifier.verify(leaf, list(intermediates))
        except VerificationError as exc:
            raise _refuse(
                "cert_untrusted",
                f"the signer certificate ({subject}) does not chain to a trusted CA: {exc}",
            ) from exc
        return list(verified.chain)

    def crl_for(self, issuer: x509.Certificate) -> x509.CertificateRevocationList | None:
        """The newest CRL ``issuer`` signed (an operator's copy and a fetched one may
        both be there; the older would miss the latest revocations)."""
        key = fingerprint(issuer)
        with self._lock:
            if key in self._newest:
                return self._newest[key]
        public = issuer.public_key()
        newest = _newest(
            c
            for c in self.crls
            if c.issuer == issuer.subject and c.is_signature_valid(public)  # type: ignore[arg-type]
        )
        with self._lock:
            self._newest[key] = newest
        return newest

    def _ocsp_says(
        self, cert: x509.Certificate, issuer: x509.Certificate, now: dt.datetime
    ) -> bool:
        """True when a current OCSP answer says ``cert`` is good; ``cert_revoked`` when
        it says revoked; False when there is none (or it says unknown, or it is a good
        answer from a delegate responder whose own revocation could not be checked for
        want of a current CRL, for which it cannot stand in): ask the CRL."""
        answer = self.ocsp.get(fingerprint(cert)) if self.ocsp is not None else None
        if answer is None or answer.issuer != fingerprint(issuer) or not answer.fresh(now):
            return False
        if answer.status == "revoked":
            when = answer.revoked_at.isoformat() if answer.revoked_at else "an unknown date"
            raise _refuse(
                "cert_revoked",
                f"the certificate {cert.subject.rfc4514_string()} was revoked on {when}, "
                f"says its CA's OCSP responder ({answer.responder})",
            )
        return answer.status == "good" and answer.responder_checked

    def _check_revocation(self, chain: list[x509.Certificate], now: dt.datetime) -> Revocation:
        """Each certificate but the anchor: a current OCSP answer (the signer's), and the
        CRL its CA signed. Either one saying revoked refuses. A good OCSP answer stands
        in for a missing or stale CRL; without one, those are ``revocation_unknown``
        under ``require_crl`` and ``no_crl`` otherwise."""
        state: Revocation = "checked"
        for cert, issuer in itertools.pairwise(chain):
            good = self._ocsp_says(cert, issuer, now)
            crl = self.crl_for(issuer)
            if crl is not None:
                if (expired := expired_at(crl, now)) is not None and not good:
                    raise _refuse(
                        "revocation_unknown",
                        f"the CRL of {issuer.subject.rfc4514_string()} expired on "
                        f"{expired.isoformat()}; refresh the trust store",
                    )
                if (on := revoked_on(crl, cert)) is not None:
                    raise _refuse(
                        "cert_revoked",
                        f"the certificate {cert.subject.rfc4514_string()} was revoked on {on}",
                    )
            if good:
                if state == "checked":
                    state = "ocsp"
            elif crl is None:
                if self.require_crl:
                    raise _refuse(
                        "revocation_unknown",
                        f"no valid CRL from {issuer.subject.rfc4514_string()} in the trust "
                        "store, and no OCSP answer",
                    )
                state = "no_crl"
        return state
