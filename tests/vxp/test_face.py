"""The VXP face driven by the Python VXP client: a full exchange on both backends,
the same pipeline and ledger as the native API behind it."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from hub.edxml import demo
from hub.edxml.builder import build
from hub.errors import HubError
from hub.service.directory_admin import DirectoryAdmin
from tests.service.harness import A, B, C, HubUnderTest, X, eventually, signed


async def _events(hut: HubUnderTest, package_id: str) -> list[str]:
    return [e.type for e in await hut.hub.store.events(package_id)]


async def test_full_exchange_through_the_vxp_face(hut: HubUnderTest) -> None:
    a, b = hut.vxp("sys-a"), hut.vxp("sys-b")
    try:
        data = signed(hut.pki_dir, A, demo.document_bytes(sender=A, to=(B, C)))
        doc_id = await a.send_edoc(data, from_=A)
        p = await hut.hub.store.package(doc_id)
        assert p is not None and p.sender_organ == A and p.signature["outcome"] == "valid"
        events = await _events(hut, doc_id)
        assert events[:2] == ["received", "accepted"]
        received = [e for e in await hut.hub.store.events(doc_id) if e.type == "received"]
        assert received[0].data["source"] == "vxp"

        items = await eventually(lambda: b.received("edoc"), lambda xs: len(xs) == 1)
        item = items[0]
        assert item["from"] == A and item["to"] == B and item["messageType"] == "edoc"
        assert await b.count("edoc") == 1
        got = await b.get_edoc(item["docId"])
        assert got == data  # bytes identical
        assert await b.download(item["docId"]) == data
        await b.update_status(item["docId"], "processing")
        await b.update_status(item["docId"], "done")
        await b.update_status(item["docId"], "done")  # an SDK retry: still OK
        assert await b.received("edoc") == []  # done documents leave the list

        for code in ("01", "03"):
            st = build(demo.status(code, addressee=A, sender=B))
            await b.send_edoc(st, from_=B, messagetype="status")
        statuses = await eventually(lambda: a.received("status"), lambda xs: len(xs) == 2)
        assert {s["from"] for s in statuses} == {B}
        for s in statuses:
            await a.update_status(s["docId"], "done")

        sent = await a.sent(doc_id)
        by = {i["toCode"]: i for i in sent}
        assert set(by) == {B, C}
        assert by[B]["fromCode"] == A and by[B]["senderDocId"] == doc_id
        assert by[B]["sendStatus"] == "done" and by[B]["receiveStatus"] == "03"
        assert by[B]["title"] == demo.document().subject
        # the same rows the native API shows
        native = await (
            await hut.client.get(f"/api/v1/packages/{doc_id}/deliveries", headers=hut.auth("sys-a"))
        ).json()
        assert {d["recipient"]: d["state"] for d in native["deliveries"]}[B] == "done"
        assert "acknowledged" in await _events(hut, doc_id)
    finally:
        await a.close()
        await b.close()


async def test_a_large_document_streams_through_get_edoc_and_download(hut: HubUnderTest) -> None:
    """Over 1 MB, sendEdoc streams in (lienthong's client streams out), getEdoc's JSON
    is written as base64 of the blob store's stream, downloadEdoc sends it in chunks:
    the SDK reads the same bytes either way."""
    a, b = hut.vxp("sys-a"), hut.vxp("sys-b")
    try:
        payload = bytes(range(256)) * (8 * 1024 + 1)  # 2 MB + 256: base64 carries a remainder
        data = signed(hut.pki_dir, A, demo.document_bytes(sender=A, to=(B,), payload=payload))
        assert len(data) > 2 * 1024 * 1024 and len(data) % 3 != 0
        await a.send_edoc(data, from_=A)
        items = await eventually(lambda: b.received("edoc"), lambda xs: len(xs) == 1)
        doc_id = items[0]["docId"]
        assert await b.get_edoc(doc_id) == data
        assert await b.download(doc_id) == data
        status, raw = await b.raw("getEdoc", {"filePath": "", "docId": doc_id}, body=b"{}")
        answer = json.loads(raw)  # one well-formed JSON envelope, its length exact
        assert status == 200 and answer["status"] == "OK" and answer["ErrorCode"] == "0"
    finally:
        await a.close()
        await b.close()


async def test_send_edoc_replay_returns_the_same_doc_id(hut: HubUnderTest) -> None:
    a = hut.vxp("sys-a", sdk=True)  # one timestamp for the client's life, like the SDK
    try:
        data = demo.document_bytes(sender=A, to=(B,))
        first = await a.send_edoc(data, from_=A)
        again = await a.send_edoc(data, from_=A)  # the SDK's blind re-POST
        assert again == first
        b = hut.vxp("sys-b")
        try:
            items = await eventually(lambda: b.received("edoc"), lambda xs: len(xs) == 1)
            assert len(items) == 1  # nothing duplicated
        finally:
            await b.close()
        assert (await _events(hut, first)).count("duplicate") == 1
    finally:
        await a.close()


async def test_a_system_cannot_send_as_or_read_for_another_organ(hut: HubUnderTest) -> None:
    a, x = hut.vxp("sys-a"), hut.vxp("sys-x")
    try:
        # the package's From is sys-a's organ, but sys-x sends it
        with pytest.raises(HubError) as err:
            await x.send_edoc(demo.document_bytes(sender=A, to=(B,)), from_=X)
        assert err.value.upstream_code == "19"  # type: ignore[attr-defined]
        # the from parameter names another system's organ
        with pytest.raises(HubError) as err:
            await x.send_edoc(demo.document_bytes(sender=X, to=(B,)), from_=A)
        assert err.value.upstream_code == "19"  # type: ignore[attr-defined]
        doc_id = await a.send_edoc(demo.document_bytes(sender=A, to=(B,)), from_=A)
        b = hut.vxp("sys-b")
        try:
            items = await eventually(lambda: b.received("edoc"), lambda xs: len(xs) == 1)
        finally:
            await b.close()
        assert await x.received("edoc") == []
        for call in (x.get_edoc, x.download):
            with pytest.raises(HubError) as err:
                await call(items[0]["docId"])
            assert err.value.error_code in ("upstream_not_found", "not_found")
        with pytest.raises(HubError):
            await x.update_status(items[0]["docId"], "done")
        with pytest.raises(HubError):
            await x.sent(doc_id)  # another system's sent document
    finally:
        await a.close()
        await x.close()


async def test_refusals_map_to_vxp_codes_and_are_recorded(hut: HubUnderTest) -> None:
    a = hut.vxp("sys-a")
    try:
        cases: list[tuple[bytes, str]] = [
            (demo.document_bytes(sender=A, to=("000.00.00.Z99",)), "18"),
            (b"<not-xml", "22"),
        ]
        for data, code in cases:
            status, raw = await a.raw(
                "sendEdoc",
                {"from": A, "hash-file": _hash(data)},
                body=data + b"\r\n",
                content_type="application/octet-stream",
            )
            body = json.loads(raw)
            assert raw.isascii() and b"null" not in raw
            assert body["status"] == "FAIL" and body["ErrorCode"] == code, body
            assert body["DocId"] == "" and status >= 400
        refused = [e for e in await hut.hub.store.ledger(0, 1000) if e.type == "refused"]
        assert {e.data["code"] for e in refused} >= {"unknown_recipient", "not_well_formed"}
    finally:
        await a.close()


def _hash(data: bytes) -> str:
    from hub.vxp.protocol import hash_file  # noqa: PLC0415

    return hash_file(data)


async def test_directory_operations(hut: HubUnderTest) -> None:
    a, b = hut.vxp("sys-a"), hut.vxp("sys-b")
    try:
        plain = {i["code"]: i for i in await a.agencies()}
        assert {A, B, C, X} <= set(plain)
        assert plain[B]["oldCode"] == "G22.OLD"
        qd20 = await a.agencies_qd20()
        assert all("code102" in i or i["code"] == i["id"] for i in qd20)
        units = await a.units()
        u: dict[str, Any] = {i["code"]: i for i in units}[A]
        assert isinstance(u["version"], int) and u["deleted"] is False and u["isAgency"] is True

        new = "000.00.09.H53"
        agency = {"id": "", "pcode": A, "code": new, "name": "Sở thử nghiệm", "mail": ""}
        await a.register(agency)
        await a.register(agency)  # idempotent
        assert new in {i["code"] for i in await a.agencies()}
        with pytest.raises(HubError) as err:
            await b.register({**agency, "code": "000.00.10.G22"})  # sys-b may not register
        assert err.value.upstream_code == "19"  # type: ignore[attr-defined]
        _status, raw = await a.raw("registerAgency", {}, body=b'{"mail":cc"", "code"')
        assert json.loads(raw)["status"] == "FAIL"  # ServiceTest's malformed literal
        admin = DirectoryAdmin(hut.hub.store, hut.hub.clock, "test")
        held = hut.hub.directory.current.organs[new]
        await admin.put_organ(
            replace(held, aliases=("H53.OLD",), push_url="https://dms.example/inbox")
        )
        await hut.hub.directory.load()
        await a.delete(new)
        gone = {i["code"]: i for i in await a.units()}[new]
        assert gone["deleted"] is True
        await a.register({**agency, "name": "Sở thử nghiệm (mới)"})  # it comes back
        back = hut.hub.directory.current.organs[new]
        assert not back.closed and back.name == "Sở thử nghiệm (mới)"
        assert back.aliases == ("H53.OLD",) and back.push_url == "https://dms.example/inbox"
        await a.delete(new)
        types = [e.type for e in await hut.hub.store.ledger(0, 10_000)]
        assert types.count("directory_organ_saved") >= 8
    finally:
        await a.close()
        await b.close()
