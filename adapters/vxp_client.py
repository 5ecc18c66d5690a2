"""lienthong's VXP client: the Government Office SDK's requests, made from Python.

It signs exactly as the Java SDK does (``hub.vxp.protocol``) and parses answers as
the SDK does, so it can talk to the national axis, to another lienthong hub, and
drive the hub's own VXP face in tests. Two modes:

* ``sdk=True`` reproduces the SDK faithfully: one timestamp for the life of the
  client, and a parameter map that is never cleared (every key set by an earlier
  call is resent and signed: the "leaked headers" of VXP-API.md §2.1);
* the default is what a lienthong peer sends: a fresh timestamp per request and
  only the parameters of the call (compatible with a hub's strict mode).
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import secrets
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import structlog

from hub.edxml.dates import VN_TZ
from hub.errors import NotFound, Unavailable, UpstreamRejected
from hub.ports import STREAM_ABOVE, BlobStore, Outgoing, Taken
from hub.streams import capped, spool_hashed
from hub.vxp import protocol as vxp

log = structlog.get_logger(__name__)

# Answers that mean "try again later" rather than "this will never work".
_TRANSIENT = frozenset({"20", "500", "502", "503"})


class VxpError(UpstreamRejected):
    """A FAIL envelope; ``vxp_code``/``desc`` are the upstream's own."""

    def __init__(self, op: str, vxp_code: str, desc: str) -> None:
        super().__init__(f"{op}: VXP error {vxp_code}: {desc}", code="upstream_rejected")
        self.op = op
        self.upstream_code = vxp_code
        self.desc = desc


def _within(r: aiohttp.ClientResponse, limit: int, op: str) -> AsyncIterator[bytes]:
    """The answer's body in chunks, refused (``upstream_answer_too_large``) once over
    ``limit``: by its Content-Length first, else as it arrives."""
    return capped(
        r.content.iter_chunked(256 * 1024),
        r.content_length,
        limit,
        what=f"{op}: the answer",
        code="upstream_answer_too_large",
    )


async def _bounded(r: aiohttp.ClientResponse, limit: int, op: str) -> bytes:
    return b"".join([chunk async for chunk in _within(r, limit, op)])


class VxpClient:
    def __init__(
        self,
        endpoint: str,
        system_id: str,
        secret: str,
        *,
        timeout_s: float = 30.0,
        sdk: bool = False,
        session: aiohttp.ClientSession | None = None,
        max_answer_bytes: int = 96 * 1024 * 1024,
    ) -> None:
        self.endpoint = endpoint
        # An answer is read into memory only up to this (a 64 MB package in base64 and
        # its envelope by default): bytes from the axis are as hostile as any others.
        self.max_answer_bytes = max_answer_bytes
        self.system_id = system_id
        self._secret = secret
        self.sdk = sdk
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session = session
        self._own_session = session is None
        # The SDK's persistent map (used in sdk mode): systemid and timestamp first.
        self.params: dict[str, str] = {"systemid": system_id, "timestamp": self._now()}

    def __repr__(self) -> str:  # never show the secret
        return f"VxpClient({self.endpoint!r}, {self.system_id!r}, sdk={self.sdk})"

    @staticmethod
    def _now() -> str:
        return vxp.timestamp(dt.datetime.now(VN_TZ))

    async def close(self) -> None:
        if self._session is not None and self._own_session:
            await self._session.close()
        self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    # ------------------------------------------------------------------ signing
    def headers(self, params: Mapping[str, str], content_type: str) -> list[tuple[str, str]]:
        """The header list the SDK sends for ``params`` (map order; Content-Type twice)."""
        fresh = {
            "systemid": self.system_id,
            "timestamp": self._now(),
            "nonce": secrets.token_hex(12),  # signed; lets a strict hub refuse replays
        }
        merged = self.params if self.sdk else fresh
        merged["Content-Type"] = content_type
        merged.update(params)
        signed = vxp.signed_json(merged.items())
        out: list[tuple[str, str]] = []
        for name, value in merged.items():
            if name == "Content-Type":
                out.append(("Content-Type", value))
            out.append((vxp.PREFIX + name, value))
        out += [
            (vxp.SIGN_KEYS, ";".join(merged)),
            (vxp.SIGN_HEADER, signed),
            (vxp.HASH_HEADER, vxp.mac(self._secret, signed.encode("utf-8"))),
            ("User-Agent", vxp.USER_AGENT),
            ("XroadVnpt-version", vxp.VERSION),
        ]
        return out

    async def raw(
        self,
        op: str,
        params: Mapping[str, str],
        *,
        body: bytes | AsyncIterator[bytes] = b"",
        length: int | None = None,
        method: str = "POST",
        content_type: str = "application/json",
    ) -> tuple[int, bytes]:
        """One call; ``body`` may be a stream of ``length`` bytes (sent as it is read)."""
        url = self.endpoint + "/" + op
        headers = self.headers(params, content_type)
        data: bytes | io.BytesIO | AsyncIterator[bytes] = body
        if not isinstance(body, bytes):
            if length is None:
                raise ValueError("a streamed body needs its length")
            headers.append(("Content-Length", str(length)))
        elif len(body) > STREAM_ABOVE:
            # A large body goes out in chunks from a buffer (aiohttp would otherwise write
            # it in one piece and hold the event loop); the length is still sent.
            data = io.BytesIO(body)
        try:
            async with self._http().request(
                method, url, data=data, headers=headers, skip_auto_headers=("Content-Type",)
            ) as r:
                return r.status, await _bounded(r, self.max_answer_bytes, op)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Unavailable(f"{op}: {type(exc).__name__}: {exc}", code="upstream_down") from exc

    async def call(
        self,
        op: str,
        params: Mapping[str, str],
        *,
        body: bytes | AsyncIterator[bytes] = b"",
        length: int | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        status, raw = await self.raw(
            op, params, body=body, length=length, content_type=content_type
        )
        try:
            answer = json.loads(raw)
        except ValueError as exc:
            # An HTML outage page or a proxy error: transient from where we stand.
            raise Unavailable(
                f"{op}: HTTP {status}, not a VXP answer", code="upstream_down"
            ) from exc
        if not isinstance(answer, dict) or any(
            answer.get(k) is None for k in ("status", "ErrorCode", "ErrorDesc")
        ):
            raise Unavailable(f"{op}: HTTP {status}, incomplete envelope", code="upstream_down")
        code = str(answer["ErrorCode"])
        if answer["status"] == "FAIL" or code != "0":
            if code in _TRANSIENT or status >= 500:
                raise Unavailable(f"{op}: VXP error {code}: {answer['ErrorDesc']}")
            if code == "404":
                raise NotFound(f"{op}: {answer['ErrorDesc']}", code="upstream_not_found")
            raise VxpError(op, code, str(answer["ErrorDesc"]))
        return answer

    # ------------------------------------------------------------------ documents
    async def send_edoc(
        self,
        data: bytes | Outgoing,
        *,
        from_: str,
        messagetype: str = "edoc",
        to: list[str] | None = None,
        crlf: bool = True,
    ) -> str:
        """Send a package: bytes, or a stored package (``Outgoing``: its SHA-256 is known,
        and a large one streams from the blob store)."""
        suffix = b"\r\n" if crlf else b""
        body: bytes | AsyncIterator[bytes]
        if isinstance(data, Outgoing):
            hash_file, body, size = vxp.hash_file_of(data.sha256), data.body(suffix), data.size
        else:
            hash_file, body, size = vxp.hash_file(data), data + suffix, len(data)
        params = {
            "from": from_,
            "servicetype": "eDoc",
            "messagetype": messagetype,
            "hash-file": hash_file,
        }
        if to is not None:
            params["to"] = json.dumps(to if len(to) > 1 else to[0])
        answer = await self.call(
            "sendEdoc",
            params,
            body=body,
            length=size + len(suffix),
            content_type="application/octet-stream",
        )
        doc_id = answer.get("DocId")
        if not doc_id:
            raise VxpError("sendEdoc", "-1", "answer without DocId")
        return str(doc_id)

    async def received(self, messagetype: str = "edoc") -> list[dict[str, Any]]:
        answer = await self.call(
            "getReceivedEdocList", {"servicetype": "eDoc", "messagetype": messagetype}
        )
        return list(answer.get("data") or [])

    async def get_edoc(self, doc_id: str, *, key: str = "docId") -> bytes:
        answer = await self.call("getEdoc", {"filePath": "", key: doc_id}, body=b"{}")
        return base64.b64decode(str(answer.get("data", "")))

    async def download_to(self, doc_id: str, blobs: BlobStore) -> Taken:
        """``downloadEdoc``, written as it arrives: kept in memory up to 1 MB, else in a
        spool file of ``blobs``, hashed on the way; never whole in memory.

        Only for an axis that answers a failure with an HTTP error status, as a lienthong
        hub does: the SDK itself takes any non-empty body for the document (VXP-API.md
        §5.7), so a 2xx answer is the document here too."""
        url = self.endpoint + "/downloadEdoc"
        headers = self.headers({"filePath": "", "docId": doc_id}, "application/json")
        try:
            async with self._http().get(
                url, headers=headers, skip_auto_headers=("Content-Type",)
            ) as r:
                if r.status == 404:
                    raise NotFound(f"downloadEdoc {doc_id}: HTTP 404", code="upstream_not_found")
                if r.status >= 500:
                    raise Unavailable(f"downloadEdoc {doc_id}: HTTP {r.status}")
                if r.status // 100 != 2:
                    raise UpstreamRejected(
                        f"downloadEdoc {doc_id}: HTTP {r.status}", code="upstream_rejected"
                    )
                length = r.content_length
                if length is not None and length <= STREAM_ABOVE:
                    taken = Taken.of(await _bounded(r, self.max_answer_bytes, "downloadEdoc"))
                else:
                    taken = await self._spooled(r, blobs)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Unavailable(
                f"downloadEdoc: {type(exc).__name__}: {exc}", code="upstream_down"
            ) from exc
        if taken.size == 0:
            if taken.spool is not None:
                taken.spool.discard()
            raise NotFound(f"downloadEdoc {doc_id}: empty answer", code="upstream_not_found")
        return taken

    async def _spooled(self, r: aiohttp.ClientResponse, blobs: BlobStore) -> Taken:
        spool, sha = await spool_hashed(_within(r, self.max_answer_bytes, "downloadEdoc"), blobs)
        return Taken(b"", sha, spool)

    async def download(self, doc_id: str) -> bytes:
        status, raw = await self.raw(
            "downloadEdoc", {"filePath": "", "docId": doc_id}, method="GET"
        )
        if not raw:
            raise NotFound(f"downloadEdoc {doc_id}: empty answer (HTTP {status})")
        return raw

    async def update_status(self, doc_id: str, status: str, *, key: str = "docId") -> None:
        await self.call("updateStatus", {"status": status, key: doc_id}, body=b"{}")

    async def sent(
        self, doc_id: str | None = None, messagetype: str = "edoc"
    ) -> list[dict[str, Any]]:
        params = {"servicetype": "eDoc", "messagetype": messagetype}
        if doc_id is not None:
            params["docId"] = doc_id
        return list((await self.call("getSentEdocList", params)).get("data") or [])

    async def count(self, kind: str = "edoc") -> int:
        op = "countReceiveEdoc" if kind == "edoc" else "countReceiveStatus"
        return int((await self.call(op, {}, body=b"{}"))["count"])

    # ------------------------------------------------------------------ directory
    async def agencies(self) -> list[dict[str, Any]]:
        return list((await self.call("getAgenciesList", {})).get("data") or [])

    async def agencies_qd20(self, level: str | None = None) -> list[dict[str, Any]]:
        params = {"level": level} if level else {}
        return list((await self.call("getAgenciesListQD20", params)).get("data") or [])

    async def units(self) -> list[dict[str, Any]]:
        return list((await self.call("getSynchronizeUnit", {})).get("data") or [])

    async def register(self, agency: Mapping[str, str]) -> None:
        body = json.dumps(dict(agency), ensure_ascii=False).encode("utf-8")
        await self.call("registerAgency", {}, body=body)

    async def delete(self, code: str) -> None:
        await self.call("deleteAgency", {"AgencyCode": code}, body=b"{}")
