"""A circuit breaker for the upstream axis.

After ``failures`` consecutive transient failures the circuit opens: calls fail at
once with ``Unavailable`` (deliveries go to their retry schedule instead of piling
up on a dead upstream) until ``open_s`` has passed; then one trial call is let
through (half-open), and its outcome closes or re-opens the circuit. A definitive
refusal is an answer, so it closes the circuit; a trial cancelled or crashed decides
nothing, and the next call is the trial.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from hub.errors import HubError, Unavailable

T = TypeVar("T")


class CircuitBreaker:
    def __init__(
        self,
        failures: int,
        open_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        self.threshold = max(1, failures)
        self.open_s = open_s
        self._clock = clock
        self._on_change = on_change
        self._failures = 0
        self._opened_at: float | None = None
        self._trial = False

    @property
    def is_open(self) -> bool:
        return self._opened_at is not None

    async def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        if self._opened_at is not None:
            if self._trial or self._clock() - self._opened_at < self.open_s:
                raise Unavailable("the upstream circuit is open", code="upstream_circuit_open")
            self._trial = True  # half-open: this call decides
        try:
            result = await fn()
        except Unavailable:
            self._failed()
            raise
        except HubError:
            self._succeeded()  # a definitive answer (a refusal, not found): the axis is up
            raise
        except BaseException:
            self._trial = False  # cancelled or crashed: this trial decided nothing
            raise
        self._succeeded()
        return result

    def _failed(self) -> None:
        self._failures += 1
        self._trial = False
        if self._opened_at is not None or self._failures >= self.threshold:
            if self._opened_at is None and self._on_change:
                self._on_change(True)
            self._opened_at = self._clock()

    def _succeeded(self) -> None:
        self._failures = 0
        self._trial = False
        if self._opened_at is not None:
            self._opened_at = None
            if self._on_change:
                self._on_change(False)
