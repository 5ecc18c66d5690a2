"""The VXP signing recipe against the worked examples of VXP-API.md §2.3."""

from __future__ import annotations

import datetime as dt
import hashlib

from hub.edxml.dates import VN_TZ
from hub.vxp import protocol as vxp

SECRET = "hub-test-secret-0123456789"


def test_worked_example_1() -> None:
    signed = vxp.signed_json(
        [
            ("systemid", "00.53.W00"),
            ("timestamp", "24102025T093015+0123"),
            ("Content-Type", "application/json"),
        ]
    )
    assert signed == (
        '{"XroadVnpt-systemid":"00.53.W00","XroadVnpt-timestamp":"24102025T093015+0123",'
        '"XroadVnpt-Content-Type":"application/json"}'
    )
    assert vxp.mac(SECRET, signed.encode()) == (
        "ff8eefe4411755d2c8d5aa497f8d50738db39e1a4a9ed444522b396d00290666"
    )


def test_worked_example_2_captured_get_agencies_list() -> None:
    raw = (
        b'{"XroadVnpt-systemid":"00.53.W00","XroadVnpt-timestamp":"22112026T133404+0023",'
        b'"XroadVnpt-Content-Type":"application/json"}'
    )
    digest = "58fd5b5dae551da2fd8c2efd07f5f686713171af42d6907e9fa9195c1f1bf1cf"
    assert vxp.mac_ok(SECRET, raw, digest.upper() + " ")  # case and whitespace tolerated
    assert not vxp.mac_ok(SECRET + "x", raw, digest)


def test_worked_example_3_captured_send_edoc() -> None:
    signed = vxp.signed_json(
        [
            ("systemid", "00.53.W00"),
            ("servicetype", "eDoc"),
            ("messagetype", "edoc"),
            ("hash-file", "7e4a746b898d9b54749de74b58e7bd24c8b86287a386653f6593adf9db5eb"),
            ("from", "00.53.W00"),
            ("timestamp", "22112026T133403+0972"),
            ("Content-Type", "application/octet-stream"),
        ]
    )
    assert vxp.mac(SECRET, signed.encode()) == (
        "faf5c0e5be1f1bab7c85b67be17d17783168055bdd7f3a1badea876fe236c2f4"
    )


def test_hash_file_drops_leading_zeros_per_byte() -> None:
    data = b"x" * 100
    digest = hashlib.sha256(data).digest()
    expected = "".join(f"{b:x}" for b in digest)
    assert vxp.hash_file(data) == expected
    assert len(vxp.hash_file(data)) <= 64
    # at least one byte below 0x10 in some digest: the unpadded form is shorter
    assert any(len(vxp.hash_file(bytes([i]))) < 64 for i in range(64))


def test_timestamp_is_milliseconds_not_an_offset() -> None:
    at = dt.datetime(2026, 11, 22, 13, 34, 4, 23_000, tzinfo=VN_TZ)
    assert vxp.timestamp(at) == "22112026T133404+0023"
    assert vxp.parse_timestamp("22112026T133404+0023", VN_TZ) == at


def test_answers_are_ascii_and_never_null() -> None:
    body = vxp.dumps(vxp.ok(data=[{"name": "Văn phòng", "pid": None}], DocId=None))
    assert body.isascii()
    assert b"null" not in body and b"pid" not in body and b"DocId" not in body
    assert b"V\\u0103n ph\\u00f2ng" in body


def test_pick_prefers_exact_case() -> None:
    assert vxp.pick({"docid": "b", "docId": "a"}, "docId") == "a"
    assert vxp.pick({"DOCID": "b"}, "docId") == "b"
    assert vxp.pick({}, "docId") is None
