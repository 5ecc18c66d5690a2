"""Signed checkpoints: the hub's statement "the ledger had N leaves with root R at T".

The signed body is a short text (docs/ledger.md), signed with the hub's key: RSA
PKCS#1 v1.5 or ECDSA, SHA-256, by ``cryptography``. The certificate that verifies
it is named by its SHA-256 fingerprint (``key_id``) and chained to a trust anchor
by the X.509 path validation the signature checks use (``TrustStore``).
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from hub.errors import ConfigError, HubError
from hub.records import Checkpoint
from hub.signature.trust import TrustStore, fingerprint

HEADER = "lienthong-checkpoint/1"


def body(origin: str, size: int, root: bytes, at_us: int) -> bytes:
    return f"{HEADER}\n{origin}\n{size}\n{base64.b64encode(root).decode()}\n{at_us}\n".encode()


def signed_body(cp: Checkpoint) -> bytes:
    return body(cp.origin, cp.size, cp.root, cp.at_us)


@dataclass(frozen=True, slots=True)
class CheckpointSigner:
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    chain: tuple[x509.Certificate, ...]  # the hub's certificate first, then its issuers

    def __repr__(self) -> str:  # never show the key
        return f"CheckpointSigner(key_id={self.key_id!r})"

    @classmethod
    def from_files(
        cls, key_file: Path, cert_file: Path, chain_file: Path | None
    ) -> CheckpointSigner:
        try:
            key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
            certs = x509.load_pem_x509_certificates(cert_file.read_bytes())
            if chain_file is not None and chain_file.exists():
                certs += x509.load_pem_x509_certificates(chain_file.read_bytes())
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"cannot load the ledger signing key/certificate ({key_file}, {cert_file}): {exc}"
            ) from exc
        if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            raise ConfigError("the ledger signing key must be RSA or EC")
        spki = serialization.PublicFormat.SubjectPublicKeyInfo
        pem = serialization.Encoding.PEM
        if certs[0].public_key().public_bytes(pem, spki) != key.public_key().public_bytes(
            pem, spki
        ):
            raise ConfigError(f"{cert_file} is not the certificate of {key_file}")
        return cls(key, tuple(certs))

    @property
    def key_id(self) -> str:
        return fingerprint(self.chain[0])

    def sign(self, origin: str, size: int, root: bytes, at_us: int) -> Checkpoint:
        data = body(origin, size, root, at_us)
        if isinstance(self.key, rsa.RSAPrivateKey):
            sig = self.key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        else:
            sig = self.key.sign(data, ec.ECDSA(hashes.SHA256()))
        return Checkpoint(origin, size, root, at_us, self.key_id, sig)

    def chain_pem(self) -> list[str]:
        return [c.public_bytes(serialization.Encoding.PEM).decode() for c in self.chain]


def signature_ok(cp: Checkpoint, cert: x509.Certificate) -> bool:
    """True when ``cert`` is the named key and its key signed exactly this checkpoint."""
    if fingerprint(cert) != cp.key_id:
        return False
    key = cert.public_key()
    data = signed_body(cp)
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(cp.signature, data, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(cp.signature, data, ec.ECDSA(hashes.SHA256()))
        else:
            return False
    except InvalidSignature:
        return False
    return True


def chain_problem(
    chain: Sequence[x509.Certificate], anchors: Sequence[x509.Certificate], at_us: int
) -> str | None:
    """Why the signing certificate does not chain to ``anchors`` at the checkpoint's time."""
    at = dt.datetime.fromtimestamp(at_us / 1e6, dt.UTC)
    try:
        TrustStore(list(anchors), []).validate(chain[0], chain[1:], at=at)
    except HubError as exc:
        return f"{exc.error_code}: {exc.message}"
    return None
