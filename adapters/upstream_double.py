"""An in-process stand-in for the national axis (tests and demos).

It records what was forwarded, can be told to fail (to exercise retries and the
dead path), and can hold packages "for us" that the upstream poller takes. The
real adapter is ``adapters.vxp_axis`` (the VXP protocol).
"""

from __future__ import annotations

from typing import Literal

from hub.errors import NotFound, PackageTooLarge, Unavailable
from hub.ports import BlobStore, Outgoing, RemoteItem, RemoteOrgan, Taken
from hub.records import PackageRow


class InProcessAxis:
    def __init__(self) -> None:
        self.forwarded: list[tuple[str, bytes]] = []
        self.fail_next = 0  # the next N forwards fail with Unavailable
        self.down = False
        self.waiting: dict[str, tuple[Literal["edoc", "status"], bytes]] = {}
        self.confirmed: dict[str, str] = {}
        self.directory: list[RemoteOrgan] = []
        self.answer_limit: int | None = None  # as VxpClient's max_answer_bytes

    def _check(self) -> None:
        if self.down:
            raise Unavailable("the national axis (test double) is down", code="upstream_down")

    async def forward(self, package: PackageRow, body: Outgoing) -> str:
        if self.fail_next > 0:
            self.fail_next -= 1
            raise Unavailable("the national axis (test double) failed", code="upstream_down")
        self._check()
        self.forwarded.append((package.id, await body.read()))
        return f"axis-{len(self.forwarded)}"

    async def pending(self, kind: Literal["edoc", "status"]) -> list[RemoteItem]:
        self._check()
        return [RemoteItem(k, kind) for k, (kd, _) in self.waiting.items() if kd == kind]

    async def fetch(self, doc_id: str, blobs: BlobStore) -> Taken:
        self._check()
        if doc_id not in self.waiting:
            raise NotFound(f"no upstream document {doc_id}")
        data = self.waiting[doc_id][1]
        if self.answer_limit is not None and len(data) > self.answer_limit:
            raise PackageTooLarge(
                f"getEdoc: the answer exceeds the limit of {self.answer_limit} bytes",
                code="upstream_answer_too_large",
            )
        return Taken.of(data)

    async def confirm(self, doc_id: str, result: Literal["done", "fail"]) -> None:
        self._check()
        self.waiting.pop(doc_id, None)
        self.confirmed[doc_id] = result

    async def organs(self) -> list[RemoteOrgan]:
        self._check()
        return list(self.directory)

    async def close(self) -> None:
        return None
