"""Bearer-token authentication and the caller's rights.

A token is ``<token_id>.<secret>``. The store keeps only the SHA-256 of the secret
(tokens are 256-bit random, so a fast hash is enough; there is nothing to brute
force); comparison is constant-time. The token is never logged. A token may carry an
expiry (``[auth] token_days``, ``directory token --days``); past it the token is refused
with 401 ``token_expired``, as a revoked one is, so a leaked token does not work forever.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from hub.errors import AuthenticationFailed, Forbidden, InputError, SystemSuspended
from hub.ports import Directory
from hub.records import Credential, System
from hub.service.networks import check_peer

DAY_US = 86_400_000_000


def system_actor(system_id: str) -> str:
    """Who acted, as the ledger's events name a system: ``system:<id>``."""
    return f"system:{system_id}"


@dataclass(frozen=True, slots=True)
class Caller:
    system: System
    token_id: str
    organs: frozenset[str] = field(init=False)  # built once: asked on every request

    def __post_init__(self) -> None:
        object.__setattr__(self, "organs", frozenset(self.system.organs))

    @property
    def system_id(self) -> str:
        return self.system.system_id

    @property
    def actor(self) -> str:
        return system_actor(self.system.system_id)

    def require_role(self, *roles: str) -> None:
        if self.system.role not in roles:
            raise Forbidden(
                f"this action needs the role {' or '.join(roles)}; "
                f"system {self.system_id} has {self.system.role}",
                code="role_forbidden",
            )

    def require_organ(self, organ: str, *, action: str) -> None:
        if organ not in self.system.organs:
            raise Forbidden(
                f"system {self.system_id} may not {action} for organ {organ}",
                code="organ_not_allowed",
                details={"organ": organ},
            )


def admit(system: System, peer: str | None) -> None:
    """What every face asks once a credential names ``system``: refused while an
    administrator has it suspended (403 ``system_suspended``), or from ``peer`` outside its
    networks (403 ``source_network_forbidden``)."""
    if system.suspended is not None:
        raise SystemSuspended(
            f"system {system.system_id} is suspended by the hub's administrator; "
            "ask them to resume it",
        )
    check_peer(system, peer)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def days_us(days: int, what: str) -> int:
    """``days`` in microseconds; ``bad_days`` when negative (0 means none)."""
    if days < 0:
        raise InputError(f"{what} is a number of days, 0 for none; got {days}", code="bad_days")
    return days * DAY_US


def new_token(system_id: str, now_us: int, days: int = 0) -> tuple[str, Credential]:
    """Return (the token to hand out once, the credential to store): valid for ``days``
    days from ``now_us``, or without an end when ``days`` is 0."""
    span = days_us(days, "a token's validity")
    token_id = "lt" + secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    expires = now_us + span if span else None
    cred = Credential(token_id, system_id, hash_secret(secret), now_us, expires_us=expires)
    return f"{token_id}.{secret}", cred


def access_ends(credentials: Iterable[Credential]) -> dict[str, float | None]:
    """Per system that was ever given a token, when its bearer-token access ends as things
    stand: the latest expiry among its tokens not revoked (a Unix time; ``inf`` when one of
    them never expires), or None when none is left (every one revoked)."""
    ends: dict[str, float | None] = {}
    for c in credentials:
        at = ends.setdefault(c.system_id, None)
        if not c.revoked:
            end = math.inf if c.expires_us is None else c.expires_us / 1e6
            ends[c.system_id] = end if at is None else max(at, end)
    return ends


def _now_us(now_us: int | None) -> int:
    return time.time_ns() // 1000 if now_us is None else now_us


def authenticate(
    directory: Directory,
    authorization: str | None,
    client_cert: bytes | None = None,
    *,
    peer: str | None,
    now_us: int | None = None,
) -> Caller:
    """The caller, from a bearer token, a verified TLS client certificate (DER), or both,
    connecting from ``peer`` (refused while the system is suspended, or outside its
    networks when it has any), at ``now_us`` (the wall clock when not given: a token
    past its expiry is refused).

    The TLS handshake has already checked the certificate's chain against the configured
    client CA; here its fingerprint must be registered to a system. When both are
    presented they must name the same system.
    """
    caller = _credential(directory, authorization, client_cert, _now_us(now_us))
    admit(caller.system, peer)
    return caller


def _credential(
    directory: Directory, authorization: str | None, client_cert: bytes | None, now_us: int
) -> Caller:
    by_cert: System | None = None
    if client_cert is not None:
        fp = hashlib.sha256(client_cert).hexdigest()
        by_cert = directory.systems.get(directory.client_certs.get(fp, ""))
        if not authorization:
            if by_cert is None:
                raise AuthenticationFailed(
                    "the TLS client certificate is not registered to any system",
                    code="unknown_client_cert",
                )
            return Caller(by_cert, "cert:" + fp[:16])
    caller = _by_token(directory, authorization, now_us)
    if by_cert is not None and by_cert.system_id != caller.system_id:
        raise AuthenticationFailed(
            "the token and the TLS client certificate belong to different systems",
            code="credentials_disagree",
        )
    return caller


def _by_token(directory: Directory, authorization: str | None, now_us: int) -> Caller:
    if not authorization:
        raise AuthenticationFailed("missing Authorization header", code="missing_credentials")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or "." not in token:
        raise AuthenticationFailed(
            "expected 'Authorization: Bearer <token>'", code="bad_credentials"
        )
    token_id, _, secret = token.strip().partition(".")
    cred = directory.credentials.get(token_id)
    # Hash even when the id is unknown, so timing does not reveal which ids exist.
    presented = hash_secret(secret)
    expected = cred.secret_sha256 if cred else hash_secret(secrets.token_hex(16))
    if cred is None or not hmac.compare_digest(presented, expected) or cred.revoked:
        raise AuthenticationFailed("invalid or revoked token", code="bad_credentials")
    check_unexpired(cred, now_us)
    system = directory.systems.get(cred.system_id)
    if system is None:
        raise AuthenticationFailed("the token's system no longer exists", code="bad_credentials")
    return Caller(system, token_id)


def check_unexpired(cred: Credential, now_us: int) -> None:
    """Refuse a token (or a console session opened with it) past its expiry."""
    if cred.expired(now_us):
        raise AuthenticationFailed(
            f"token {cred.token_id} expired; ask the hub's administrator for a new one",
            code="token_expired",
        )
