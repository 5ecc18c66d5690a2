"""The one place that decides what happens to a message after its handler ran.

Handlers raise ``Retry`` or ``DeadLetter`` explicitly; ``Unavailable`` (store or
upstream down) means retry soon; anything else is a bug or an unexpected fault and
is retried with backoff a bounded number of times, then dead-lettered, so a poison
message cannot spin forever. Both brokers call ``decide``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from hub.errors import Unavailable
from hub.ports import DeadLetter, Retry

MAX_UNEXPECTED = 5

Action = Literal["ack", "retry", "dead"]


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    delay_s: float = 0.0
    reason: str = ""


def backoff(attempt: int, *, base_s: float = 1.0, cap_s: float = 600.0) -> float:
    """Exponential backoff with full jitter in [d/2, d] (attempt counts from 1)."""
    d: float = min(cap_s, base_s * 2.0 ** max(0, attempt - 1))
    return d / 2 + random.random() * d / 2  # noqa: S311 - jitter, not cryptography


def decide(exc: BaseException | None, attempt: int) -> Decision:
    if exc is None:
        return Decision("ack")
    if isinstance(exc, Retry):
        return Decision("retry", exc.delay_s, exc.reason)
    if isinstance(exc, DeadLetter):
        return Decision("dead", reason=str(exc))
    if isinstance(exc, Unavailable):
        return Decision("retry", backoff(attempt + 1, cap_s=30.0), exc.error_code)
    if attempt + 1 >= MAX_UNEXPECTED:
        return Decision("dead", reason=f"{type(exc).__name__}: {exc}")
    return Decision("retry", backoff(attempt + 1, cap_s=60.0), f"{type(exc).__name__}: {exc}")
