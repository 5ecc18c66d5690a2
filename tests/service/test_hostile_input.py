"""Mutated packages through the real submit endpoint: whatever the bytes, the hub answers
with a stable code (never a 5xx), records every refusal, and stays ready.

Seeded, so a failure is replayed exactly: each case mutates a valid document or status
package's tree (elements removed, repeated, renamed, moved, put in another namespace,
their text replaced with hostile values) and signs the result as its sender's software
would, so the mutation reaches validation, authorisation and routing rather than stopping
at the signature; some are mutated after signing (flipped, cut or spliced bytes, a
DOCTYPE, a CDATA section) or sent unsigned.
"""

from __future__ import annotations

import copy
import json
import random
import re
from collections import Counter

import pytest
from lxml import etree

from hub.edxml import demo
from hub.edxml.builder import build
from hub.errors import HubError
from tests.service.harness import A2, A, B, C, HubUnderTest, X, signed

SEED = 20261124
CASES = 400
_VALUES = (
    "", " ", "x" * 3000, "0", "-1", "99", "3", "16", "2026-13-45", "2026-11-23",
    "2026-11-23T10:00:00+07:00", "<&>", "đơn vị", A, B, X, C, "G22.OLD", f" {B} ", "cid:",
    "../../etc/passwd", "\u200b", "😀" * 20, "000.00.00.ZZZ", "1" * 300, "1/2/3", "NaN",
)  # fmt: skip
_NAMES = (
    "From", "To", "OrganId", "Code", "CodeNumber", "StatusCode", "ResponseFor", "DocumentId",
    "TraceHeaderList", "TraceHeader", "Bussiness", "BussinessDocType", "ReplacementInfoList",
    "Attachment", "ContentId", "ContentTransferEncoded", "Reference", "Timestamp",
    "PromulgationDate", "DueDate", "StaffInfo", "Subject", "ReceiverList", "Receiver",
)  # fmt: skip
_INSERTS = (b"<!DOCTYPE x>", b"&amp;", b"<?pi x?>", b"\xef\xbb\xbf", b"]]>", b"<![CDATA[x]]>")


def _mutate_tree(rnd: random.Random, data: bytes) -> bytes:
    root = etree.fromstring(data)
    for _ in range(rnd.randint(1, 3)):
        els = [e for e in root.iter(etree.Element) if e is not root]
        el = rnd.choice(els)
        parent = el.getparent()
        assert parent is not None
        ns = etree.QName(el).namespace
        name = f"{{{ns}}}{rnd.choice(_NAMES)}" if ns else rnd.choice(_NAMES)
        op = rnd.randrange(8)
        if op == 0:
            parent.remove(el)
        elif op == 1:
            parent.insert(parent.index(el), copy.deepcopy(el))
        elif op == 2:
            el.text = rnd.choice(_VALUES)
        elif op == 3:
            el.tag = name
        elif op == 4:
            target = rnd.choice(els)
            if target is not el and el not in target.iterancestors() and target not in el.iter():
                parent.remove(el)
                target.append(el)
        elif op == 5:
            etree.SubElement(el, name).text = rnd.choice(_VALUES)
        elif op == 6:
            el.set(rnd.choice(("Id", "id", "foo")), rnd.choice(_VALUES))
        else:
            el.tag = f"{{urn:other}}{etree.QName(el).localname}"
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def _mutate_bytes(rnd: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    i = rnd.randrange(len(b))
    op = rnd.randrange(4)
    if op == 0:
        for _ in range(rnd.randint(1, 5)):
            b[rnd.randrange(len(b))] = rnd.randrange(256)
    elif op == 1:
        del b[i:]
    elif op == 2:
        b[i:i] = b[i : i + rnd.randint(1, 200)]
    else:
        b[i:i] = rnd.choice(_INSERTS)
    return bytes(b)


def _base(rnd: random.Random, n: int) -> bytes:
    if rnd.random() < 0.75:
        to = tuple(rnd.sample([B, X, C, A2], rnd.randint(1, 4)))
        return demo.document_bytes(sender=A, to=to, number=f"hostile{n}")
    code = rnd.choice(("01", "02", "03", "05", "06", "13", "15", "16"))
    return build(demo.status(code=code, sender=A, addressee=rnd.choice((B, C, X)), number="1"))


def _case(rnd: random.Random, hut: HubUnderTest, n: int) -> bytes | None:
    base = _base(rnd, n)
    how = rnd.random()
    try:
        if how < 0.6:
            return signed(hut.pki_dir, A, _mutate_tree(rnd, base))
        if how < 0.85:
            return _mutate_bytes(rnd, signed(hut.pki_dir, A, base))
        return _mutate_tree(rnd, base)
    except (etree.LxmlError, ValueError, HubError):  # what the signing software refuses
        return None


async def test_mutated_packages_get_stable_codes_and_are_recorded(hut: HubUnderTest) -> None:
    rnd = random.Random(SEED)
    outcomes: Counter[tuple[int, str]] = Counter()
    for n in range(CASES):
        data = _case(rnd, hut, n)
        if data is None:
            continue
        r = await hut.submit("sys-a", data, kind=rnd.choice((None, None, "edoc", "status")))
        body = await r.json()
        assert r.status < 500, (n, r.status, body)
        if r.status >= 400:
            code = body["error"]["code"]
            assert re.fullmatch(r"[a-z][a-z0-9_]*", code), (n, body)
            outcomes[(r.status, code)] += 1
        else:
            assert r.status in (200, 202), (n, r.status, body)
            outcomes[(r.status, "accepted")] += 1
    # The mix reached every stage: parsing, validation, the signature and acceptance.
    codes = {code for _status, code in outcomes}
    assert {"not_well_formed", "validation_failed", "accepted"} <= codes, outcomes
    assert codes & {"signature_invalid", "certificate_invalid"}, outcomes
    recorded = Counter(e["code"] for e in await hut.refusals() if e["actor"] == "system:sys-a")
    refusals = {code: k for (_status, code), k in outcomes.items() if code != "accepted"}
    assert recorded == Counter(refusals)
    assert (await hut.client.get("/readyz")).status == 200


_HUGE = "99999999999999999999"  # beyond a signed 64-bit integer


@pytest.mark.parametrize(
    ("who", "path", "params"),
    [
        ("sys-b", "/api/v1/inbox", {"after": _HUGE}),
        ("sys-b", "/api/v1/inbox", {"limit": _HUGE}),
        ("auditor", "/api/v1/ledger/proof/inclusion", {"seq": _HUGE}),
        ("auditor", "/api/v1/ledger/proof/consistency", {"old": "1", "new": _HUGE}),
        ("auditor", "/api/v1/audit/packages", {"after": f"{_HUGE}:x"}),
        ("auditor", "/api/v1/audit/packages", {"business_type": _HUGE}),
    ],
)
async def test_numbers_beyond_what_a_store_holds_are_refused(
    hut: HubUnderTest, who: str, path: str, params: dict[str, str]
) -> None:
    """Found by fuzzing the API: on PostgreSQL such a number reached the query and failed
    there (a 500); it is a bad parameter, on both stores."""
    r = await hut.client.get(path, params=params, headers=hut.auth(who))
    assert r.status == 400, await r.text()
    assert (await r.json())["error"]["code"] == "bad_parameter"


_API = (
    ("GET", "/api/v1/inbox"), ("GET", "/api/v1/packages/{id}"),
    ("GET", "/api/v1/packages/{id}/metadata"), ("GET", "/api/v1/packages/{id}/deliveries"),
    ("POST", "/api/v1/packages/{id}/ack"), ("GET", "/api/v1/organs"),
    ("POST", "/api/v1/admin/deliveries/{id}/resend"), ("POST", "/api/v1/admin/systems"),
    ("POST", "/api/v1/admin/organs"), ("POST", "/api/v1/admin/systems/{id}/tokens"),
    ("POST", "/api/v1/admin/tokens/{id}/revoke"),
    ("POST", "/api/v1/admin/systems/{id}/client-certs"),
    ("POST", "/api/v1/admin/client-certs/{id}/remove"), ("GET", "/api/v1/ledger/checkpoint"),
    ("GET", "/api/v1/ledger/proof/inclusion"), ("GET", "/api/v1/ledger/proof/consistency"),
    ("GET", "/api/v1/packages/{id}/events"), ("GET", "/api/v1/packages/{id}/evidence"),
    ("GET", "/api/v1/audit/packages"), ("GET", "/api/v1/audit/packages.csv"),
    ("POST", "/api/v1/admin/packages/{id}/hold"), ("DELETE", "/api/v1/admin/packages/{id}/hold"),
)  # fmt: skip
_PARAMS = (
    "organ", "kind", "since", "limit", "after", "from", "to", "sender", "seq", "old", "new",
    "state", "business_type", "overdue", "result", "reason", "id", "name", "role", "organ_id",
    "system_id", "location", "closed", "parent", "aliases", "push_url", "networks", "pem",
)  # fmt: skip
_JSON = (*_VALUES, None, 0, -1, 10**30, 1.5, True, [], {}, ["x"], {"a": 1})


def _role(rnd: random.Random, path: str) -> str:
    if rnd.random() < 0.15:  # sometimes the wrong role
        return rnd.choice(("sys-a", "admin", "auditor"))
    if "/admin/" in path:
        return "admin"
    if any(p in path for p in ("/ledger", "/audit", "/events", "/evidence")):
        return "auditor"
    return rnd.choice(("sys-a", "sys-b"))


async def test_hostile_api_calls_get_stable_codes(hut: HubUnderTest) -> None:
    """Every native, admin, ledger and audit route with hostile parameters and bodies:
    never a 5xx, and a refusal answered in JSON carries a snake_case code."""
    rnd = random.Random(SEED)
    sent = await hut.submit("sys-a", signed(hut.pki_dir, A, demo.document_bytes(sender=A, to=(B,))))
    ids = ((await sent.json())["id"], "00000000-0000-0000-0000-000000000000", "x", "sys-a", "đ")
    statuses: Counter[int] = Counter()
    for n in range(CASES):
        method, path = rnd.choice(_API)
        path = path.replace("{id}", rnd.choice(ids))
        params = {rnd.choice(_PARAMS): rnd.choice(_VALUES) for _ in range(rnd.randint(0, 4))}
        headers = hut.auth(_role(rnd, path))
        body: bytes | None = None
        if method != "GET":
            fields = {rnd.choice(_PARAMS): rnd.choice(_JSON) for _ in range(rnd.randint(0, 6))}
            body = json.dumps(fields).encode() if rnd.random() < 0.8 else rnd.randbytes(100)
            headers = {**headers, "Content-Type": "application/json"}
        r = await hut.client.request(method, path, params=params, headers=headers, data=body)
        raw = await r.read()
        assert r.status < 500, (n, method, path, params, body, raw[:300])
        statuses[r.status] += 1
        if r.status >= 400 and r.content_type == "application/json":
            code = json.loads(raw)["error"]["code"]
            assert re.fullmatch(r"[a-z][a-z0-9_]*", code), (n, path, raw[:300])
    assert statuses[200] and statuses[400] and statuses[403] and statuses[404], statuses
    assert (await hut.client.get("/readyz")).status == 200
