"""A development PKI: a CA, the hub's key, agency signing certificates, CRLs.

For demos, tests and a first run (``lienthong pki init``). Production trust
stores hold the real CAs (Ban Cơ yếu Chính phủ, commercial CAs) instead.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

from hub.signature.trust import fingerprint

_USAGE_FLAGS = (
    "digital_signature",
    "content_commitment",
    "key_encipherment",
    "data_encipherment",
    "key_agreement",
    "key_cert_sign",
    "crl_sign",
    "encipher_only",
    "decipher_only",
)


def key_usage(*flags: str) -> x509.KeyUsage:
    """A KeyUsage with exactly the named flags set."""
    unknown = set(flags) - set(_USAGE_FLAGS)
    if unknown:
        raise ValueError(f"unknown key usage flags: {sorted(unknown)}")
    return x509.KeyUsage(**{f: f in flags for f in _USAGE_FLAGS})


SIGNING = key_usage("digital_signature", "content_commitment")
ENCIPHERMENT_ONLY = key_usage("key_encipherment", "data_encipherment")
_CA_USAGE = key_usage("key_cert_sign", "crl_sign")


@dataclass(frozen=True, slots=True)
class Issued:
    cert: x509.Certificate
    key: rsa.RSAPrivateKey

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.cert)


def _name(cn: str, org: str = "lienthong development") -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def new_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def _crl_points(urls: Sequence[str]) -> x509.CRLDistributionPoints:
    return x509.CRLDistributionPoints(
        [
            x509.DistributionPoint([x509.UniformResourceIdentifier(u)], None, None, None)
            for u in urls
        ]
    )


def make_ca(
    cn: str, *, parent: Issued | None = None, days: int = 3650, crl_urls: Sequence[str] = ()
) -> Issued:
    """A root CA, or an intermediate when ``parent`` is given (``crl_urls``: where the
    parent publishes the CRL that would revoke it)."""
    key = new_key()
    now = _now()
    issuer_name = parent.cert.subject if parent else _name(cn)
    signing_key = parent.key if parent else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_CA_USAGE, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signing_key.public_key()),
            critical=False,
        )
    )
    if crl_urls:
        builder = builder.add_extension(_crl_points(crl_urls), critical=False)
    return Issued(builder.sign(signing_key, hashes.SHA256()), key)


def issue(
    ca: Issued,
    cn: str,
    *,
    days: int = 825,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    key_usage: x509.KeyUsage = SIGNING,
    eku: Sequence[x509.ObjectIdentifier] | None = (ExtendedKeyUsageOID.EMAIL_PROTECTION,),
    org: str = "lienthong development",
    san: Sequence[x509.GeneralName] = (),
    crl_urls: Sequence[str] = (),
    ocsp_urls: Sequence[str] = (),
    ocsp_nocheck: bool = False,
) -> Issued:
    """An end-entity certificate (a document-signing certificate by default; with ``san``,
    e.g. a TLS server certificate; ``crl_urls``: where ``ca`` publishes its CRL;
    ``ocsp_urls``: where its OCSP responder answers; ``ocsp_nocheck``: a delegate OCSP
    responder whose own revocation is not to be checked)."""
    key = new_key()
    now = _now()
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn, org))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - dt.timedelta(hours=1))
        .not_valid_after(not_after or now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(key_usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
    )
    if eku:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(san)), critical=False)
    if crl_urls:
        builder = builder.add_extension(_crl_points(crl_urls), critical=False)
    if ocsp_urls:
        access = [
            x509.AccessDescription(
                AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(u)
            )
            for u in ocsp_urls
        ]
        builder = builder.add_extension(x509.AuthorityInformationAccess(access), critical=False)
    if ocsp_nocheck:
        builder = builder.add_extension(x509.OCSPNoCheck(), critical=False)
    return Issued(builder.sign(ca.key, hashes.SHA256()), key)


def make_crl(
    ca: Issued,
    revoked: Iterable[x509.Certificate] = (),
    *,
    last_update: dt.datetime | None = None,
    next_update: dt.datetime | None = None,
    number: int | None = None,
) -> x509.CertificateRevocationList:
    now = _now()
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.cert.subject)
        .last_update(last_update or now - dt.timedelta(minutes=5))
        .next_update(next_update or now + dt.timedelta(days=7))
    )
    if number is not None:
        builder = builder.add_extension(x509.CRLNumber(number), critical=False)
    for cert in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(cert.serial_number)
            .revocation_date(now - dt.timedelta(minutes=1))
            .build()
        )
    return builder.sign(ca.key, hashes.SHA256())


def _write(path: Path, data: bytes, *, secret: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if secret:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


def init_pki(
    directory: Path, agencies: Iterable[tuple[str, str]], hub_name: str = "lienthong hub"
) -> dict[str, str]:
    """Write a development PKI under ``directory``; return {organ id: certificate fingerprint}.

    Layout: ``trust/`` (CA certificate + CRL: the hub's trust store), ``ca/`` (CA key),
    ``hub/`` (the hub's key and certificate, for ledger checkpoints), ``agencies/<organ>.{pem,key}``
    and ``bindings.json`` (which certificate signs for which organ).
    """
    ca = make_ca("lienthong development CA")
    _write(directory / "ca" / "ca.key", ca.key_pem, secret=True)
    _write(directory / "ca" / "ca.pem", ca.cert_pem)
    _write(directory / "trust" / "ca.pem", ca.cert_pem)
    _write(
        directory / "trust" / "ca.crl",
        make_crl(ca, next_update=_now() + dt.timedelta(days=365)).public_bytes(
            serialization.Encoding.PEM
        ),
    )
    hub = issue(ca, hub_name)
    _write(directory / "hub" / "hub.key", hub.key_pem, secret=True)
    _write(directory / "hub" / "hub.pem", hub.cert_pem)
    bindings: dict[str, str] = {}
    for name, organ in agencies:
        agency = issue(ca, name, org=organ)
        _write(directory / "agencies" / f"{organ}.key", agency.key_pem, secret=True)
        _write(directory / "agencies" / f"{organ}.pem", agency.cert_pem)
        bindings[organ] = agency.fingerprint
    _write(
        directory / "bindings.json",
        json.dumps(
            {"fingerprints": {fp: [organ] for organ, fp in bindings.items()}}, indent=2
        ).encode(),
    )
    return bindings
