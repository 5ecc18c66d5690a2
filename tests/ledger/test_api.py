"""Ledger, audit, evidence, roles and retention through the hub's API, on both backends."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from adapters.factory import opened_store
from hub.edxml import demo
from hub.edxml.builder import build
from hub.ledger import evidence
from hub.service.retention import Retention
from tests.service import harness
from tests.service.harness import A, B, HubUnderTest, eventually, signed

REPO = Path(__file__).resolve().parents[2]


async def _send(hut: HubUnderTest, number: str = "1/UBND") -> str:
    data = signed(hut.pki_dir, A, demo.document_bytes(sender=A, to=(B,), number=number))
    r = await hut.submit("sys-a", data, "edoc")
    assert r.status == 202, await r.text()
    pid: str = (await r.json())["id"]
    await eventually(lambda: hut.inbox("sys-b"), lambda xs: any(x["id"] == pid for x in xs))
    return pid


async def _events(hut: HubUnderTest, type_: str) -> list[Any]:
    return [e for e in await hut.hub.store.ledger(0, 100_000) if e.type == type_]


async def test_auditors_read_and_every_audit_query_is_in_the_ledger(hut: HubUnderTest) -> None:
    pid = await _send(hut)
    r = await hut.client.get(
        "/api/v1/audit/packages",
        params={"sender": A, "from": "2020-01-01"},
        headers=hut.auth("auditor"),
    )
    assert r.status == 200, await r.text()
    items = (await r.json())["items"]
    assert [i["id"] for i in items] == [pid]
    assert items[0]["deliveries"][0]["recipient"] == B
    none = await hut.client.get(
        "/api/v1/audit/packages", params={"sender": B}, headers=hut.auth("auditor")
    )
    assert (await none.json())["items"] == []
    asked = await _events(hut, "audit_query")
    assert [e.actor for e in asked] == ["system:auditor", "system:auditor"]
    assert asked[0].data["filters"]["sender"] == A


async def test_audit_exports_stream_csv_and_jsonl(hut: HubUnderTest) -> None:
    pid = await _send(hut)
    r = await hut.client.get(
        "/api/v1/audit/packages.csv", params={"subject": "LIÊN thông"}, headers=hut.auth("admin")
    )
    assert r.status == 200 and r.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(await r.text())))
    assert [(x["package_id"], x["recipient"], x["signature"]) for x in rows] == [(pid, B, "valid")]
    j = await hut.client.get(
        "/api/v1/audit/packages.jsonl", params={"recipient": B}, headers=hut.auth("auditor")
    )
    lines = [json.loads(x) for x in (await j.text()).splitlines()]
    assert [x["package_id"] for x in lines] == [pid]
    bad = await hut.client.get("/api/v1/audit/packages.xml", headers=hut.auth("auditor"))
    assert bad.status == 400 and (await bad.json())["error"]["code"] == "bad_parameter"
    hows = [e.data["how"] for e in await _events(hut, "audit_query")]
    assert hows == ["export:csv", "export:jsonl"]


async def _overdue(hut: HubUnderTest) -> list[str]:
    r = await hut.client.get(
        "/api/v1/audit/packages", params={"overdue": "true"}, headers=hut.auth("auditor")
    )
    assert r.status == 200, await r.text()
    return [i["id"] for i in (await r.json())["items"]]


async def _overdue_gauge(hut: HubUnderTest) -> float:
    await hut.hub.update_gauges()
    return await harness.metric(hut, "lienthong_overdue_acknowledgements")


async def _sender_view(hut: HubUnderTest, pid: str) -> tuple[str, list[bool]]:
    r = await hut.client.get(f"/api/v1/packages/{pid}/deliveries", headers=hut.auth("sys-a"))
    assert r.status == 200, await r.text()
    body = await r.json()
    return body["acknowledgement_due_at"], [
        d["acknowledgement_overdue"] for d in body["deliveries"]
    ]


async def test_overdue_acknowledgements_are_counted_listed_and_cleared_by_a_status(
    hut: HubUnderTest,
) -> None:
    pid = await _send(hut, number="30/UBND")
    acked = await _send(hut, number="31/UBND")  # B's system acknowledges this one
    r = await hut.client.post(
        f"/api/v1/packages/{acked}/ack", json={"result": "done"}, headers=hut.auth("sys-b")
    )
    assert r.status == 200, await r.text()
    # Received just now: due at the end of this or the next working day, not yet late.
    assert await _overdue(hut) == [] and await _overdue_gauge(hut) == 0
    due_at, flags = await _sender_view(hut, pid)
    assert flags == [False] and due_at.endswith("T10:00:00.000+00:00")  # 17:00 Vietnam time
    hut.hub.clock = harness.LaterClock(10)  # ten days on, B has still not notified receipt of pid
    assert await _overdue(hut) == [pid] and await _overdue_gauge(hut) == 1
    assert await _sender_view(hut, pid) == (due_at, [True])  # the sender sees it too
    asked = (await _events(hut, "audit_query"))[-1]
    cutoff = asked.data["filters"]["overdue_before_us"]
    row = await hut.hub.store.package(pid)
    assert row is not None
    due = hut.hub.calendar.due_us(row.received_us)
    assert due is not None and row.received_us < due <= cutoff
    # The same filter combines with the others and reaches the exports.
    none = await hut.client.get(
        "/api/v1/audit/packages.jsonl",
        params={"overdue": "1", "recipient": A},
        headers=hut.auth("auditor"),
    )
    assert none.status == 200 and await none.text() == ""  # an empty export, recorded
    bad = await hut.client.get(
        "/api/v1/audit/packages", params={"overdue": "maybe"}, headers=hut.auth("auditor")
    )
    assert bad.status == 400 and (await bad.json())["error"]["code"] == "bad_parameter"

    st = build(demo.status("01", addressee=A, sender=B, number="30/UBND"))
    r = await hut.submit("sys-b", st, "status")
    assert r.status == 202, await r.text()

    async def answered() -> str | None:
        return (await hut.hub.store.deliveries(pid))[0].business_status

    await eventually(answered, lambda s: s == "01")
    assert await _overdue(hut) == [] and await _overdue_gauge(hut) == 0
    assert await _sender_view(hut, pid) == (due_at, [False])


async def test_roles_auditors_change_nothing_agencies_cannot_audit(hut: HubUnderTest) -> None:
    pid = await _send(hut)
    forbidden = [
        ("auditor", "POST", f"/api/v1/admin/packages/{pid}/hold", {"reason": "x"}),
        ("auditor", "DELETE", f"/api/v1/admin/packages/{pid}/hold", None),
        ("auditor", "POST", "/api/v1/admin/deliveries/whatever/resend", {}),
        ("auditor", "POST", "/api/v1/packages", None),
        ("sys-a", "GET", "/api/v1/audit/packages", None),
        ("sys-a", "GET", "/api/v1/ledger/proof/inclusion?seq=1", None),
        ("sys-b", "GET", f"/api/v1/packages/{pid}/evidence", None),
        ("sys-a", "POST", f"/api/v1/admin/packages/{pid}/hold", {"reason": "x"}),
    ]
    for system, method, path, body in forbidden:
        r = await hut.client.request(method, path, json=body, headers=hut.auth(system))
        assert r.status == 403, (system, method, path, r.status)
        assert (await r.json())["error"]["code"] == "role_forbidden"
    assert await _events(hut, "legal_hold") == []
    r = await hut.client.post(
        f"/api/v1/admin/packages/{pid}/hold",
        json={"reason": "court order 12/2026"},
        headers=hut.auth("admin"),
    )
    assert r.status == 200 and (await r.json())["changed"] is True
    assert await hut.hub.store.hold_reason(pid) == "court order 12/2026"
    assert await hut.hub.store.hold_reason("no-such-package") is None
    held = await _events(hut, "legal_hold")
    assert [(e.actor, e.package_id, e.data["reason"]) for e in held] == [
        ("system:admin", pid, "court order 12/2026")
    ]
    no_creds = await hut.client.get("/api/v1/ledger/checkpoint")
    assert no_creds.status == 401


async def test_evidence_bundle_verifies_offline_and_any_altered_byte_fails(
    hut: HubUnderTest, tmp_path: Path
) -> None:
    pid = await _send(hut)
    await hut.hub.sealer.seal_once()
    r = await hut.client.get(f"/api/v1/packages/{pid}/evidence", headers=hut.auth("auditor"))
    assert r.status == 200, await r.text()
    raw = await r.read()
    ca = hut.pki_dir / "ca" / "ca.pem"
    from cryptography import x509  # noqa: PLC0415

    anchors = x509.load_pem_x509_certificates(ca.read_bytes())
    report = evidence.verify_bundle(raw, anchors)
    assert report.ok, report.problems
    assert report.package_id == pid and report.events >= 3
    assert evidence.bundle_bytes(raw) == await hut.hub.blobs.get(
        (await hut.hub.store.package(pid)).sha256
    )  # type: ignore[union-attr]
    # every 97th byte, and the first and last, flipped one at a time
    for pos in sorted({0, len(raw) - 1, *range(5, len(raw), 97)}):
        altered = bytearray(raw)
        altered[pos] ^= 0x01
        assert not evidence.verify_bundle(bytes(altered), anchors).ok, pos
    # offline: the CLI in a fresh process, with no configuration and no database reachable
    bundle = tmp_path / "bundle.json"
    bundle.write_bytes(raw)
    env = {"PATH": "/usr/bin:/bin", "LIENTHONG_STORE_DSN": "postgresql://nowhere.invalid/x"}
    out = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "hub.cli.main", "evidence", "verify", str(bundle), "--ca", str(ca)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"evidence OK: package {pid}" in out.stdout
    altered = bytearray(raw)
    altered[len(raw) // 2] ^= 0x20
    bundle.write_bytes(bytes(altered))
    out = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "hub.cli.main", "evidence", "verify", str(bundle)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert out.returncode == 1 and "evidence INVALID" in out.stdout


async def test_a_large_packages_evidence_is_streamed_and_verifies(hut: HubUnderTest) -> None:
    payload = bytes(range(256)) * 6000  # 1.5 MB: the package is read from its blob in pieces
    data = signed(hut.pki_dir, A, demo.document_bytes(sender=A, to=(B,), payload=payload))
    r = await hut.submit("sys-a", data, "edoc")
    assert r.status == 202, await r.text()
    pid = (await r.json())["id"]
    await eventually(lambda: hut.inbox("sys-b"), lambda xs: any(x["id"] == pid for x in xs))
    await hut.hub.sealer.seal_once()
    bundle = await evidence.export_bundle(hut.hub.store, hut.hub.blobs, pid)
    assert bundle.package is not None and bundle.package.data is None  # a stream
    r = await hut.client.get(f"/api/v1/packages/{pid}/evidence", headers=hut.auth("auditor"))
    assert r.status == 200, await r.text()
    raw = await r.read()
    assert int(r.headers["Content-Length"]) == len(raw) == bundle.size
    assert evidence.canonical(json.loads(raw)) == raw  # pieces joined: the canonical form
    report = evidence.verify_bundle(raw)
    assert report.ok, report.problems
    assert evidence.bundle_bytes(raw) == data


async def test_proofs_over_the_api_verify(hut: HubUnderTest) -> None:
    await _send(hut)
    cp = await hut.hub.sealer.seal_once()
    assert cp is not None
    r = await hut.client.get(
        "/api/v1/ledger/proof/inclusion", params={"seq": "2"}, headers=hut.auth("auditor")
    )
    body = await r.json()
    import base64  # noqa: PLC0415

    from hub.ledger.merkle import verify_inclusion  # noqa: PLC0415

    path = [base64.b64decode(p) for p in body["path"]]
    root = base64.b64decode(body["checkpoint"]["root"])
    assert verify_inclusion(base64.b64decode(body["leaf_hash"]), 2, cp.size, path, root)
    latest = await (
        await hut.client.get("/api/v1/ledger/checkpoint", headers=hut.auth("sys-a"))
    ).json()
    assert latest["checkpoint"]["size"] == cp.size


async def test_retention_purges_bytes_keeps_the_ledger_and_respects_legal_hold(
    hut: HubUnderTest,
) -> None:
    kept = await _send(hut, "1/KEPT")
    gone = await _send(hut, "2/GONE")
    await hut.hub.retention.hold(kept, "inspection", "system:admin")
    retention = Retention(
        hut.hub.store,
        hut.hub.blobs,
        harness.LaterClock(31),
        hut.hub.metrics,
        days=30,
        interval_s=3600,
    )
    assert await retention.purge_once("retention") == 1
    r = await hut.client.get(f"/api/v1/packages/{gone}", headers=hut.auth("sys-b"))
    assert r.status == 410 and (await r.json())["error"]["code"] == "package_purged"
    ok = await hut.client.get(f"/api/v1/packages/{kept}", headers=hut.auth("sys-b"))
    assert ok.status == 200
    tomb = await _events(hut, "purged")
    assert [e.package_id for e in tomb] == [gone]
    await hut.hub.sealer.seal_once()
    bundle = await evidence.export_bundle(hut.hub.store, hut.hub.blobs, gone)
    raw = evidence.verify_bundle(await bundle.read())
    assert raw.ok, raw.problems  # the purged package's history still proves out
    from cryptography import x509  # noqa: PLC0415

    from hub.ledger.verify import verify_ledger  # noqa: PLC0415

    anchors = x509.load_pem_x509_certificates((hut.pki_dir / "ca" / "ca.pem").read_bytes())
    assert (await verify_ledger(hut.hub.store, anchors)).ok


async def test_administrators_manage_the_directory_and_credentials_auditors_cannot(
    hut: HubUnderTest,
) -> None:
    calls = [
        ("/api/v1/admin/systems", {"system_id": "sys-new", "name": "Sở Y tế DMS"}),
        (
            "/api/v1/admin/organs",
            {"organ_id": "000.00.11.H53", "name": "Sở Y tế", "system_id": "sys-new"},
        ),
        ("/api/v1/admin/systems/sys-new/tokens", {}),
    ]
    for path, body in calls:
        r = await hut.client.post(path, json=body, headers=hut.auth("auditor"))
        assert r.status == 403 and (await r.json())["error"]["code"] == "role_forbidden", path
    assert "sys-new" not in hut.hub.directory.current.systems
    for path, body in calls:
        r = await hut.client.post(path, json=body, headers=hut.auth("admin"))
        assert r.status in (200, 201), (path, await r.text())
    token = (await r.json())["token"]
    new = {"Authorization": f"Bearer {token}"}
    assert (await hut.client.get("/api/v1/inbox", headers=new)).status == 200
    assert hut.hub.directory.current.systems["sys-new"].organs == ("000.00.11.H53",)
    bad = await hut.client.post(
        "/api/v1/admin/organs",
        json={"organ_id": "not an organ", "name": "x"},
        headers=hut.auth("admin"),
    )
    assert bad.status == 400 and (await bad.json())["error"]["code"] == "bad_organ_id"
    # A system named in the body that is not there is bad input; one in the path, a
    # resource that is not there. Both found in the store, not this process's cache.
    orphan = await hut.client.post(
        "/api/v1/admin/organs",
        json={"organ_id": "000.00.12.H53", "name": "x", "system_id": "sys-nobody"},
        headers=hut.auth("admin"),
    )
    err = (await orphan.json())["error"]
    assert (orphan.status, err["code"], err["details"]) == (
        400,
        "unknown_system",
        {"system_id": "sys-nobody"},
    )
    assert "000.00.12.H53" not in (await hut.hub.store.directory()).organs
    for path in ("tokens", "vxp-secret"):
        r = await hut.client.post(
            f"/api/v1/admin/systems/sys-nobody/{path}", json={}, headers=hut.auth("admin")
        )
        assert r.status == 404 and (await r.json())["error"]["code"] == "system_not_found", path
    token_id = token.split(".")[0]
    denied = await hut.client.post(
        f"/api/v1/admin/tokens/{token_id}/revoke", headers=hut.auth("auditor")
    )
    assert denied.status == 403
    r = await hut.client.post(f"/api/v1/admin/tokens/{token_id}/revoke", headers=hut.auth("admin"))
    assert (await r.json())["changed"] is True
    assert (await hut.client.get("/api/v1/inbox", headers=new)).status == 401
    changes = [
        (e.type, e.actor)
        for e in await hut.hub.store.ledger(0, 100_000)
        if e.type.startswith("directory_") and e.actor == "system:admin"
    ]
    assert [t for t, _ in changes] == [
        "directory_system_saved",
        "directory_organ_saved",
        "directory_token_issued",
        "directory_token_revoked",
    ]


@pytest.mark.parametrize("backend", ["embedded", "scaled"])
async def test_a_clean_stop_seals_every_event_it_committed(
    backend: str, tmp_path: Path, pki_dir: tuple[Path, dict[str, str]]
) -> None:
    """With the sealer's interval far away, nothing is sealed while the hub runs; its
    clean stop seals every committed event under a signed checkpoint that verifies."""
    from cryptography import x509  # noqa: PLC0415

    from hub.ledger.verify import verify_ledger  # noqa: PLC0415

    if backend == "scaled":
        harness.require_services()
    root, bindings = pki_dir
    cfg = harness.config(tmp_path, root, backend, ledger__seal_s=3600.0)
    tokens = await harness.seed_directory(cfg, bindings)
    anchors = x509.load_pem_x509_certificates((root / "ca" / "ca.pem").read_bytes())
    h = await harness.start(cfg, tokens, root)
    try:
        await _send(h)
        assert await h.hub.store.latest_checkpoint() is None  # nothing sealed yet
        events = len(await h.hub.store.ledger(0, 100_000))
    finally:
        await harness.stop(h)
    try:
        async with opened_store(cfg) as store:
            report = await verify_ledger(store, anchors)
            cp = await store.latest_checkpoint()
        assert report.ok, report.findings
        assert report.unsealed == 0
        assert cp is not None and cp.size == events + 1  # the genesis leaf, then each event
    finally:
        await harness.drop_backends(cfg)
