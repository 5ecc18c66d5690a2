"""A stand-in for a module's structlog logger, keeping what the module logs.

``structlog.testing.capture_logs`` sees a logger only if it was not cached before the
capture began, which depends on the tests that ran earlier in the same process; a test
that looks at log lines replaces the module's ``log`` with this instead."""

from __future__ import annotations

from collections import defaultdict
from types import ModuleType
from typing import Any

import pytest


class LogRecorder:
    """What the module logged, in order (``events``) and per level (``by_level``), each
    as ``{"event": ..., **fields}``."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.by_level: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)

    def bind(self, **fields: Any) -> LogRecorder:
        return self  # bound context is the caller's affair; the events are kept as said

    def _said(self, level: str, event: str, fields: dict[str, Any]) -> None:
        said = {"event": event, **fields}
        self.events.append(said)
        self.by_level[level].append(said)

    def debug(self, event: str, **fields: Any) -> None:
        self._said("debug", event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._said("info", event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._said("warning", event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._said("error", event, fields)


def record_logs(monkeypatch: pytest.MonkeyPatch, module: ModuleType) -> LogRecorder:
    """Replace ``module.log`` for the test; what it logs."""
    recorder = LogRecorder()
    monkeypatch.setattr(module, "log", recorder)
    return recorder
