"""The vertical slice on both backends: A sends to B (local) and C (upstream);
B lists, fetches, acknowledges and answers with statuses 01 and 03; A sees them."""

from __future__ import annotations

from pathlib import Path

from hub.edxml import demo
from hub.edxml.builder import build
from tests.service.harness import A, B, C, HubUnderTest, eventually, signed


async def test_a_sends_to_local_b_and_upstream_c_and_sees_b_statuses(hut: HubUnderTest) -> None:
    data = signed(hut.pki_dir, A, demo.document_bytes(sender=A, to=(B, C)))
    r = await hut.submit("sys-a", data, "edoc")
    assert r.status == 202, await r.text()
    sent = await r.json()
    assert sent["signature"]["outcome"] == "valid"
    routes = {d["recipient"]: d["route"] for d in sent["deliveries"]}
    assert routes == {B: "local", C: "upstream"}
    pid = sent["id"]

    items = await eventually(lambda: hut.inbox("sys-b"), lambda xs: len(xs) == 1)
    assert items[0]["id"] == pid and items[0]["sender"] == A and items[0]["state"] == "available"

    got = await hut.client.get(f"/api/v1/packages/{pid}", headers=hut.auth("sys-b"))
    assert got.status == 200
    assert await got.read() == data  # bytes are sacred

    listing = await hut.client.get("/api/v1/inbox", headers=hut.auth("sys-b"))
    assert listing.headers["Content-Type"] == "application/json; charset=utf-8"
    subject = demo.document().subject
    assert subject and not subject.isascii()
    assert subject.encode() in await listing.read(), "Vietnamese is written as UTF-8, unescaped"

    meta = await (
        await hut.client.get(f"/api/v1/packages/{pid}/metadata", headers=hut.auth("sys-b"))
    ).json()
    assert meta["summary"]["subject"] == subject
    assert [d["recipient"] for d in meta["deliveries"]] == [B]  # B sees only its own delivery

    ack = await hut.client.post(
        f"/api/v1/packages/{pid}/ack", json={"result": "done"}, headers=hut.auth("sys-b")
    )
    assert ack.status == 200
    again = await hut.client.post(
        f"/api/v1/packages/{pid}/ack", json={"result": "done"}, headers=hut.auth("sys-b")
    )
    assert again.status == 200, "acknowledgement is idempotent"

    for code in ("01", "03"):
        st = build(demo.status(code, addressee=A, sender=B))
        r = await hut.submit("sys-b", st, "status")
        assert r.status == 202, await r.text()

    # The statuses are delivered to A's inbox and recorded against B's delivery.
    statuses = await eventually(lambda: hut.inbox("sys-a", kind="status"), lambda xs: len(xs) == 2)
    assert sorted(s["status_code"] for s in statuses) == ["01", "03"]
    view = await (
        await hut.client.get(f"/api/v1/packages/{pid}/deliveries", headers=hut.auth("sys-a"))
    ).json()
    by = {d["recipient"]: d for d in view["deliveries"]}
    assert by[B]["state"] == "done" and by[B]["business_status"] == "03"
    # The upstream double received the original bytes.
    axis = hut.hub.parts.upstream
    await eventually(lambda: _forwarded(hut), lambda n: n == 1)
    assert axis is not None and axis.forwarded[0] == (pid, data)  # type: ignore[attr-defined]
    assert by[C]["route"] == "upstream"

    events = [e.type for e in await hut.hub.store.events(pid)]
    for expected in (
        "received",
        "accepted",
        "routed",
        "available",
        "fetched",
        "acknowledged",
        "status_received",
        "forwarded",
    ):
        assert expected in events, (expected, events)


async def _forwarded(hut: HubUnderTest) -> int:
    return len(hut.hub.parts.upstream.forwarded)  # type: ignore[union-attr]


async def test_a_large_package_is_streamed_to_the_recipient_byte_for_byte(
    hut: HubUnderTest,
) -> None:
    """Above 1 MB the fetch is sent in chunks from the blob store (bounded memory); the
    bytes, headers and the ``fetched`` transition are those of the small-package path, and
    a blob gone from disk is still a JSON error, not a cut-off stream."""
    payload = bytes(range(256)) * (12 * 1024)  # 3 MB of attachment, base64 in the package
    data = signed(hut.pki_dir, A, demo.document_bytes(sender=A, to=(B, C), payload=payload))
    r = await hut.submit("sys-a", data, "edoc")
    assert r.status == 202, await r.text()
    sent = await r.json()
    pid = sent["id"]
    await eventually(lambda: hut.inbox("sys-b"), lambda xs: len(xs) == 1)
    got = await hut.client.get(f"/api/v1/packages/{pid}", headers=hut.auth("sys-b"))
    assert got.status == 200
    assert got.headers["X-Lienthong-Sha256"] == sent["sha256"]
    assert int(got.headers["Content-Length"]) == len(data) > 4 * 1024 * 1024
    assert await got.read() == data
    states = await eventually(
        lambda: hut.inbox("sys-b", state="all"), lambda xs: xs[0]["state"] == "fetched"
    )
    assert states[0]["id"] == pid
    # Forwarded upstream from the blob store's stream, and summarised from the file.
    await eventually(lambda: _forwarded(hut), lambda n: n == 1)
    assert hut.hub.parts.upstream.forwarded[0] == (pid, data)  # type: ignore[union-attr]
    meta = await hut.client.get(f"/api/v1/packages/{pid}/metadata", headers=hut.auth("sys-b"))
    assert meta.status == 200, await meta.text()
    summary = (await meta.json())["summary"]
    assert summary["attachments"][0]["content_id"]
    blob = Path(hut.cfg.blobs.path) / sent["sha256"][:2] / sent["sha256"][2:4] / sent["sha256"]
    blob.unlink()
    gone = await hut.client.get(f"/api/v1/packages/{pid}", headers=hut.auth("sys-b"))
    assert gone.status == 404
    assert (await gone.json())["error"]["code"] == "blob_missing"
