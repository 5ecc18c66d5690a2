"""VXP authentication: the HMAC over the raw signed header, parameters from the
signed JSON, the body bound by hash-file, and strict mode for lienthong peers."""

from __future__ import annotations

import datetime as dt
import io
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from hub.edxml import demo
from hub.edxml.dates import VN_TZ
from hub.errors import HubError
from hub.records import System
from hub.service.directory_admin import DirectoryAdmin
from hub.vxp import protocol as vxp
from tests.service.harness import A, B, HubUnderTest


async def _post(
    hut: HubUnderTest, op: str, headers: list[tuple[str, str]], body: bytes = b""
) -> Any:
    data: Any = io.BytesIO(body) if len(body) > 1_000_000 else body  # large: streamed
    r = await hut.client.post(f"{hut.cfg.vxp.base_path}/{op}", data=data, headers=headers)
    raw = await r.read()
    assert raw.isascii() and b"null" not in raw
    return r.status, json.loads(raw)


def _replace(headers: list[tuple[str, str]], name: str, value: str) -> list[tuple[str, str]]:
    return [(k, value if k == name else v) for k, v in headers]


async def _refusals(hut: HubUnderTest) -> list[str]:
    return [e.data["code"] for e in await hut.hub.store.ledger(0, 10_000) if e.type == "refused"]


async def test_a_correct_request_is_accepted(hut: HubUnderTest) -> None:
    a = hut.vxp("sys-a")
    headers = a.headers({}, "application/json")
    status, body = await _post(hut, "getAgenciesList", headers)
    assert status == 200 and body["status"] == "OK" and body["ErrorCode"] == "0"
    await a.close()


@pytest.mark.parametrize(
    "tamper",
    ["wrong_secret", "altered_hash", "altered_json", "loose_systemid", "no_signature"],
)
async def test_tampered_requests_are_refused_with_the_vxp_shape(
    hut: HubUnderTest, tamper: str
) -> None:
    a = hut.vxp("sys-a")
    headers = a.headers({"docId": "x"}, "application/json")
    signed = dict(headers)[vxp.SIGN_HEADER]
    if tamper == "wrong_secret":
        headers = _replace(headers, vxp.HASH_HEADER, vxp.mac("not-the-secret", signed.encode()))
    elif tamper == "altered_hash":
        good = dict(headers)[vxp.HASH_HEADER]
        headers = _replace(headers, vxp.HASH_HEADER, ("0" if good[0] != "0" else "1") + good[1:])
    elif tamper == "altered_json":  # a parameter changed inside the signed JSON
        headers = _replace(headers, vxp.SIGN_HEADER, signed.replace('"x"', '"y"'))
    elif tamper == "loose_systemid":
        headers = _replace(headers, vxp.PREFIX + "systemid", "sys-b")
    else:
        headers = [(k, v) for k, v in headers if k != vxp.SIGN_HEADER]
    status, body = await _post(hut, "getAgenciesList", headers)
    assert status == 401
    assert body == {
        "status": "FAIL",
        "ErrorCode": "15",
        "ErrorDesc": body["ErrorDesc"],
        "DocId": "",
    }
    assert body["ErrorDesc"].split(":")[0] in (
        "vxp_bad_signature",
        "missing_credentials",
    )
    assert len(await _refusals(hut)) == 1  # the attempt is in the ledger
    await a.close()


async def test_download_refusal_is_an_empty_body(hut: HubUnderTest) -> None:
    a = hut.vxp("sys-a")
    headers = _replace(a.headers({"docId": "x"}, "application/json"), vxp.HASH_HEADER, "0" * 64)
    r = await hut.client.get(f"{hut.cfg.vxp.base_path}/downloadEdoc", headers=headers)
    assert await r.read() == b""  # the SDK's only failure signal on downloadEdoc
    await a.close()


@pytest.mark.parametrize("size", [0, 1_500_000], ids=["small", "spooled"])
@pytest.mark.parametrize("case", ["mismatch", "missing", "empty"])
async def test_body_must_match_the_signed_hash_file(
    hut: HubUnderTest, case: str, size: int
) -> None:
    """Bodies over 1 MB go to disk as they arrive: refused, they leave nothing there."""
    a = hut.vxp("sys-a")
    data = demo.document_bytes(sender=A, to=(B,), payload=bytes(range(256)) * (size // 256))
    params = {"from": A, "servicetype": "eDoc", "messagetype": "edoc"}
    body = data + b"\r\n"
    if case == "mismatch":
        params["hash-file"] = vxp.hash_file(data.replace(b"Subject", b"Subjext"))
    elif case == "empty":
        params["hash-file"] = vxp.hash_file(b"")
        body = b""
    headers = a.headers(params, "application/octet-stream")
    status, answer = await _post(hut, "sendEdoc", headers, body)
    expected = {"mismatch": ("21", "vxp_hash_mismatch"), "missing": ("22", "vxp_hash_missing")}
    code, reason = expected.get(case, ("10", "vxp_empty_body"))
    assert answer["ErrorCode"] == code and answer["ErrorDesc"].startswith(reason)
    assert answer["DocId"] == "" and status in (400, 422)
    assert await hut.hub.store.sent("sys-a", kind=None, limit=10) == []  # nothing created
    assert reason in await _refusals(hut)
    counted = hut.hub.metrics.registry.get_sample_value(
        "lienthong_intake_total", {"kind": "unknown", "outcome": reason}
    )
    assert counted == 1  # counted as an intake refusal, as on the native face
    spool = Path(hut.cfg.blobs.path) / ".spool"
    assert not spool.exists() or list(spool.iterdir()) == [], "a refused upload left a spool"
    await a.close()


async def _make_strict(hut: HubUnderTest, system: str) -> None:
    s = hut.hub.directory.current.systems[system]
    admin = DirectoryAdmin(hut.hub.store, hut.hub.clock, "test")
    await admin.put_system(System(s.system_id, s.name, s.role, vxp_strict=True))
    await hut.hub.directory.load()


async def test_strict_mode_refuses_stale_and_reused_timestamps(hut: HubUnderTest) -> None:
    await _make_strict(hut, "sys-a")
    peer = hut.vxp("sys-a")  # lienthong's client: fresh timestamp and nonce every call
    for _ in range(3):
        assert await peer.agencies()
    sdk = hut.vxp("sys-a", sdk=True)  # the SDK: one timestamp for the object's life
    assert await sdk.agencies()
    with pytest.raises(HubError) as err:
        await sdk.agencies()  # the same signed timestamp again: a replay
    assert err.value.upstream_code == "15"  # type: ignore[attr-defined]
    assert "vxp_reused_timestamp" in err.value.desc  # type: ignore[attr-defined]
    old = vxp.timestamp(dt.datetime.now(VN_TZ) - dt.timedelta(hours=2))
    with pytest.raises(HubError) as err:
        await peer.call("getAgenciesList", {"timestamp": old})
    assert "vxp_stale_timestamp" in err.value.desc  # type: ignore[attr-defined]
    # an SDK client of a non-strict system is never refused for its old timestamp
    b = hut.vxp("sys-b", sdk=True)
    b.params["timestamp"] = old
    assert await b.agencies() is not None and await b.agencies() is not None
    for c in (peer, sdk, b):
        await c.close()


async def test_expect_100_continue_is_answered_promptly(hut: HubUnderTest) -> None:
    a = hut.vxp("sys-a")
    headers = a.headers({"docId": "nope", "status": "done"}, "application/json")
    url = str(hut.client.make_url(f"{hut.cfg.vxp.base_path}/updateStatus"))
    async with aiohttp.ClientSession() as s:
        loop_time = __import__("time").perf_counter
        t0 = loop_time()
        async with s.post(url, data=b"{}", headers=headers, expect100=True) as r:
            body = await r.json()
        assert loop_time() - t0 < 1.0  # the SDK would wait 3 s without the 100 Continue
    assert body["ErrorCode"] == "404"
    await a.close()
