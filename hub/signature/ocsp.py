"""OCSP (RFC 6960): a signer certificate's revocation status from its CA's responder.

Pure functions and a cache, no network: ``hub/service/ocsp_check.py`` asks the responder
(through the ``OcspSource`` port) and keeps what it believes in ``OcspAnswers``, which the
trust store consults before the CRL (``TrustStore._check_revocation``).

The request names the certificate by a SHA-1 CertID, as RFC 5019 responders expect (the
hash identifies, it does not protect), and carries a nonce. The response is believed only
if all of this holds; otherwise ``OcspRefused`` says which check failed:

* it reads as an OCSP response (``ocsp_unreadable``) whose status is *successful*
  (``ocsp_unsuccessful``: malformed request, internal error, try later, unauthorised);
* one of its single responses is about this certificate from this issuer (serial number,
  issuer name hash and issuer key hash; ``ocsp_wrong_certificate``);
* its signer is the issuing CA itself, or a certificate in the response that the CA
  issued directly for OCSP signing (extended key usage ``id-kp-OCSPSigning``) and that is
  valid now (``ocsp_responder_unauthorised``);
* a delegate is not revoked (RFC 6960 §4.2.2.2.1): one carrying ``id-pkix-ocsp-nocheck``
  is trusted for its lifetime, as the CA declared; any other must not be listed on the
  CA's newest CRL (``ocsp_responder_revoked``). When that CRL is missing or stale the
  delegate cannot be checked: its answer is kept, but marked ``responder_checked=False``,
  and its ``good`` then does not stand in for the CRL (``TrustStore._ocsp_says``): it
  would vouch for itself where the CRL is missing;
* the signature verifies under that signer's key (``ocsp_signature_invalid``): the
  verification is cryptography's, with the response's own hash algorithm; RSA PKCS#1
  v1.5, ECDSA and EdDSA are accepted;
* a nonce in the response, if any, is the one sent (``ocsp_nonce_mismatch``); a response
  without one (responders that pre-produce their answers) is judged by its times;
* ``thisUpdate`` is not in the future (five minutes' grace for clocks), ``nextUpdate``
  (when given) has not passed, and without ``nextUpdate`` the answer is at most
  ``max_age`` old (``ocsp_stale``).

A believed answer counts until its ``nextUpdate`` or for ``max_age`` after it was
received, whichever is first; without ``nextUpdate``, for ``max_age`` after it was made.
"""

from __future__ import annotations

import datetime as dt
import functools
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID

from hub.errors import OcspRefused
from hub.signature.trust import expired_at, fetchable, fingerprint, revoked_on

Status = Literal["good", "revoked", "unknown"]
CLOCK_GRACE = dt.timedelta(minutes=5)
MAX_RESPONSE_BYTES = 64 * 1024

_STATUS: dict[ocsp.OCSPCertStatus, Status] = {
    ocsp.OCSPCertStatus.GOOD: "good",
    ocsp.OCSPCertStatus.REVOKED: "revoked",
    ocsp.OCSPCertStatus.UNKNOWN: "unknown",
}


@functools.lru_cache(maxsize=1024)
def ocsp_urls(cert: x509.Certificate) -> tuple[str, ...]:
    """The http(s) addresses of the certificate's OCSP responders (its Authority
    Information Access), in the order given. Cached: signers reuse their certificates."""
    try:
        aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except (x509.ExtensionNotFound, ValueError):
        return ()
    return tuple(
        d.access_location.value
        for d in aia
        if d.access_method == AuthorityInformationAccessOID.OCSP
        and isinstance(d.access_location, x509.UniformResourceIdentifier)
        and fetchable(d.access_location.value)
    )


def build_request(cert: x509.Certificate, issuer: x509.Certificate, nonce: bytes) -> bytes:
    """A DER OCSP request for ``cert`` with ``nonce``."""
    request = (
        ocsp.OCSPRequestBuilder()
        .add_certificate(cert, issuer, hashes.SHA1())  # noqa: S303 - CertID, per RFC 5019
        .add_extension(x509.OCSPNonce(nonce), critical=False)
        .build()
    )
    return request.public_bytes(serialization.Encoding.DER)


@dataclass(frozen=True, slots=True)
class OcspAnswer:
    """A believed answer about one certificate from one issuer."""

    status: Status
    issuer: str  # fingerprint of the CA that issued the certificate
    this_update: dt.datetime
    received: dt.datetime
    expires: dt.datetime  # counts until then: nextUpdate, or max_age (see the module)
    revoked_at: dt.datetime | None = None
    reason: str | None = None  # the revocation reason, when given
    responder: str = ""  # subject of the certificate that signed the answer
    # False for a delegate whose own revocation could not be checked (no current CRL of
    # the CA, no id-pkix-ocsp-nocheck): its "good" cannot stand in for that missing CRL.
    responder_checked: bool = True

    def fresh(self, now: dt.datetime) -> bool:
        return now < self.expires


def _refuse(code: str, message: str) -> OcspRefused:
    return OcspRefused(message, code=code)


def _verify_signature(key: object, response: ocsp.OCSPResponse) -> None:
    algorithm = response.signature_hash_algorithm
    sig, data = response.signature, response.tbs_response_bytes
    try:
        if isinstance(key, rsa.RSAPublicKey) and algorithm is not None:
            key.verify(sig, data, padding.PKCS1v15(), algorithm)
        elif isinstance(key, ec.EllipticCurvePublicKey) and algorithm is not None:
            key.verify(sig, data, ec.ECDSA(algorithm))
        elif isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
            key.verify(sig, data)
        else:
            raise _refuse(
                "ocsp_signature_invalid", "the OCSP response's algorithm is not one accepted"
            )
    except (InvalidSignature, ValueError, TypeError) as exc:
        raise _refuse(
            "ocsp_signature_invalid", "the OCSP response's signature does not verify"
        ) from exc


def _is_responder(response: ocsp.OCSPResponse, cert: x509.Certificate) -> bool:
    if response.responder_name is not None:
        return response.responder_name == cert.subject
    key_id = x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest
    return response.responder_key_hash == key_id


def _signer(
    response: ocsp.OCSPResponse,
    issuer: x509.Certificate,
    now: dt.datetime,
    crl: x509.CertificateRevocationList | None,
) -> tuple[x509.Certificate, bool]:
    """The certificate whose key signed the response (the CA, or its delegate), and
    whether its revocation was checked."""
    if _is_responder(response, issuer):
        return issuer, True
    for cert in response.certificates:
        if not _is_responder(response, cert):
            continue
        try:
            cert.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature):
            continue
        try:
            ekus = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except (x509.ExtensionNotFound, ValueError):
            continue
        if ExtendedKeyUsageOID.OCSP_SIGNING not in ekus:
            continue
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            continue
        return cert, _check_delegate(cert, crl, now)
    raise _refuse(
        "ocsp_responder_unauthorised",
        f"the OCSP response is signed neither by {issuer.subject.rfc4514_string()} nor by a "
        "responder it authorised",
    )


def _check_delegate(
    delegate: x509.Certificate, crl: x509.CertificateRevocationList | None, now: dt.datetime
) -> bool:
    """A delegate responder's own revocation: ``id-pkix-ocsp-nocheck`` exempts it (its CA
    said not to ask); otherwise the CA's CRL must not list it. False when it could not
    be checked: no CRL, or a stale one that does not list it."""
    if any(isinstance(e.value, x509.OCSPNoCheck) for e in delegate.extensions):
        return True
    if crl is None:
        return False
    if (on := revoked_on(crl, delegate)) is not None:
        raise _refuse(
            "ocsp_responder_revoked",
            f"the OCSP responder {delegate.subject.rfc4514_string()} is on its CA's CRL "
            f"(revoked {on})",
        )
    return expired_at(crl, now) is None


def _single(
    response: ocsp.OCSPResponse, cert: x509.Certificate, issuer: x509.Certificate
) -> ocsp.OCSPSingleResponse:
    for single in response.responses:
        if single.serial_number != cert.serial_number:
            continue
        expected = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, single.hash_algorithm)
        cert_id = expected.build()
        if (
            single.issuer_name_hash == cert_id.issuer_name_hash
            and single.issuer_key_hash == cert_id.issuer_key_hash
        ):
            return single
    raise _refuse(
        "ocsp_wrong_certificate", "the OCSP response says nothing about the signer certificate"
    )


def read_response(
    data: bytes,
    cert: x509.Certificate,
    issuer: x509.Certificate,
    *,
    nonce: bytes | None,
    now: dt.datetime,
    max_age: dt.timedelta,
    crl: x509.CertificateRevocationList | None = None,
) -> OcspAnswer:
    """The answer ``data`` gives about ``cert``, if it is one to believe (see the
    module); ``OcspRefused`` otherwise. ``crl``: the newest CRL ``issuer`` signed, to
    check a delegate responder against."""
    if len(data) > MAX_RESPONSE_BYTES:
        raise _refuse("ocsp_unreadable", f"the OCSP response is over {MAX_RESPONSE_BYTES} bytes")
    try:
        response = ocsp.load_der_ocsp_response(data)
    except ValueError as exc:
        raise _refuse("ocsp_unreadable", f"not an OCSP response: {exc}") from exc
    if response.response_status is not ocsp.OCSPResponseStatus.SUCCESSFUL:
        raise _refuse(
            "ocsp_unsuccessful",
            f"the OCSP responder answered {response.response_status.name.lower()}",
        )
    try:
        single = _single(response, cert, issuer)
        signer, checked = _signer(response, issuer, now, crl)
        _verify_signature(signer.public_key(), response)
        sent_back = _nonce(response)
    except ValueError as exc:  # a malformed part of a response that parsed at first
        raise _refuse("ocsp_unreadable", f"not a readable OCSP response: {exc}") from exc
    if nonce is not None and sent_back is not None and sent_back != nonce:
        raise _refuse("ocsp_nonce_mismatch", "the OCSP response answers another request")
    this_update, next_update = single.this_update_utc, single.next_update_utc
    if this_update > now + CLOCK_GRACE:
        raise _refuse("ocsp_stale", f"the OCSP response is dated {this_update.isoformat()}")
    if next_update is None:
        expires = this_update + max_age  # "newer information is always available"
        if now > expires:
            raise _refuse("ocsp_stale", f"the OCSP response is from {this_update.isoformat()}")
    else:
        if now > next_update:
            raise _refuse("ocsp_stale", f"the OCSP response expired on {next_update.isoformat()}")
        expires = min(next_update, now + max_age)  # asked again after max_age at the latest
    status = _STATUS[single.certificate_status]
    reason = single.revocation_reason
    return OcspAnswer(
        status,
        fingerprint(issuer),
        this_update,
        now,
        expires,
        revoked_at=single.revocation_time_utc if status == "revoked" else None,
        reason=reason.name if reason is not None else None,
        responder=signer.subject.rfc4514_string(),
        responder_checked=checked,
    )


def _nonce(response: ocsp.OCSPResponse) -> bytes | None:
    try:
        return response.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
    except x509.ExtensionNotFound:
        return None


@dataclass(slots=True)
class OcspAnswers:
    """Believed answers by signer certificate fingerprint, shared by every trust store the
    hub loads. Bounded (least recently stored first out). ``version`` changes whenever a
    certificate's status changes (or whether its responder was checked), so decisions
    cached on an older answer are not reused."""

    limit: int = 4096
    version: int = 0
    _items: OrderedDict[str, OcspAnswer] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def get(self, cert_fingerprint: str) -> OcspAnswer | None:
        with self._lock:
            return self._items.get(cert_fingerprint)

    def put(self, cert_fingerprint: str, answer: OcspAnswer) -> None:
        with self._lock:
            old = self._items.pop(cert_fingerprint, None)
            self._items[cert_fingerprint] = answer
            if old is None or (old.status, old.responder_checked) != (
                answer.status,
                answer.responder_checked,
            ):
                self.version += 1  # what the answer lets the decision conclude changed
            while len(self._items) > self.limit:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)
