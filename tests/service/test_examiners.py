"""Examiner processes: small packages examined in child processes give what the event
loop's own examination gives (results and refusals alike), a child that dies fails only
what it held and is replaced, and a stopped hub leaves no child behind."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import pickle
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hub.config import load
from hub.edxml import demo
from hub.edxml.model import Attachment
from hub.edxml.parser import parse_package
from hub.edxml.xmlsafe import XmlLimits
from hub.errors import ConfigError, HubError, MalformedXml, Unavailable, ValidationFailed
from hub.service import examiners as ex_mod
from hub.service.examination import ExamineRequest, ExamineSettings, examine
from hub.service.examiners import ProcessExaminers, auto_count
from hub.service.metrics import Metrics
from tests.conftest import fixture_files
from tests.service import harness
from tests.service.harness import A, B, eventually, signed

SETTINGS = ExamineSettings(XmlLimits(max_bytes=1 << 20))


@pytest.fixture
async def pool() -> AsyncIterator[ProcessExaminers]:
    p = ProcessExaminers(1, SETTINGS, Metrics())
    await p.start()
    try:
        yield p
    finally:
        await p.stop()


def _request(data: bytes, *, check: bool = True) -> ExamineRequest:
    return ExamineRequest(data, None, None, check)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie has not been reaped yet; it no longer runs.
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


async def test_a_child_examines_as_the_event_loop_does(
    pool: ProcessExaminers, pki_dir: tuple[Path, dict[str, str]]
) -> None:
    root, _ = pki_dir
    data = signed(root, A, demo.document_bytes(sender=A, to=(B,), payload=b"attached"))
    tampered = data.replace(b"<edXML:Subject>", b"<edXML:Subject>X", 1)
    assert tampered != data
    here = examine(_request(data), SETTINGS)
    [there, unchecked, broken] = await asyncio.gather(
        *pool.examine_many([_request(data), _request(data, check=False), _request(tampered)])
    )
    assert there.kind == here.kind == "edoc"
    assert there.package.document_id == here.package.document_id
    assert [o.organ_id for o in there.package.to] == [B]
    assert there.package.subject == here.package.subject and there.package.subject
    assert there.evidence == here.evidence
    assert there.evidence.signed is not None and there.evidence.signed.certificates
    assert unchecked.evidence.signed is None and unchecked.evidence.form == "xmldsig"
    # A signature that does not match is evidence for the policy, not an exception.
    assert broken.evidence.refusal is not None
    assert broken.evidence.refusal[0] == "signature_invalid"


async def test_refusals_come_back_with_their_class_code_and_details(
    pool: ProcessExaminers,
) -> None:
    dtd = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>'
    no_to = demo.document_bytes(sender=A, to=())
    futs = pool.examine_many([_request(dtd), _request(no_to), _request(b"junk<x/>")])
    got = await asyncio.gather(*futs, return_exceptions=True)
    assert isinstance(got[0], MalformedXml) and got[0].error_code == "dtd_forbidden"
    assert isinstance(got[1], ValidationFailed)
    assert got[1].problems and got[1].details["problems"] == [dict(p) for p in got[1].problems]
    assert got[1].http_status == 422
    assert isinstance(got[2], HubError) and got[2].error_code == "content_before_declaration"


async def test_a_child_that_dies_fails_what_it_held_and_is_replaced(
    pool: ProcessExaminers, pki_dir: tuple[Path, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, _ = pki_dir
    data = signed(root, A, demo.document_bytes(sender=A, to=(B,)))
    await asyncio.gather(*pool.examine_many([_request(data)]))  # the child is up
    [pid] = pool.pids()
    os.kill(pid, signal.SIGSTOP)  # it holds the next batch, unanswered
    held = pool.examine_many([_request(data), _request(data)])
    await asyncio.sleep(0.1)
    assert not any(f.done() for f in held)
    os.kill(pid, signal.SIGKILL)
    outcomes = await asyncio.gather(*held, return_exceptions=True)
    assert outcomes[0] is not outcomes[1], "each request records its own refusal"
    for o in outcomes:
        assert isinstance(o, Unavailable) and o.error_code == "examiner_failed"
        assert o.http_status == 503
    assert pool._metrics is not None
    assert pool._metrics.examiner_exits._value.get() == 1
    assert not _alive(pid)
    monkeypatch.setattr(ex_mod, "RESPAWN_S", 0.0)
    after = await asyncio.gather(*pool.examine_many([_request(data)]))
    assert after[0].kind == "edoc"
    assert pool.pids() and pool.pids() != [pid]


async def test_each_child_caps_its_memory_and_a_package_past_it_fails_alone(
    pki_dir: tuple[Path, dict[str, str]],
) -> None:
    # Two million elements (allowed here): ~20 MB of bytes, several hundred MB of tree,
    # past a 150 MB cap. libxml2's allocation fails, the package is refused as what it
    # is, and the child goes on examining.
    pool = ProcessExaminers(
        1, ExamineSettings(XmlLimits(max_elements=10_000_000)), Metrics(), memory_mb=150
    )
    await pool.start()
    try:
        root, _ = pki_dir
        data = signed(root, A, demo.document_bytes(sender=A, to=(B,)))
        await asyncio.gather(*pool.examine_many([_request(data)]))  # the child is up
        [pid] = pool.pids()
        limits = (await asyncio.to_thread(Path(f"/proc/{pid}/limits").read_text)).splitlines()
        [line] = [x for x in limits if x.startswith("Max address space")]
        assert line.split()[3:5] == [str(150 << 20)] * 2, line
        huge = b"<a>" + b"<b x='1'/>" * 2_000_000 + b"</a>"
        [refused] = await asyncio.gather(
            *pool.examine_many([_request(huge, check=False)]), return_exceptions=True
        )
        # Uncapped, the same bytes parse, and are refused for their root (``not_edxml``).
        assert isinstance(refused, MalformedXml) and refused.error_code == "not_well_formed"
        after = await asyncio.gather(*pool.examine_many([_request(data)]))
        assert after[0].kind == "edoc" and pool.pids() == [pid]
    finally:
        await pool.stop()


def test_an_examination_out_of_memory_is_a_503_and_the_child_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def exhausted(r: ExamineRequest, settings: ExamineSettings) -> None:
        raise MemoryError

    monkeypatch.setattr(ex_mod, "examine", exhausted)
    ok, error = ex_mod._examine_one(_request(b"<a/>"), SETTINGS)
    assert not ok and isinstance(error, Unavailable)
    assert (error.error_code, error.http_status) == ("examiner_failed", 503)
    assert "more memory" in str(error)


def test_the_examiner_memory_cap_is_configured() -> None:
    assert load(env={}).intake.examiner_memory_mb == 1024
    assert load(env={"LIENTHONG_INTAKE_EXAMINER_MEMORY_MB": "0"}).intake.examiner_memory_mb == 0
    with pytest.raises(ConfigError, match="examiner_memory_mb"):
        load(env={"LIENTHONG_INTAKE_EXAMINER_MEMORY_MB": "100"})


async def test_stopping_ends_the_children_and_fails_nothing_silently(
    pki_dir: tuple[Path, dict[str, str]],
) -> None:
    root, _ = pki_dir
    p = ProcessExaminers(2, SETTINGS, None)
    await p.start()
    data = signed(root, A, demo.document_bytes(sender=A, to=(B,)))
    # Two batches at once go to the two children (the one owing fewest takes each).
    first = p.examine_many([_request(data)] * 3)
    second = p.examine_many([_request(data)])
    await asyncio.gather(*first, *second)
    pids = p.pids()
    assert len(pids) == 2
    await p.stop()
    for pid in pids:
        assert not _alive(pid)


@pytest.mark.parametrize("path", fixture_files(), ids=lambda p: p.name)
def test_every_sample_model_crosses_a_process_boundary(path: Path) -> None:
    parsed = parse_package(path.read_bytes())
    ex = examine(_request(path.read_bytes()), SETTINGS)
    back = pickle.loads(pickle.dumps(ex, protocol=pickle.HIGHEST_PROTOCOL))
    assert type(back.package) is type(parsed.package)
    assert (back.kind, back.evidence) == (ex.kind, ex.evidence)
    # Everything but the attachments' payloads, which stay with the tree they were read from.
    atts = getattr(parsed.package, "attachments", ())
    assert [a._key() for a in getattr(back.package, "attachments", ())] == [a._key() for a in atts]
    if atts:
        assert dataclasses.replace(back.package, attachments=()) == dataclasses.replace(
            parsed.package, attachments=()
        )
    else:
        assert back.package == parsed.package


def test_an_attachment_crosses_without_its_payload() -> None:
    att = Attachment.of("a1", b"payload", attachment_name="a.pdf", content_type="x/y")
    back = pickle.loads(pickle.dumps(att))
    assert (back.content_id, back.attachment_name, back.content_type) == ("a1", "a.pdf", "x/y")
    with pytest.raises(RuntimeError, match="examined in another process"):
        back.data()


def test_every_error_pickles_with_its_code_and_details() -> None:
    v = ValidationFailed([{"code": "missing", "path": "/a", "message": "m"}], code="x_code")
    back = pickle.loads(pickle.dumps(v))
    assert type(back) is ValidationFailed
    assert (back.error_code, back.message, back.problems) == ("x_code", v.message, v.problems)
    assert str(back) == str(v)
    u = pickle.loads(pickle.dumps(Unavailable("down", code="examiner_failed")))
    assert (type(u), u.error_code, u.retry_after_s) == (Unavailable, "examiner_failed", 1)


def test_the_examiner_count_is_configured_or_follows_the_cores(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert auto_count(0) == 0 and auto_count(3) == 3
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    assert auto_count(-1) == 0
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    assert auto_count(-1) == 1
    for bad in ("-2", "65"):
        with pytest.raises(ConfigError, match="examiners"):
            load(env={"LIENTHONG_INTAKE_EXAMINERS": bad})
    assert load(env={"LIENTHONG_INTAKE_EXAMINERS": "0"}).intake.examiners == 0


@pytest.mark.parametrize("examiners", [0, 2])
async def test_a_hub_serves_with_no_examiner_process_and_with_two(
    examiners: int, tmp_path: Path, pki_dir: tuple[Path, dict[str, str]]
) -> None:
    root, bindings = pki_dir
    cfg = harness.config(tmp_path, root, "embedded", intake__examiners=examiners)
    tokens = await harness.seed_directory(cfg, bindings)
    h = await harness.start(cfg, tokens, root)
    try:
        pool = h.hub.intake.examiners
        assert (pool is None) == (examiners == 0)
        if pool is not None:
            await eventually(lambda: _pids(pool), lambda ps: len(ps) == 2)
        data = [
            signed(root, A, demo.document_bytes(sender=A, to=(B,), number=f"ex{i}"))
            for i in range(6)
        ]
        sent = await asyncio.gather(*(h.submit("sys-a", d, "edoc") for d in data))
        assert [r.status for r in sent] == [202] * 6
        assert {(await r.json())["signature"]["outcome"] for r in sent} == {"valid"}
        bad = await h.submit(
            "sys-a", data[0].replace(b"<edXML:Subject>", b"<edXML:Subject>!", 1), "edoc"
        )
        assert bad.status == 422
        assert (await bad.json())["error"]["code"] == "signature_invalid"
        items = await eventually(lambda: h.inbox("sys-b"), lambda xs: len(xs) == 6)
        got = await h.client.get(f"/api/v1/packages/{items[0]['id']}", headers=h.auth("sys-b"))
        assert await got.read() in data
        refused = [r for r in await h.refusals() if r.get("code") == "signature_invalid"]
        assert len(refused) == 1
    finally:
        await harness.stop(h)
    if examiners:
        assert pool is not None and not pool.pids()


async def _pids(pool: ProcessExaminers) -> list[int]:
    return pool.pids()


async def test_a_submission_after_the_child_died_is_served_by_its_replacement(
    tmp_path: Path, pki_dir: tuple[Path, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, bindings = pki_dir
    cfg = harness.config(tmp_path, root, "embedded", intake__examiners=1)
    tokens = await harness.seed_directory(cfg, bindings)
    h = await harness.start(cfg, tokens, root)
    try:
        pool = h.hub.intake.examiners
        assert pool is not None
        [pid] = await eventually(lambda: _pids(pool), lambda ps: len(ps) == 1)
        monkeypatch.setattr(ex_mod, "RESPAWN_S", 0.0)
        os.kill(pid, signal.SIGKILL)
        await eventually(lambda: _pids(pool), lambda ps: ps != [pid])
        data = signed(root, A, demo.document_bytes(sender=A, to=(B,)))
        r = await h.submit("sys-a", data, "edoc")
        assert r.status == 202, await r.text()
        assert await harness.metric(h, "lienthong_examiner_exits_total") == 1
    finally:
        await harness.stop(h)


async def test_a_stuck_child_is_killed_and_what_it_held_answered(
    pki_dir: tuple[Path, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ex_mod, "STUCK_S", 0.4)
    p = ProcessExaminers(1, SETTINGS, Metrics())
    await p.start()
    try:
        root, _ = pki_dir
        data = signed(root, A, demo.document_bytes(sender=A, to=(B,)))
        await asyncio.gather(*p.examine_many([_request(data)]))
        [pid] = p.pids()
        os.kill(pid, signal.SIGSTOP)  # as a child stuck in a native library would be
        held = p.examine_many([_request(data)])
        [outcome] = await asyncio.wait_for(asyncio.gather(*held, return_exceptions=True), 5)
        assert isinstance(outcome, Unavailable) and outcome.error_code == "examiner_failed"
        assert not _alive(pid)
    finally:
        await p.stop()
