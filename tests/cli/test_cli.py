"""The lienthong CLI: pki init, edxml build/sign/verify/inspect, with stable exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hub.cli.main import main
from tests.conftest import FIXTURES, fixture_bytes


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    assert main(["pki", "init", "--dir", str(d)]) == 0
    return d


def test_pki_init_writes_a_trust_store_keys_and_bindings(pki_dir):
    assert (pki_dir / "trust" / "ca.pem").is_file() and (pki_dir / "trust" / "ca.crl").is_file()
    key = pki_dir / "agencies" / "000.00.00.H53.key"
    assert key.stat().st_mode & 0o077 == 0  # private keys are not world- or group-readable
    bindings = json.loads((pki_dir / "bindings.json").read_text())
    assert ["000.00.00.H53"] in bindings["fingerprints"].values()
    assert main(["pki", "init", "--dir", str(pki_dir)]) == 5  # refuses to overwrite


def test_build_sign_verify_inspect(pki_dir, tmp_path, capsys):
    attachment = tmp_path / "cong van.pdf"
    attachment.write_bytes(b"%PDF-1.7 test")
    built, signed = tmp_path / "b.edxml", tmp_path / "s.edxml"
    assert (
        main(
            [
                "edxml",
                "build",
                "--from",
                "000.00.00.H53",
                "--to",
                "000.00.00.G22",
                "--attach",
                str(attachment),
                "-o",
                str(built),
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "edxml",
                "sign",
                str(built),
                "--key",
                str(pki_dir / "agencies/000.00.00.H53.key"),
                "--cert",
                str(pki_dir / "agencies/000.00.00.H53.pem"),
                "-o",
                str(signed),
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert (
        main(
            [
                "edxml",
                "verify",
                str(signed),
                "--trust",
                str(pki_dir / "trust"),
                "--bindings",
                str(pki_dir / "bindings.json"),
                "--json",
            ]
        )
        == 0
    )
    record = json.loads(capsys.readouterr().out)
    assert record["outcome"] == "valid" and record["revocation"] == "checked"
    # Signed by H53's key but claimed by G22: not bound.
    assert (
        main(
            [
                "edxml",
                "verify",
                str(signed),
                "--trust",
                str(pki_dir / "trust"),
                "--bindings",
                str(pki_dir / "bindings.json"),
                "--sender",
                "000.00.00.G22",
            ]
        )
        == 3
    )
    assert "cert_not_bound" in capsys.readouterr().out
    assert main(["edxml", "inspect", str(signed), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["signature_form"] == "xmldsig"
    assert info["attachments"][0]["decoded_size"] == len(b"%PDF-1.7 test")
    assert info["attachments"][0]["declared_type"] == "application/pdf"


def test_build_status_package(tmp_path, capsys):
    out = tmp_path / "st.edxml"
    assert (
        main(
            [
                "edxml",
                "build",
                "--kind",
                "status",
                "--from",
                "000.00.00.G22",
                "--response-organ",
                "000.00.00.H53",
                "--response-document-id",
                "D1",
                "--status-code",
                "3",
                "-o",
                str(out),
            ]
        )
        == 0
    )
    assert main(["edxml", "inspect", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["kind"], info["status_code"], info["addressee"]) == (
        "status",
        "03",
        "000.00.00.H53",
    )


@pytest.mark.skipif(not FIXTURES.is_dir(), reason="../shared fixtures absent")
def test_inspect_every_sdk_sample(capsys):
    for path in sorted(FIXTURES.glob("*.edxml")):
        assert main(["edxml", "inspect", str(path)]) == 0, path
        out = capsys.readouterr().out
        assert "kind:" in out and "problems: none" in out


def test_sdk_placeholder_under_both_policies(pki_dir, capsys):
    path = FIXTURES / "edoc_new.edxml"
    fixture_bytes("edoc_new.edxml")  # skips when absent
    assert (
        main(
            [
                "edxml",
                "verify",
                str(path),
                "--trust",
                str(pki_dir / "trust"),
                "--policy",
                "if-present",
            ]
        )
        == 0
    )
    assert "placeholder" in capsys.readouterr().out
    assert main(["edxml", "verify", str(path), "--trust", str(pki_dir / "trust")]) == 3
    assert "signature_placeholder" in capsys.readouterr().out


def test_exit_codes_for_malformed_and_invalid_input(tmp_path, capsys):
    junk = tmp_path / "junk.edxml"
    junk.write_bytes(b"1212<?xml version='1.0'?><edXML/>")
    assert main(["edxml", "inspect", str(junk)]) == 4
    assert "content_before_declaration" in capsys.readouterr().err
    bad = tmp_path / "bad.edxml"
    assert (
        main(
            [
                "edxml",
                "build",
                "--from",
                "000.00.00.H53",
                "--to",
                "000.00.00.G22",
                "--to",
                "000.00.00.G22",
                "-o",
                str(bad),
            ]
        )
        == 0
    )
    assert main(["edxml", "inspect", str(bad)]) == 1
    assert "duplicate_recipient" in capsys.readouterr().out


def test_console_script_usage_error_exits_2():
    res = subprocess.run(
        [sys.executable, "-m", "hub.cli.main", "edxml"], check=False, capture_output=True
    )
    assert res.returncode == 2
