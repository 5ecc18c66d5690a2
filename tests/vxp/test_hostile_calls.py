"""Hostile calls to the VXP face, correctly signed: every operation with parameters and
bodies an agency's software should never send. Whatever arrives, the answer is the SDK's
envelope (ASCII, no null, a stable code first in ``ErrorDesc`` on failure), never a
5xx, and every failed call is on the ledger.

Seeded, so a failure is replayed exactly."""

from __future__ import annotations

import hashlib
import json
import random
import re
from typing import Any

from hub.edxml import demo
from hub.vxp import protocol as vxp
from tests.service.harness import A, B, HubUnderTest, signed

SEED = 20261124
CALLS = 300
_KEYS = (
    "docId", "docid", "from", "to", "messagetype", "status", "AgencyCode", "level",
    "hash-file", "Content-Type", "limit", "since", "code", "systemid", "timestamp", "nonce",
)  # fmt: skip
_VALUES = (
    "", " ", "x" * 3000, "0", "-1", "99999999999999999999", "edoc", "status", "done", "fail",
    "processing", "00000000-0000-0000-0000-000000000000", "../x", "đ", "😀", A, B, "null",
    "true", "[]", "{}", "1e400", "NaN", "%00", "a;b", "\t",
)  # fmt: skip


def _no_null(value: Any) -> bool:
    if isinstance(value, dict):
        return all(_no_null(v) for v in value.values())
    if isinstance(value, list):
        return all(_no_null(v) for v in value)
    return value is not None


def _call(rnd: random.Random, hut: HubUnderTest, n: int) -> tuple[str, dict[str, str], bytes]:
    op = rnd.choice(vxp.OPERATIONS)
    params = {rnd.choice(_KEYS): rnd.choice(_VALUES) for _ in range(rnd.randint(0, 5))}
    how = rnd.random()
    if op == "sendEdoc" and how < 0.5:
        body = signed(hut.pki_dir, A, demo.document_bytes(sender=A, to=(B,), number=f"v{n}"))
        if rnd.random() < 0.5:
            params.setdefault("hash-file", hashlib.sha256(body).hexdigest())
        params.setdefault("from", A)
    elif how < 0.7:
        pairs = {rnd.choice(_KEYS): rnd.choice(_VALUES) for _ in range(rnd.randint(0, 4))}
        body = json.dumps(pairs).encode()
    elif how < 0.85:
        body = rnd.randbytes(rnd.randint(0, 300))
    else:
        body = b""
    return op, params, body


async def test_hostile_calls_get_the_envelope_and_are_recorded(hut: HubUnderTest) -> None:
    rnd = random.Random(SEED)
    a = hut.vxp("sys-a")
    failed = 0
    try:
        for n in range(CALLS):
            op, params, body = _call(rnd, hut, n)
            method = "GET" if op == "downloadEdoc" and rnd.random() < 0.7 else "POST"
            kind = rnd.choice(("application/json", "application/octet-stream", "text/plain"))
            status, raw = await a.raw(op, params, body=body, method=method, content_type=kind)
            assert status < 500, (n, op, params, status, raw[:300])
            failed += status >= 400
            if op == "downloadEdoc" and not raw.startswith(b"{"):
                assert (status >= 400) == (raw == b""), (n, status)  # failure: an empty body
                continue
            assert raw.isascii(), (n, op, raw[:300])
            answer = json.loads(raw)
            assert _no_null(answer), (n, op, raw[:300])
            assert all(isinstance(answer[k], str) for k in ("status", "ErrorCode", "ErrorDesc"))
            assert (answer["status"] == "OK") == (status < 400), (n, op, status, answer)
            if status >= 400:
                assert re.match(r"[a-z][a-z0-9_]*: ", answer["ErrorDesc"]), (n, op, answer)
                assert answer["ErrorCode"] != "0" and "DocId" in answer, (n, op, answer)
    finally:
        await a.close()
    refused = [e for e in await hut.hub.store.ledger(0, 100_000) if e.type == "refused"]
    assert len(refused) == failed > CALLS // 4
    assert (await hut.client.get("/readyz")).status == 200
