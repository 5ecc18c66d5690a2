"""The intake asks a signer's CA (OCSP) before it judges the signature, on both backends:
a good answer is recorded as the revocation check, a revocation the CA's responder knows
refuses the package (recorded in the ledger) though the CRL does not list it yet, and one
answer serves the signer's following packages."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import ocsp

from hub import pki
from hub.edxml import demo
from tests.service import harness
from tests.service.harness import A2, A, B, HubUnderTest
from tests.signature.ocsp_server import OcspServer


def _ca(root: Path) -> pki.Issued:
    cert = x509.load_pem_x509_certificate((root / "ca" / "ca.pem").read_bytes())
    key = serialization.load_pem_private_key((root / "ca" / "ca.key").read_bytes(), None)
    return pki.Issued(cert, key)  # type: ignore[arg-type]


@pytest.fixture(params=["embedded", "scaled"])
async def hut(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[HubUnderTest]:
    if request.param == "scaled":
        harness.require_services()
    root = tmp_path / "pki"
    bindings = harness.make_pki(root)  # its CRL lists nothing
    ca = _ca(root)
    async with OcspServer(ca) as server:
        for organ in (A, A2):  # signing certificates that name the CA's responder
            issued = pki.issue(ca, organ, org=organ, ocsp_urls=[server.url])
            (root / "agencies" / f"{organ}.pem").write_bytes(issued.cert_pem)
            (root / "agencies" / f"{organ}.key").write_bytes(issued.key_pem)
            bindings[organ] = issued.fingerprint
            server.know(issued.cert)
            if organ == A2:
                server.statuses[issued.cert.serial_number] = ocsp.OCSPCertStatus.REVOKED
        cfg = harness.config(tmp_path, root, request.param, intake__default_policy="required")
        tokens = await harness.seed_directory(cfg, bindings)
        h = await harness.start(cfg, tokens, root)
        h.extra["ocsp"] = server
        try:
            yield h
        finally:
            await harness.stop(h)
            await harness.drop_backends(cfg)


def _signed(h: HubUnderTest, organ: str, number: str) -> bytes:
    return harness.signed(
        h.pki_dir, organ, demo.document_bytes(sender=organ, to=(B,), number=number)
    )


async def test_a_good_answer_is_the_revocation_check_and_serves_the_next_packages(
    hut: HubUnderTest,
) -> None:
    server: OcspServer = hut.extra["ocsp"]
    for i in range(3):
        r = await hut.submit("sys-a", _signed(hut, A, f"OK{i}"))
        assert r.status == 202, await r.text()
        signature = (await r.json())["signature"]
        assert signature["outcome"] == "valid" and signature["revocation"] == "ocsp"
    assert len(server.requests) == 1  # one answer, kept for the signer's next packages
    inbox = await harness.eventually(lambda: hut.inbox("sys-b"), lambda items: len(items) == 3)
    assert len(inbox) == 3


async def test_a_revocation_only_the_responder_knows_refuses_the_package(
    hut: HubUnderTest,
) -> None:
    r = await hut.submit("sys-a", _signed(hut, A2, "REV1"))
    assert r.status == 422, await r.text()
    body = await r.json()
    assert body["error"]["code"] == "cert_revoked"
    assert "OCSP responder" in body["error"]["message"]
    refusals = await hut.refusals()
    assert [x["code"] for x in refusals] == ["cert_revoked"]
    assert await hut.inbox("sys-b") == []
