"""The one transaction interface both SQL adapters hand to the shared queries."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol


class Row(Protocol):
    """A result row, as sqlite3.Row and asyncpg.Record both are: by column name, by
    position, or a slice of positions (a tuple); iterating gives the values in order."""

    def __getitem__(self, key: str | int | slice, /) -> Any: ...
    def __iter__(self) -> Iterator[Any]: ...


class Tx(Protocol):
    async def execute(self, sql: str, *params: Any) -> int: ...
    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...
    async def fetch(self, sql: str, *params: Any) -> list[Row]: ...
