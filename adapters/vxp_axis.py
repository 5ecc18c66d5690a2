"""The upstream axis over VXP: the national axis, or a parent lienthong hub.

Implements the ``UpstreamAxis`` port with ``VxpClient``: ``sendEdoc`` carries the
original bytes with ``from`` = the original sender; received documents and statuses
are listed, fetched, and confirmed with ``updateStatus``; the directory comes from
``getAgenciesList`` / ``getAgenciesListQD20`` (both id forms) and
``getSynchronizeUnit``. Every call goes through one circuit breaker.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeVar

from adapters.vxp_client import VxpClient
from hub.errors import NotFound, UpstreamRejected
from hub.ports import BlobStore, Outgoing, RemoteItem, RemoteOrgan, Taken
from hub.records import PackageRow
from hub.service.breaker import CircuitBreaker

T = TypeVar("T")


def _str(item: dict[str, Any], key: str) -> str | None:
    value = item.get(key)
    return str(value).strip() if value not in (None, "") else None


class VxpAxis:
    def __init__(
        self, client: VxpClient, breaker: CircuitBreaker, *, take: str = "getEdoc"
    ) -> None:
        self.client = client
        self.breaker = breaker
        # getEdoc (the SDK's way, base64 in JSON: the package is in memory whole while
        # decoded) or downloadEdoc (raw bytes, written to a spool as they arrive).
        self.take = take

    async def _call(self, fn: Callable[[], Awaitable[T]]) -> T:
        return await self.breaker.call(fn)

    async def forward(self, package: PackageRow, body: Outgoing) -> str:
        kind = package.kind
        try:
            return await self._call(
                lambda: self.client.send_edoc(body, from_=package.sender_organ, messagetype=kind)
            )
        except NotFound as exc:  # e.g. a recipient the axis does not know: no retry helps
            raise UpstreamRejected(
                f"the upstream axis refused the package: {exc.message}",
                code="upstream_not_found",
            ) from exc

    async def pending(self, kind: Literal["edoc", "status"]) -> list[RemoteItem]:
        items = await self._call(lambda: self.client.received(kind))
        out = []
        for item in items:
            doc_id = _str(item, "docId")
            if doc_id:
                out.append(RemoteItem(doc_id, kind, _str(item, "from")))
        return out

    async def fetch(self, doc_id: str, blobs: BlobStore) -> Taken:
        if self.take == "downloadEdoc":
            return await self._call(lambda: self.client.download_to(doc_id, blobs))
        data = await self._call(lambda: self.client.get_edoc(doc_id))
        return Taken.of(data)

    async def confirm(self, doc_id: str, result: Literal["done", "fail"]) -> None:
        await self._call(lambda: self.client.update_status(doc_id, result))

    async def organs(self) -> list[RemoteOrgan]:
        plain = await self._call(self.client.agencies)
        try:
            qd20 = await self._call(self.client.agencies_qd20)
        except UpstreamRejected:
            qd20 = []  # an SDK 2.0.0-era axis without the QĐ 20 list
        try:
            units = {(_str(u, "code") or ""): u for u in await self._call(self.client.units)}
        except UpstreamRejected:
            units = {}
        other_form: dict[str, str] = {}
        for item in qd20:
            code, c102 = _str(item, "code"), _str(item, "code102")
            if code and c102 and code != c102:
                other_form[c102] = code
        out = []
        for item in plain:
            code = _str(item, "code")
            if not code:
                continue
            aliases = {a for a in (_str(item, "oldCode"), other_form.get(code)) if a and a != code}
            unit = units.get(code, {})
            version = unit.get("version", 0)
            out.append(
                RemoteOrgan(
                    organ_id=code,
                    name=_str(item, "name") or code,
                    parent=_str(item, "pid"),
                    aliases=tuple(sorted(aliases)),
                    deleted=unit.get("deleted") is True,
                    version=int(version) if str(version).isdigit() else 0,
                )
            )
        return out

    async def close(self) -> None:
        await self.client.close()
