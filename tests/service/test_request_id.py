"""Hostile bytes in what the hub echoes: the request id, and strings that are not UTF-8."""

from __future__ import annotations

import asyncio
import json
import re

import pytest

from adapters.sql.rows import _json
from hub.http.app import json_bytes
from tests.service.harness import HubUnderTest


async def _raw_get(hut: HubUnderTest, path: str, headers: bytes) -> tuple[bytes, bytes]:
    """One GET written byte for byte (a client library would refuse such headers)."""
    server = hut.client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: hub\r\n" + headers + b"\r\n")
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        return head, await reader.readexactly(length)
    finally:
        writer.close()


@pytest.mark.parametrize("hut", ["embedded"], indirect=True)
async def test_a_plain_request_id_is_echoed_and_any_other_replaced(hut: HubUnderTest) -> None:
    head, body = await _raw_get(hut, "/api/v1/inbox", b"X-Request-Id: trace-42.a:b\r\n")
    assert head.startswith(b"HTTP/1.1 401") and b"\r\nX-Request-Id: trace-42.a:b\r\n" in head
    assert json.loads(body)["request_id"] == "trace-42.a:b"

    for given in (b"ab\xff\xfecd", b"has space", b"x" * 65, b"<script>"):
        head, body = await _raw_get(hut, "/api/v1/inbox", b"X-Request-Id: " + given + b"\r\n")
        assert head.startswith(b"HTTP/1.1 401"), head
        answer = json.loads(body)
        assert answer["error"]["code"] == "missing_credentials"
        assert re.fullmatch("[0-9a-f]{32}", answer["request_id"]), answer
        assert f"X-Request-Id: {answer['request_id']}".encode() in head


def test_strings_that_are_not_utf8_are_written_escaped_never_refused() -> None:
    data = {"claimed": "ab\udcff\udcfecd", "organ": "Hà Nội"}
    assert json.loads(json_bytes(data)) == data
    stored = _json(data)
    assert stored.isascii() and json.loads(stored) == data
    plain = {"organ": "Hà Nội", "b": [1, None, True], "a": {"z": "\u0001"}}
    assert _json(plain) == json.dumps(
        plain, ensure_ascii=False, separators=(",", ":"), sort_keys=True
    )
