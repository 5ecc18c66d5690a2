"""Log lines: one write each, so processes sharing a log file never interleave within one."""

from __future__ import annotations

import json
import sys

import pytest
import structlog

from hub import logs


class _Writes:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def write(self, s: str) -> int:
        self.calls.append(s)
        return len(s)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


def test_each_line_is_written_whole_with_its_newline(monkeypatch: pytest.MonkeyPatch) -> None:
    out = _Writes()
    monkeypatch.setattr(sys, "stderr", out)
    logs.configure("json", "info", pid=True)
    try:
        log = structlog.get_logger("test")
        log.info("first", n=1)
        log.info("second", token="not-for-the-log")
    finally:
        structlog.reset_defaults()
    assert len(out.calls) == 2 and all(c.endswith("\n") for c in out.calls), out.calls
    first, second = (json.loads(c) for c in out.calls)
    assert first["event"] == "first" and first["n"] == 1 and "pid" in first
    assert second["token"] == "***"
