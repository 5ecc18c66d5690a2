"""The SDK's quirks (VXP-API.md §1-§3): leaked parameters, both docId spellings,
the trailing CRLF, the unpadded hash-file, UTF-8 header values, doubled slashes,
and answers that are always ASCII and never contain null."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path

import pytest

from adapters.vxp_client import VxpClient
from hub.edxml import demo
from hub.errors import HubError
from hub.vxp import protocol as vxp
from tests.service.harness import A, B, HubUnderTest, eventually


async def _one_received(hut: HubUnderTest, b: VxpClient) -> str:
    items = await eventually(lambda: b.received("edoc"), lambda xs: len(xs) >= 1)
    doc_id: str = items[0]["docId"]
    return doc_id


async def test_leaked_parameters_of_one_sdk_object(hut: HubUnderTest) -> None:
    """One SDK object for a whole agency run: every later call carries stale keys."""
    sdk = hut.vxp("sys-b", sdk=True)
    a = hut.vxp("sys-a")
    try:
        assert await sdk.agencies_qd20("1") is not None  # leaves level=1 behind
        await sdk.send_edoc(demo.document_bytes(sender=B, to=(A,), number="7/QUIRK"), from_=B)
        await a.send_edoc(demo.document_bytes(sender=A, to=(B,)), from_=A)
        doc_id = await _one_received(hut, sdk)  # messagetype=edoc set again by this call
        assert await sdk.get_edoc(doc_id)  # leaves docId and filePath behind
        await sdk.update_status(doc_id, "done")  # carries hash-file, from, level, ...
        for leaked in ("level", "hash-file", "from", "filePath", "docId", "status"):
            assert leaked in sdk.params
        # later calls still carry status=done, docId, hash-file ... and succeed
        assert await sdk.agencies()
        assert await sdk.count("edoc") == 0
        sent = await sdk.sent()  # a stale docId is in the map: it names a received document
        assert sent == [] or all(i["fromCode"] == B for i in sent)
    except HubError as exc:  # pragma: no cover - show the VXP answer
        raise AssertionError(str(exc)) from exc
    finally:
        await sdk.close()
        await a.close()


async def test_both_doc_id_spellings(hut: HubUnderTest) -> None:
    a, b = hut.vxp("sys-a"), hut.vxp("sys-b")
    try:
        for n in range(2):
            await a.send_edoc(demo.document_bytes(sender=A, to=(B,), number=f"{n}/SP"), from_=A)
        items = await eventually(lambda: b.received("edoc"), lambda xs: len(xs) == 2)
        first, second = items[0]["docId"], items[1]["docId"]
        assert await b.get_edoc(first, key="docid")  # ServiceTest case 8's spelling
        await b.update_status(first, "done", key="docid")
        # both keys present (one leaked): the exact-case docId wins, as the sample uses it
        await b.call("updateStatus", {"docId": second, "docid": first, "status": "done"})
        assert await b.received("edoc") == []
    finally:
        await a.close()
        await b.close()


@pytest.mark.parametrize("payload", [0, 1_500_000], ids=["small", "spooled"])
async def test_trailing_crlf_is_stripped_exactly_once(hut: HubUnderTest, payload: int) -> None:
    """Also for bodies over 1 MB, which go to disk as they arrive: the CRLF decision is
    made on digests computed while streaming, and the spool is trimmed, not copied."""
    a = hut.vxp("sys-a")
    extra = bytes(range(256)) * (payload // 256)
    try:
        plain = demo.document_bytes(sender=A, to=(B,), number="1/CRLF", payload=extra)
        ends_in_crlf = (
            demo.document_bytes(sender=A, to=(B,), number="2/CRLF", payload=extra) + b"\r\n"
        )
        for data, crlf in ((plain, True), (plain.replace(b"1/CRLF", b"3/CRLF"), False)):
            doc = await hut.hub.store.package(await a.send_edoc(data, from_=A, crlf=crlf))
            assert doc is not None and doc.size == len(data)
            assert await hut.hub.blobs.get(doc.sha256) == data
        doc = await hut.hub.store.package(await a.send_edoc(ends_in_crlf, from_=A))
        assert doc is not None and doc.sha256 == hashlib.sha256(ends_in_crlf).hexdigest()
        assert await hut.hub.blobs.get(doc.sha256) == ends_in_crlf
        spool = Path(hut.cfg.blobs.path) / ".spool"
        assert not spool.exists() or list(spool.iterdir()) == [], "a spool was left behind"
    finally:
        await a.close()


async def test_unpadded_hash_file(hut: HubUnderTest) -> None:
    a = hut.vxp("sys-a")
    try:
        n = 0
        while True:  # a package whose digest has a byte below 0x10
            data = demo.document_bytes(sender=A, to=(B,), number=f"{n}/HASH")
            if len(vxp.hash_file(data)) < 64:
                break
            n += 1
        assert await a.send_edoc(data, from_=A)
        # the zero-padded form is what the SDK never sends; it does not match
        padded = hashlib.sha256(data).hexdigest()
        with pytest.raises(HubError) as err:
            await a.call(
                "sendEdoc",
                {"from": A, "hash-file": padded},
                body=data + b"\r\n",
                content_type="application/octet-stream",
            )
        assert err.value.upstream_code == "21"  # type: ignore[attr-defined]
    finally:
        await a.close()


async def test_vietnamese_header_values(hut: HubUnderTest) -> None:
    a, b = hut.vxp("sys-a"), hut.vxp("sys-b")
    try:
        await a.send_edoc(demo.document_bytes(sender=A, to=(B,)), from_=A)
        doc_id = await _one_received(hut, b)
        _status, raw = await b.raw(
            "getEdoc", {"filePath": "D:/Văn bản đến/Hà Giang", "docId": doc_id}
        )
        assert json.loads(raw)["status"] == "OK" and raw.isascii()
        # The SDK over http with an explicit port truncates each char to 8 bits: the
        # signed bytes are not UTF-8 and cannot verify. The answer says why. (Chars whose
        # low byte is a control char, like Đ -> 0x10, are refused earlier by the HTTP
        # parser with a bare 400: see docs/vxp.md.)
        headers = b.headers({"filePath": "Hồ Chí Minh", "docId": doc_id}, "application/json")
        answer = json.loads(await _raw_request(hut, "getEdoc", headers, b"{}", truncate=True))
        assert answer["ErrorCode"] == "15" and "https or ASCII" in answer["ErrorDesc"]
        # the same request with UTF-8 bytes (https, or http without an explicit port)
        answer = json.loads(await _raw_request(hut, "getEdoc", headers, b"{}", truncate=False))
        assert answer["status"] == "OK"
    finally:
        await a.close()
        await b.close()


async def _raw_request(
    hut: HubUnderTest, op: str, headers: list[tuple[str, str]], body: bytes, *, truncate: bool
) -> bytes:
    """One request written byte by byte, as the SDK's Apache client writes it."""

    def enc(v: str) -> bytes:
        return bytes(ord(c) & 0xFF for c in v) if truncate else v.encode("utf-8")

    host, port = hut.client.host, hut.client.port
    lines = [
        f"POST {hut.cfg.vxp.base_path}/{op} HTTP/1.1".encode(),
        f"Host: {host}:{port}".encode(),
    ]
    lines += [k.encode() + b": " + enc(v) for k, v in headers]
    lines += [f"Content-Length: {len(body)}".encode(), b"Connection: close", b"", b""]
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"\r\n".join(lines) + body)
    await writer.drain()
    response = await reader.read()
    writer.close()
    return response.split(b"\r\n\r\n", 1)[1]


async def test_doubled_slash_from_a_trailing_slash_endpoint(hut: HubUnderTest) -> None:
    endpoint = str(hut.client.make_url(hut.cfg.vxp.base_path)) + "/"
    a = VxpClient(endpoint, "sys-a", hut.tokens["vxp:sys-a"])  # sends //sendEdoc
    try:
        assert await a.send_edoc(demo.document_bytes(sender=A, to=(B,)), from_=A)
        assert await a.agencies()
    finally:
        await a.close()


async def test_every_operation_answers_ascii_without_null(hut: HubUnderTest) -> None:
    a = hut.vxp("sys-a")
    try:
        await a.send_edoc(demo.document_bytes(sender=A, to=(B,)), from_=A)
        for op in vxp.OPERATIONS:
            if op in ("sendEdoc", "downloadEdoc"):
                continue
            body = (
                b'{"code":"000.00.11.H53","name":"T\xc3\xa2y"}' if op == "registerAgency" else b"{}"
            )
            _status, raw = await a.raw(
                op, {"docId": "unknown", "AgencyCode": "000.00.11.H53"}, body=body
            )
            assert raw.isascii() and b"null" not in raw, (op, raw)
            answer = json.loads(raw)
            for key in ("status", "ErrorCode", "ErrorDesc"):
                assert isinstance(answer[key], str), (op, answer)
    finally:
        await a.close()
