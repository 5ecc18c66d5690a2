"""``lienthong trust show | crls``: what the trust store holds; fetching its CRLs now."""

from __future__ import annotations

import datetime as dt
import http.server
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from hub import pki
from hub.cli.main import main
from hub.service.crl_addresses import save_learned
from hub.signature.trust import CrlUrls
from tests.cli.conftest import serve_in_thread
from tests.service import harness
from tests.service.procs import write_config


class _Publication(http.server.BaseHTTPRequestHandler):
    body = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def publication() -> Iterator[tuple[str, type[_Publication]]]:
    handler = type("Handler", (_Publication,), {})
    with serve_in_thread(handler) as url:
        yield f"{url}/ca.crl", handler


def _ca(root: Path) -> pki.Issued:
    cert = x509.load_pem_x509_certificate((root / "ca" / "ca.pem").read_bytes())
    key = serialization.load_pem_private_key((root / "ca" / "ca.key").read_bytes(), None)
    return pki.Issued(cert, key)  # type: ignore[arg-type]


def test_trust_crls_fetches_into_the_crl_dir_and_show_lists_it(
    tmp_path, pki_dir, publication, capsys
):
    root, _ = pki_dir
    url, handler = publication
    agency = x509.load_pem_x509_certificate((root / "agencies" / f"{harness.A}.pem").read_bytes())
    handler.body = pki.make_crl(_ca(root), [agency], number=42).public_bytes(
        serialization.Encoding.DER
    )
    cfg = harness.config(tmp_path, root, "embedded", trust__crl_urls=url)
    conf = str(write_config(cfg, tmp_path / "hub.toml"))

    assert main(["trust", "--config", conf, "crls"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"fetched   {url}") and "1 revoked" in out
    assert len(list((tmp_path / "crls").glob("*.crl"))) == 1

    assert main(["trust", "--config", conf, "crls"]) == 0  # the same CRL: nothing to write
    assert capsys.readouterr().out.startswith(f"unchanged {url}")

    assert main(["trust", "--config", conf, "show", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["crl_addresses"] == [url]
    assert sorted(c["number"] for c in shown["crls"] if c["number"]) == [42]
    assert main(["trust", "--config", conf, "show"]) == 0
    text = capsys.readouterr().out
    assert "number 42" in text and f"URL  {url}" in text


def test_trust_crls_exits_1_when_a_crl_is_refused(tmp_path, pki_dir, publication, capsys):
    root, _ = pki_dir
    url, handler = publication
    stale = pki.make_crl(
        _ca(root),
        last_update=dt.datetime.now(dt.UTC) - dt.timedelta(days=10),
        next_update=dt.datetime.now(dt.UTC) - dt.timedelta(days=3),
    )
    handler.body = stale.public_bytes(serialization.Encoding.PEM)
    cfg = harness.config(tmp_path, root, "embedded", trust__crl_urls=url)
    conf = str(write_config(cfg, tmp_path / "hub.toml"))
    assert main(["trust", "--config", conf, "crls"]) == 1
    assert capsys.readouterr().out.startswith(f"refused   {url}  crl_expired:")
    assert not list((tmp_path / "crls").glob("*.crl"))


def test_a_crl_address_must_be_http(tmp_path, pki_dir, capsys):
    root, _ = pki_dir
    cfg = harness.config(tmp_path, root, "embedded", trust__crl_urls="file:///etc/passwd")
    conf = str(write_config(cfg, tmp_path / "hub.toml"))
    assert main(["trust", "--config", conf, "crls"]) == 5
    assert "not an http(s) address" in capsys.readouterr().err


def test_trust_show_and_crls_take_the_addresses_a_hub_learned_and_kept(
    tmp_path, pki_dir, publication, capsys
):
    root, _ = pki_dir
    url, handler = publication
    ca = _ca(root)
    handler.body = pki.make_crl(ca, number=7).public_bytes(serialization.Encoding.DER)
    learned = CrlUrls()
    learned.add(url, (ca.cert,))  # as a hub learns it from a signer certificate naming it
    save_learned(tmp_path / "crls", learned, [ca.cert])
    cfg = harness.config(tmp_path, root, "embedded")  # no configured address
    conf = str(write_config(cfg, tmp_path / "hub.toml"))

    assert main(["trust", "--config", conf, "show", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["crl_addresses"] == [url]
    assert main(["trust", "--config", conf, "crls"]) == 0
    assert capsys.readouterr().out.startswith(f"fetched   {url}")
