"""VXP shared secrets at rest.

The VXP scheme is an HMAC with the system's secret, so the hub must be able to
recover the secret itself (a one-way hash, as for bearer tokens, cannot verify an
HMAC). Secrets are stored encrypted with AES-256-GCM (``cryptography``) under a
hub key kept in a file outside the database (mode 0600); the system id is the
associated data, so a ciphertext moved to another system's row does not decrypt.
"""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hub.errors import ConfigError


def load_or_create_key(path: Path) -> bytes:
    """The hub's secret-encryption key; created (0600) on first use."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process created it first
        else:
            with os.fdopen(fd, "wb") as f:
                f.write(base64.b64encode(AESGCM.generate_key(bit_length=256)) + b"\n")
    try:
        key = base64.b64decode(path.read_bytes().strip(), validate=True)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the VXP key file {path}: {exc}") from exc
    if len(key) != 32:
        raise ConfigError(f"the VXP key file {path} must hold 32 bytes (base64)")
    return key


class SecretBox:
    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)
        self._plain: dict[tuple[str, str], str] = {}  # (system, ciphertext) -> secret

    def seal(self, system_id: str, secret: str) -> str:
        nonce = secrets.token_bytes(12)
        ct = self._aead.encrypt(nonce, secret.encode("utf-8"), system_id.encode("utf-8"))
        return "v1:" + base64.b64encode(nonce + ct).decode("ascii")

    def open(self, system_id: str, sealed: str) -> str | None:
        cached = self._plain.get((system_id, sealed))
        if cached is not None:
            return cached
        if not sealed.startswith("v1:"):
            return None
        try:
            raw = base64.b64decode(sealed[3:], validate=True)
            secret = self._aead.decrypt(raw[:12], raw[12:], system_id.encode("utf-8"))
        except (ValueError, InvalidTag):
            return None
        value = secret.decode("utf-8")
        self._plain[(system_id, sealed)] = value
        return value


def new_secret() -> str:
    """A secret in the shape real VXP secrets have (base64 text); used as-is, not decoded."""
    return base64.b64encode(secrets.token_bytes(24)).decode("ascii")
