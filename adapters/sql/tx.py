"""The one transaction interface both SQL adapters hand to the shared queries."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

Row = Mapping[str, Any]


class Tx(Protocol):
    async def execute(self, sql: str, *params: Any) -> int: ...
    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...
    async def fetch(self, sql: str, *params: Any) -> list[Row]: ...
