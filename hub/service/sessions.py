"""Console sessions: an HMAC-signed cookie naming the admin's or auditor's token.

The cookie holds ``<token id>.<expiry>`` and an HMAC-SHA256 over it, under a key
derived (HKDF) from the hub's secret key, so any hub process sharing that key can
check it and nothing is kept server-side. Each request re-checks that the token still
exists, is not revoked and belongs to an admin or auditor. Forms carry a CSRF token
bound to the session; the cookie is HttpOnly and SameSite=Strict.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from hub.errors import AuthenticationFailed, Forbidden
from hub.ports import Directory
from hub.service.auth import Caller, admit, check_unexpired

COOKIE = "lt_console"
LIFETIME_S = 8 * 3600
CONSOLE_ROLES = ("admin", "auditor")


def derive_key(secret: bytes) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"lienthong console session"
    ).derive(secret)


@dataclass(frozen=True, slots=True)
class Sessions:
    key: bytes

    def __repr__(self) -> str:
        return "Sessions(...)"

    def _mac(self, payload: str) -> str:
        digest = hmac.new(self.key, payload.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def issue(self, caller: Caller, now: float | None = None) -> str:
        expiry = int((time.time() if now is None else now) + LIFETIME_S)
        payload = f"{caller.token_id}.{expiry}"
        return f"{payload}.{self._mac(payload)}"

    def open(
        self,
        directory: Directory,
        cookie: str | None,
        *,
        peer: str | None,
        now: float | None = None,
    ) -> Caller:
        """The caller behind a session cookie; raise when it is absent, forged or stale, or
        (``SystemSuspended``, ``NetworkForbidden``) when its system is suspended or ``peer``
        is outside its system's networks: a session is held to them on every request, as
        the token was at login."""
        now = time.time() if now is None else now
        if not cookie or cookie.count(".") != 2:
            raise AuthenticationFailed("please log in", code="missing_credentials")
        token_id, expiry, mac = cookie.split(".")
        if not hmac.compare_digest(mac, self._mac(f"{token_id}.{expiry}")):
            raise AuthenticationFailed("invalid session", code="bad_credentials")
        if not expiry.isdigit() or int(expiry) < now:
            raise AuthenticationFailed("the session has expired", code="session_expired")
        cred = directory.credentials.get(token_id)
        system = directory.systems.get(cred.system_id) if cred else None
        if cred is None or cred.revoked or system is None:
            raise AuthenticationFailed("the token was revoked", code="bad_credentials")
        check_unexpired(cred, int(now * 1e6))
        admit(system, peer)
        caller = Caller(system, token_id)
        require_console_role(caller)
        return caller

    def csrf(self, cookie: str) -> str:
        return self._mac("csrf." + cookie)

    def csrf_ok(self, cookie: str | None, token: str | None) -> bool:
        return bool(cookie and token) and hmac.compare_digest(self.csrf(cookie or ""), token or "")


def require_console_role(caller: Caller) -> None:
    if caller.system.role not in CONSOLE_ROLES:
        raise Forbidden("the console is for administrators and auditors", code="role_forbidden")
