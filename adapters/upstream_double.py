"""An in-process stand-in for the national axis (tests, demos, issue #3).

It records what was forwarded and can be told to fail, to exercise retries and the
dead path. The real VXP client lives in its own adapter.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from hub.errors import Unavailable
from hub.records import PackageRow


class InProcessAxis:
    def __init__(self) -> None:
        self.forwarded: list[tuple[str, bytes]] = []
        self.fail_next = 0  # the next N forwards fail with Unavailable
        self.down = False

    async def forward(self, package: PackageRow, data: bytes) -> str:
        if self.down or self.fail_next > 0:
            self.fail_next = max(0, self.fail_next - 1)
            raise Unavailable("the national axis (test double) is down", code="upstream_down")
        self.forwarded.append((package.id, data))
        return f"axis-{len(self.forwarded)}"

    async def received(self) -> AsyncIterator[tuple[str, bytes]]:
        return
        yield  # an async generator that yields nothing: the double never sends us anything
