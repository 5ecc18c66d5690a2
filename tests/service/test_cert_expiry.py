"""The certificates the hub relies on, each role's earliest expiry in ``/metrics``."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from cryptography import x509
from prometheus_client.parser import text_string_to_metric_families

from hub import pki
from hub.service.cert_expiry import earliest_expiry
from tests.service import harness

NAME = "lienthong_certificate_expiry_timestamp_seconds"


async def test_each_role_exports_its_earliest_expiry(
    tmp_path: Path, pki_dir: tuple[Path, dict[str, str]]
) -> None:
    root, bindings = pki_dir
    cfg = harness.config(tmp_path, root, "embedded")
    ca = pki.make_ca("expiry test CA", days=400)
    soon = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(days=20)
    server = pki.issue(ca, "hub.example", not_after=soon)
    push = pki.issue(ca, "hub push client", days=90)
    cfg.server.tls_cert, cfg.server.tls_key = harness.pem_files(tmp_path, "server", server)
    cfg.delivery.push_client_cert, cfg.delivery.push_client_key = harness.pem_files(
        tmp_path, "push", push
    )
    # A chain file: the CA expires after the leaf, so the leaf decides.
    (tmp_path / "server.pem").write_bytes(server.cert_pem + ca.cert_pem)
    tokens = await harness.seed_directory(cfg, bindings)
    h = await harness.start(cfg, tokens, root)
    try:
        r = await h.client.get("/metrics", headers=h.auth("auditor"))
        assert r.status == 200
        values = {
            s.labels["role"]: s.value
            for f in text_string_to_metric_families(await r.text())
            for s in f.samples
            if s.name == NAME
        }
        anchors = x509.load_pem_x509_certificates((root / "ca" / "ca.pem").read_bytes())
        assert values["trust_anchor"] == earliest_expiry(anchors)
        assert values["ledger"] == earliest_expiry(h.hub.signer.chain)
        assert values["server_tls"] == soon.timestamp()  # the leaf, not the CA after it
        assert values["push_client"] == push.cert.not_valid_after_utc.timestamp()
        assert "tls_client_ca" not in values  # not configured: no series
    finally:
        await harness.stop(h)


def test_no_certificates_no_expiry() -> None:
    assert earliest_expiry([]) is None
