"""Intake refusals, de-duplication, aliases, linking and signature policy (both backends)."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import time
from pathlib import Path
from typing import Any

import pytest

from hub.edxml import demo
from hub.edxml.builder import build
from hub.edxml.model import Business, BusinessDocType
from hub.errors import HubError
from hub.records import Organ, System
from hub.service import intake as intake_module
from hub.service.auth import authenticate
from hub.service.directory_admin import DirectoryAdmin
from hub.service.intake import Intake, Submission
from tests.logged import record_logs
from tests.service.harness import A, B, HubUnderTest, eventually, signed


async def _error(r: Any) -> tuple[int, str]:
    return r.status, (await r.json())["error"]["code"]


async def _refused_codes(hut: HubUnderTest) -> list[str]:
    return [e.data["code"] for e in await hut.hub.store.ledger(0, 10_000) if e.type == "refused"]


async def test_bad_input_gets_a_stable_code_status_and_ledger_record(hut: HubUnderTest) -> None:
    cases = [
        (b"<edXML", 400, "not_well_formed"),
        (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>', 400, "dtd_forbidden"),
        (b"<root/>", 400, "not_edxml"),
        (demo.document_bytes(sender=A, to=("000.00.00.Z99",)), 422, "unknown_recipient"),
        (demo.document_bytes(sender=A, to=(B, B)), 422, "validation_failed"),
    ]
    for body, status, code in cases:
        got = await _error(await hut.submit("sys-a", body))
        assert got[0] == status, (code, got)
        if code != "validation_failed":
            assert got[1] == code
    r = await hut.submit("sys-a", build(demo.status("01", addressee=B, sender=A)), "edoc")
    assert await _error(r) == (400, "kind_mismatch")
    codes = await _refused_codes(hut)
    for expected in (
        "not_well_formed",
        "dtd_forbidden",
        "not_edxml",
        "unknown_recipient",
        "kind_mismatch",
    ):
        assert expected in codes
    assert await hut.inbox("sys-b", state="all") == []


async def test_a_refusal_after_examination_counts_under_the_kind_found(
    hut: HubUnderTest,
) -> None:
    """Sent without ``kind``: a package refused for its recipient (or sender, or signature)
    was read, so it counts as the edoc it is, not as ``unknown``."""
    data = demo.document_bytes(sender=A, to=("000.00.00.Z99",))
    assert await _error(await hut.submit("sys-a", data)) == (422, "unknown_recipient")
    registry = hut.hub.metrics.registry
    labels = {"kind": "edoc", "outcome": "unknown_recipient"}
    assert registry.get_sample_value("lienthong_intake_total", labels) == 1
    unknown = {"kind": "unknown", "outcome": "unknown_recipient"}
    assert registry.get_sample_value("lienthong_intake_total", unknown) is None


async def test_a_full_blob_volume_refuses_new_packages_and_loses_nothing(
    hut: HubUnderTest, monkeypatch: Any
) -> None:
    """Below its reserve the hub takes no new package (503, recorded, not ready) while
    recipients go on fetching and acknowledging; a write that finds the disk full is the
    same 503. Either way nothing is half-stored, and sending again later works."""
    first = signed(hut.pki_dir, A, demo.document_bytes(sender=A, to=(B,), number="1/F"))
    assert (await hut.submit("sys-a", first)).status == 202
    [held] = await eventually(lambda: hut.inbox("sys-b"), bool)
    blobs = hut.hub.blobs
    blobs.min_free_bytes = blobs.free_bytes() * 4  # type: ignore[attr-defined]
    later = signed(hut.pki_dir, A, demo.document_bytes(sender=A, to=(B,), number="2/F"))
    for _ in range(2):  # within the second the volume is looked at: each one recorded
        r = await hut.submit("sys-a", later)
        assert (r.status, (await r.json())["error"]["code"]) == (503, "blob_store_full")
        assert r.headers["Retry-After"]
    ready = await hut.client.get("/readyz")
    assert ready.status == 503 and (await ready.json())["checks"]["blobs"] == "blob_store_full"
    got = await hut.client.get(f"/api/v1/packages/{held['id']}", headers=hut.auth("sys-b"))
    assert got.status == 200 and await got.read() == first
    ack = await hut.client.post(
        f"/api/v1/packages/{held['id']}/ack", json={"result": "done"}, headers=hut.auth("sys-b")
    )
    assert ack.status == 200
    blobs.min_free_bytes = 0  # type: ignore[attr-defined]
    assert (await hut.client.get("/readyz")).status == 200

    def full(*_args: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(type(blobs), "_put", full)
    r = await hut.submit("sys-a", later)
    assert (r.status, (await r.json())["error"]["code"]) == (503, "blob_store_full")
    monkeypatch.undo()
    assert [x["code"] for x in await hut.refusals()] == ["blob_store_full"] * 3
    labels = {"kind": "unknown", "outcome": "blob_store_full"}
    assert hut.hub.metrics.registry.get_sample_value("lienthong_intake_total", labels) == 2
    assert [i["id"] for i in await hut.inbox("sys-b", state="all")] == [held["id"]]
    r = await hut.submit("sys-a", later)  # space again: the same bytes go through
    assert r.status == 202, await r.text()
    assert (
        len(await eventually(lambda: hut.inbox("sys-b", state="all"), lambda xs: len(xs) == 2)) == 2
    )


async def test_oversized_package_is_refused_with_413(hut: HubUnderTest) -> None:
    limit = hut.cfg.server.max_body_bytes
    r = await hut.submit("sys-a", b"<" + b"a" * limit)
    assert r.status == 413
    assert (await r.json())["error"]["code"] == "package_too_large"
    # Refused by the HTTP face before intake, and recorded all the same: who, what, how big.
    [refusal] = await hut.refusals()
    assert refusal["code"] == "package_too_large"
    assert refusal["actor"] == "system:sys-a"
    assert refusal["size"] == limit + 1
    assert refusal["source"] == "native"
    assert refusal["sha256"] is None  # the body was never read whole


async def test_refusals_before_intake_are_recorded(hut: HubUnderTest) -> None:
    data = demo.document_bytes(sender=A, to=(B,))
    assert await _error(await hut.submit("sys-a", data, kind="letter")) == (400, "bad_kind")
    assert await _error(await hut.submit("admin", data)) == (403, "role_forbidden")
    refusals = await hut.refusals()
    assert [(x["code"], x["actor"]) for x in refusals] == [
        ("bad_kind", "system:sys-a"),
        ("role_forbidden", "system:admin"),
    ]
    assert all(x["declared_kind"] is None for x in refusals)  # "letter" is not kept
    assert await hut.inbox("sys-b", state="all") == []


async def test_same_bytes_twice_is_one_package(hut: HubUnderTest) -> None:
    data = signed(hut.pki_dir, A, demo.document_bytes(sender=A, to=(B,)))
    first = await (await hut.submit("sys-a", data)).json()
    r = await hut.submit("sys-a", data)
    assert r.status == 200
    second = await r.json()
    assert second["duplicate"] is True and second["id"] == first["id"]
    items = await eventually(lambda: hut.inbox("sys-b"), lambda xs: len(xs) == 1)
    assert [i["id"] for i in items] == [first["id"]]


async def test_same_document_id_with_other_bytes_is_a_conflict(hut: HubUnderTest) -> None:
    first = demo.document_bytes(sender=A, to=(B,))
    await hut.submit("sys-a", first)
    other = demo.document_bytes(sender=A, to=(B,), payload=b"%PDF different")
    for _ in range(2):  # a DMS that tries again: each try refused, its bytes not kept
        r = await hut.submit("sys-a", other)
        assert await _error(r) == (409, "duplicate_document")
        assert not await hut.hub.blobs.exists(hashlib.sha256(other).hexdigest())
    assert await hut.hub.blobs.exists(hashlib.sha256(first).hexdigest())
    # Bytes that some package holds stay, whichever submission was refused for its key.
    await hut.hub.intake._drop_bytes(hashlib.sha256(first).hexdigest())
    assert await hut.hub.blobs.exists(hashlib.sha256(first).hexdigest())


async def test_replacement_reuses_the_document_id_and_links_to_it(hut: HubUnderTest) -> None:
    first = await (await hut.submit("sys-a", demo.document_bytes(sender=A, to=(B,)))).json()
    repl = build(
        demo.document(
            sender=A,
            to=(B,),
            payload=b"%PDF v2",
            business=Business(
                BusinessDocType.REPLACEMENT, paper="0", document_id=demo.document_id(A)
            ),
        )
    )
    r = await hut.submit("sys-a", repl)
    assert r.status == 202, await r.text()
    meta = await (
        await hut.client.get(
            f"/api/v1/packages/{(await r.json())['id']}/metadata", headers=hut.auth("sys-a")
        )
    ).json()
    assert meta["related_package_id"] == first["id"] and meta["business_type"] == 3


async def test_refused_bytes_that_cannot_be_removed_leave_the_answer_as_it_was(
    hut: HubUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    await hut.submit("sys-a", demo.document_bytes(sender=A, to=(B,)))
    other = demo.document_bytes(sender=A, to=(B,), payload=b"%PDF different")

    async def broken(sha256: str) -> None:
        raise OSError(errno.EIO, "I/O error")

    logged = record_logs(monkeypatch, intake_module)
    monkeypatch.setattr(hut.hub.blobs, "delete", broken)
    r = await hut.submit("sys-a", other)
    assert await _error(r) == (409, "duplicate_document")
    sha = hashlib.sha256(other).hexdigest()
    assert logged.by_level["warning"] == [
        {"event": "refused_bytes_kept", "sha256": sha, "error": "[Errno 5] I/O error"}
    ]


async def test_duplicate_status_is_dropped_but_05_repeats(hut: HubUnderTest) -> None:
    await hut.submit("sys-a", demo.document_bytes(sender=A, to=(B,)))
    st = build(demo.status("03", addressee=A, sender=B))
    assert (await hut.submit("sys-b", st)).status == 202
    again = build(
        demo.status(
            "03",
            addressee=A,
            sender=B,
            timestamp=demo.EdTimestamp.of(demo.dt.datetime(2026, 11, 23, 10, 0, 0)),
        )
    )
    r = await hut.submit("sys-b", again)
    assert r.status == 200 and (await r.json())["duplicate"] is True
    # Answered as the status already held: the repeat's own bytes are not kept.
    assert not await hut.hub.blobs.exists(hashlib.sha256(again).hexdigest())
    assert await hut.hub.blobs.exists(hashlib.sha256(st).hexdigest())
    for minute in (1, 2):
        p = build(
            demo.status(
                "05",
                addressee=A,
                sender=B,
                timestamp=demo.EdTimestamp.of(demo.dt.datetime(2026, 11, 23, 11, minute, 0)),
            )
        )
        assert (await hut.submit("sys-b", p)).status == 202
    statuses = await eventually(lambda: hut.inbox("sys-a", kind="status"), lambda xs: len(xs) == 3)
    assert sorted(s["status_code"] for s in statuses) == ["03", "05", "05"]


async def test_take_back_13_goes_to_the_recipient(hut: HubUnderTest) -> None:
    await hut.submit("sys-a", demo.document_bytes(sender=A, to=(B,)))
    r = await hut.submit("sys-a", build(demo.status("13", addressee=B, sender=A)))
    assert r.status == 202, await r.text()
    got = await eventually(lambda: hut.inbox("sys-b", kind="status"), lambda xs: len(xs) == 1)
    assert got[0]["status_code"] == "13"


async def test_alias_resolves_to_the_organ_that_holds_the_code(hut: HubUnderTest) -> None:
    r = await hut.submit("sys-a", demo.document_bytes(sender=A, to=("G22.OLD",)))
    assert r.status == 202, await r.text()
    assert [d["recipient"] for d in (await r.json())["deliveries"]] == [B]
    await eventually(lambda: hut.inbox("sys-b"), lambda xs: len(xs) == 1)


async def test_required_policy_refuses_placeholder_and_accepts_valid(hut: HubUnderTest) -> None:
    admin = DirectoryAdmin(hut.hub.store, hut.hub.clock, "test")
    await admin.put_system(System("sys-a", "A", signature_policy="required"))
    await hut.hub.directory.load()
    unsigned = demo.document_bytes(sender=A, to=(B,))
    r = await hut.submit("sys-a", unsigned)
    assert r.status == 422
    assert (await r.json())["error"]["code"] in ("signature_missing", "signature_placeholder")
    ok = await hut.submit("sys-a", signed(hut.pki_dir, A, unsigned))
    assert ok.status == 202
    assert (await ok.json())["signature"]["outcome"] == "valid"


async def test_signature_by_a_certificate_not_bound_to_the_sender_is_refused(
    hut: HubUnderTest,
) -> None:
    data = signed(hut.pki_dir, B, demo.document_bytes(sender=A, to=(B,)))  # B's key signs A's
    r = await hut.submit("sys-a", data)
    assert await _error(r) == (422, "cert_not_bound")


async def test_closed_organ_refuses(hut: HubUnderTest) -> None:
    admin = DirectoryAdmin(hut.hub.store, hut.hub.clock, "test")
    await admin.put_organ(Organ(B, "VPCP", "sys-b", closed=True))
    await hut.hub.directory.load()
    r = await hut.submit("sys-a", demo.document_bytes(sender=A, to=(B,)))
    assert r.status == 422
    assert (await r.json())["error"]["details"]["problems"][0]["code"] == "recipient_closed"


def _blob_names(root: Path) -> list[str]:
    return [p.name for p in root.rglob("*") if p.is_file()]


def _spooled(hut: HubUnderTest) -> list[Path]:
    return sorted((Path(hut.cfg.blobs.path) / ".spool").glob("*"))


async def test_large_uploads_are_spooled_to_disk_and_cleaned_up(hut: HubUnderTest) -> None:
    """Above 1 MB (or of unknown length) a body goes to disk as it arrives: accepted, the
    spool file becomes the blob by a rename; refused, whatever the reason, it is gone."""
    payload = bytes(range(256)) * (8 * 1024)  # 2 MB of attachment
    data = signed(hut.pki_dir, A, demo.document_bytes(sender=A, to=(B,), payload=payload))
    r = await hut.submit("sys-a", data)
    assert r.status == 202, await r.text()
    sha = (await r.json())["sha256"]
    assert (Path(hut.cfg.blobs.path) / sha[:2] / sha[2:4] / sha).read_bytes() == data
    assert _spooled(hut) == []
    tampered = data.replace(b"<edXMLEnvelope", b"<edXMLEnvelope ", 1)[:-40] + data[-39:]
    for body, status in (
        (tampered, 400),  # not well-formed after the cut
        (data.replace(B.encode(), b"000.00.00.Z99"), 422),  # signature or routing refusal
        (b" " + data, 400),  # junk before the declaration
    ):
        r = await hut.submit("sys-a", body)
        assert r.status == status, (status, await r.text())
        assert _spooled(hut) == []
    limit = hut.cfg.server.max_body_bytes
    r = await hut.submit("sys-a", b"<" + b"a" * (limit + 1))  # streamed, no Content-Length
    assert r.status == 413
    assert _spooled(hut) == []
    assert _blob_names(Path(hut.cfg.blobs.path)) == [sha], "a refused upload left bytes"


async def test_a_refusal_is_counted_once_even_when_recording_it_is_tried_again(
    hut: HubUnderTest, monkeypatch: Any
) -> None:
    from hub.errors import InputError, Unavailable  # noqa: PLC0415

    async def down(*_a: object, **_k: object) -> None:
        raise Unavailable("store down for the test")

    monkeypatch.setattr(hut.hub.store, "append_events", down)
    caller = authenticate(hut.hub.directory.current, f"Bearer {hut.tokens['sys-a']}", peer=None)
    exc = InputError("not a package", code="not_edxml")
    for _ in range(2):  # the second face to see it tries to record it again
        await hut.hub.intake.record_refusal(caller, exc, source="vxp")
    assert not exc.recorded
    counted = hut.hub.metrics.registry.get_sample_value(
        "lienthong_intake_total", {"kind": "unknown", "outcome": "not_edxml"}
    )
    assert counted == 1


async def test_submissions_ready_together_are_examined_together_each_with_its_outcome(
    hut: HubUnderTest, monkeypatch: Any
) -> None:
    intake = hut.hub.intake
    batches: list[int] = []
    real = Intake._examine_queued

    def counted(self: Intake) -> None:
        batches.append(len(self._queued))
        real(self)

    monkeypatch.setattr(Intake, "_examine_queued", counted)
    caller = authenticate(hut.hub.directory.current, f"Bearer {hut.tokens['sys-a']}", peer=None)
    bodies = [
        signed(hut.pki_dir, A, demo.document_bytes(sender=A, to=(B,), number=f"{i}/BATCH"))
        for i in range(6)
    ]
    bodies.insert(3, demo.document_bytes(sender=A, to=("000.00.00.Z99",)))  # refused

    def sub(body: bytes) -> Submission:
        digest = hashlib.sha256(body).hexdigest()
        return Submission(body, digest, "edoc", hut.hub.clock.now_us(), time.perf_counter())

    results = await asyncio.gather(
        *(intake.submit(sub(b), caller) for b in bodies), return_exceptions=True
    )
    assert batches == [7]  # all in one turn of the event loop
    refused = results.pop(3)
    assert isinstance(refused, HubError) and refused.error_code == "unknown_recipient"
    numbers = {r.package.document_id for r in results if not isinstance(r, BaseException)}
    assert len(numbers) == 6  # each accepted on its own, the refusal beside them no matter
    await eventually(lambda: hut.inbox("sys-b"), lambda xs: len(xs) == 6)
    assert "unknown_recipient" in await _refused_codes(hut)
