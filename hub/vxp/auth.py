"""VXP request authentication (VXP-API.md §2.3, §8).

The HMAC-SHA256 is computed over the raw bytes of ``XroadVnpt-sign-header`` with
the calling system's secret and compared in constant time; the operation's
parameters are then taken from that signed JSON, never from the loose headers.
Timestamps are not checked for SDK clients (the SDK fixes one per client object);
a system in strict mode (a lienthong peer) must send a fresh one, never reused.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

import structlog

from hub.edxml.dates import VN_TZ
from hub.errors import AuthenticationFailed
from hub.ports import Directory, Store
from hub.service.auth import Caller, admit
from hub.vxp import protocol as vxp
from hub.vxp.secrets import SecretBox

log = structlog.get_logger(__name__)

_SIGN = vxp.SIGN_HEADER.lower().encode("latin-1")
_HASH = vxp.HASH_HEADER.lower().encode("latin-1")
SYSTEM_HEADER = (vxp.PREFIX + "systemid").lower().encode("latin-1")


@dataclass(frozen=True, slots=True)
class VxpCaller:
    caller: Caller
    params: dict[str, str]  # from the signed JSON, without the XroadVnpt- prefix
    previous_secret: bool = False  # signed with the secret a rotation replaced (its overlap)


def header(raw_headers: Iterable[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for k, v in raw_headers:
        if k.lower() == name:
            return v
    return None


def _refuse(message: str, code: str = "vxp_bad_signature") -> AuthenticationFailed:
    return AuthenticationFailed(message, code=code)


async def authenticate(
    raw_headers: Iterable[tuple[bytes, bytes]],
    directory: Directory,
    box: SecretBox,
    store: Store,
    *,
    now_us: int,
    strict_window_s: float,
    peer: str | None,
) -> VxpCaller:
    raw_headers = list(raw_headers)
    raw = header(raw_headers, _SIGN)
    presented = header(raw_headers, _HASH)
    if raw is None or presented is None:
        raise _refuse(
            "missing XroadVnpt-sign-header or XroadVnpt-hash-header", code="missing_credentials"
        )
    try:
        signed = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise _refuse(
            "the signed header is not UTF-8 (a non-ASCII value sent over http with an explicit "
            "port); use https or ASCII values"
        ) from exc
    except ValueError as exc:
        raise _refuse("XroadVnpt-sign-header is not JSON") from exc
    if not isinstance(signed, dict):
        raise _refuse("XroadVnpt-sign-header is not a JSON object")
    system_id = signed.get(vxp.PREFIX + "systemid")
    loose = header(raw_headers, SYSTEM_HEADER)
    if not isinstance(system_id, str) or (
        loose is not None and loose.decode("utf-8", "replace") != system_id
    ):
        raise _refuse("XroadVnpt-systemid is missing or differs from the signed one")
    system = directory.systems.get(system_id)
    sealed = directory.vxp_secrets.get(system_id)
    secret = box.open(system_id, sealed) if sealed else None
    if system is None or secret is None:
        # Compute a MAC anyway so timing does not tell which system ids exist.
        vxp.mac_ok(secrets.token_hex(16), raw, presented.decode("latin-1"))
        raise _refuse(f"unknown system {system_id!r} or no VXP secret", code="vxp_unknown_system")
    mac = presented.decode("latin-1")
    previous = False
    if not vxp.mac_ok(secret, raw, mac):
        # The secret before a rotation, during its overlap (``directory vxp-secret
        # --overlap-days``): the agency may not have changed its configuration yet.
        sealed_old, until = directory.vxp_previous.get(system_id, ("", 0))
        old = box.open(system_id, sealed_old) if sealed_old and now_us < until else None
        if old is None or not vxp.mac_ok(old, raw, mac):  # never a MAC with no secret
            raise _refuse("wrong secret or altered signed header")
        previous = True
    admit(system, peer)  # only once authenticated: it names the system's state, networks
    params = vxp.params_of(signed)
    if system.vxp_strict:
        await _fresh(system_id, params, store, now_us, strict_window_s)
    return VxpCaller(Caller(system, "vxp"), params, previous)


async def _fresh(
    system_id: str, params: dict[str, str], store: Store, now_us: int, window_s: float
) -> None:
    """Strict mode: the signed timestamp is recent, and (timestamp, nonce) is new.

    lienthong's client signs a random ``nonce`` parameter too, so two requests in the
    same millisecond (or from two processes) do not collide; a replay repeats both."""
    stamp = params.get("timestamp", "")
    try:
        at = vxp.parse_timestamp(stamp, VN_TZ)
    except ValueError as exc:
        raise _refuse(str(exc), code="vxp_stale_timestamp") from exc
    now = dt.datetime.fromtimestamp(now_us / 1e6, VN_TZ)
    if abs((now - at).total_seconds()) > window_s:
        raise _refuse(
            f"timestamp {stamp} is outside the {window_s:.0f} s window (strict mode)",
            code="vxp_stale_timestamp",
        )
    forget = now_us - int(2 * window_s * 1e6)
    key = f"{stamp}|{params.get('nonce', '')}"
    if not await store.use_stamp(system_id, key, now_us, forget):
        raise _refuse(
            f"timestamp {stamp} was already used (strict mode)", code="vxp_reused_timestamp"
        )
