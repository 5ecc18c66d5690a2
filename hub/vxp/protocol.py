"""The VXP wire protocol, as the Java SDK sends and parses it (``VXP-API.md``).

Pure functions shared by the hub's VXP face (``hub.http.vxp``) and lienthong's VXP
client (``adapters.vxp_client``): the signed header set, the HMAC over the raw
``XroadVnpt-sign-header`` bytes, the SDK's unpadded ``hash-file``, its timestamp,
and the response envelope (ASCII-only JSON, never ``null``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from typing import Any

PREFIX = "XroadVnpt-"
SIGN_KEYS = PREFIX + "sign-header-key"
SIGN_HEADER = PREFIX + "sign-header"
HASH_HEADER = PREFIX + "hash-header"
USER_AGENT = "JAVASDKAgent/1.0.0 XRoad/VPCP"
VERSION = "3.0.201608"

OPERATIONS = (
    "sendEdoc",
    "getReceivedEdocList",
    "getEdoc",
    "updateStatus",
    "getSentEdocList",
    "countReceiveEdoc",
    "countReceiveStatus",
    "downloadEdoc",
    "getAgenciesList",
    "getAgenciesListQD20",
    "getSynchronizeUnit",
    "registerAgency",
    "deleteAgency",
)

# lienthong's snake_case codes that have their own VXP ErrorCode (VXP-API.md §8);
# everything else takes the error class's ``vxp_code``.
ERROR_CODES: dict[str, str] = {
    "bad_credentials": "15",
    "missing_credentials": "15",
    "vxp_bad_signature": "15",
    "vxp_unknown_system": "15",
    "vxp_stale_timestamp": "15",
    "vxp_reused_timestamp": "15",
    "unknown_recipient": "18",
    "sender_not_allowed": "19",
    "organ_not_allowed": "19",
    "register_not_allowed": "19",
    "recipient_closed": "23",
    "vxp_hash_mismatch": "21",
    "vxp_empty_body": "10",
    "package_too_large": "10",
}


def signed_json(params: Iterable[tuple[str, str]]) -> str:
    """gson's ``JsonObject.toString()`` of the prefixed parameters, in map order."""
    return json.dumps({PREFIX + k: v for k, v in params}, ensure_ascii=False, separators=(",", ":"))


def mac(secret: str, raw_signed: bytes) -> str:
    return hmac.new(secret.encode("utf-8"), raw_signed, hashlib.sha256).hexdigest()


def mac_ok(secret: str, raw_signed: bytes, presented: str) -> bool:
    return hmac.compare_digest(mac(secret, raw_signed), presented.strip().lower())


def hash_file(data: bytes) -> str:
    """The SDK's ``hash-file``: SHA-256 bytes as ``Integer.toHexString`` (no zero padding)."""
    return hash_file_of(hashlib.sha256(data).hexdigest())


def hash_file_of(sha256_hex: str) -> str:
    """``hash-file`` from a SHA-256 computed elsewhere (while a body streamed in)."""
    return "".join(format(b, "x") for b in bytes.fromhex(sha256_hex))


def timestamp(now: dt.datetime) -> str:
    """``ddMMyyyy'T'HHmmss+SSSS``: the ``+SSSS`` is milliseconds, not a zone offset."""
    return now.strftime("%d%m%YT%H%M%S") + f"+{now.microsecond // 1000:04d}"


def parse_timestamp(value: str, tz: dt.tzinfo) -> dt.datetime:
    """Inverse of :func:`timestamp` in the sender's zone; ``ValueError`` when malformed."""
    head, plus, millis = value.partition("+")
    if not plus or len(millis) != 4 or not millis.isdigit():
        raise ValueError(f"timestamp {value!r} is not ddMMyyyyTHHmmss+SSSS")
    base = dt.datetime.strptime(head, "%d%m%YT%H%M%S").replace(tzinfo=tz)
    return base + dt.timedelta(milliseconds=int(millis))


def pick(params: Mapping[str, str], name: str) -> str | None:
    """A parameter by its exact-case name, else by a case-insensitive match (§2.1)."""
    if name in params:
        return params[name]
    lowered = name.lower()
    for k, v in params.items():
        if k.lower() == lowered:
            return v
    return None


def params_of(signed: Mapping[str, Any]) -> dict[str, str]:
    """The operation parameters from the parsed signed JSON, without the prefix."""
    out: dict[str, str] = {}
    for k, v in signed.items():
        if k.startswith(PREFIX) and isinstance(v, str):
            out[k[len(PREFIX) :]] = v
    return out


def _clean(value: Any) -> Any:
    """Drop ``None`` everywhere: the SDK turns any JSON null into an all-null result."""
    if isinstance(value, Mapping):
        return {k: _clean(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value if v is not None]
    return value


def dumps(body: Mapping[str, Any]) -> bytes:
    """ASCII-only JSON (sendEdoc's answer is read as US-ASCII) with no ``null``."""
    return json.dumps(_clean(body), ensure_ascii=True, separators=(",", ":")).encode("ascii")


def ok(**payload: Any) -> dict[str, Any]:
    return {"status": "OK", "ErrorCode": "0", "ErrorDesc": "", **payload}


def fail(code: str, desc: str, **payload: Any) -> dict[str, Any]:
    return {"status": "FAIL", "ErrorCode": code, "ErrorDesc": desc, **payload}
