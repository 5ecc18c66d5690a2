"""Parameters read from a request: integers a store can hold.

Both stores keep sequence numbers and instants as signed 64-bit integers; a number
outside that range sent by a client (``after=99999999999999999999``) would otherwise
reach PostgreSQL and fail there as a server error instead of a refusal."""

from __future__ import annotations

from hub.errors import InputError

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1


def int_parameter(name: str, raw: str) -> int:
    """``raw`` as a signed 64-bit integer, or ``InputError`` ``bad_parameter``."""
    try:
        value = int(raw)
    except ValueError:
        raise InputError(f"{name} must be an integer", code="bad_parameter") from None
    if not INT64_MIN <= value <= INT64_MAX:
        raise InputError(
            f"{name} must be between {INT64_MIN} and {INT64_MAX}", code="bad_parameter"
        )
    return value
