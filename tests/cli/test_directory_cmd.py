"""``lienthong directory``: systems, organs, tokens, bindings and imports, each audited."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from hub.cli.main import main


def test_directory_commands_manage_and_audit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LIENTHONG_STORE_PATH", str(tmp_path / "hub.db"))
    monkeypatch.setenv("LIENTHONG_BLOBS_PATH", str(tmp_path / "blobs"))
    assert (
        main(["directory", "system", "sys-q", "--name", "Quang Ninh", "--policy", "required"]) == 0
    )
    assert (
        main(
            [
                "directory",
                "organ",
                "000.00.00.H22",
                "--name",
                "UBND tỉnh Quảng Ninh",
                "--system",
                "sys-q",
                "--alias",
                "H22.OLD",
            ]
        )
        == 0
    )
    assert main(["directory", "organ", "000.00.01.H22", "--name", "Sở", "--system", "sys-q"]) == 0
    capsys.readouterr()
    assert main(["directory", "token", "sys-q"]) == 0
    token = capsys.readouterr().out.strip()
    assert token.startswith("lt") and "." in token
    assert main(["directory", "token", "nobody"]) == 2
    assert capsys.readouterr().out.strip() == "no system nobody"
    for days, ends in (("7", "expires 20"), ("0", "expires never")):
        assert main(["directory", "token", "sys-q", "--days", days]) == 0
        out = capsys.readouterr()
        assert out.out.strip().startswith("lt") and out.err.startswith(ends), out
    assert main(["directory", "token", "sys-q", "--days", "-1"]) != 0
    assert "0 for none" in capsys.readouterr().err
    (tmp_path / "organs.csv").write_text(
        "organ_id,name,system_id,location\n000.00.00.G01,Bo Ngoai giao,,upstream\n",
        encoding="utf-8",
    )
    assert main(["directory", "import", str(tmp_path / "organs.csv")]) == 0
    (tmp_path / "d.json").write_text(
        json.dumps(
            {
                "systems": [{"system_id": "sys-j", "name": "J"}],
                "organs": [{"organ_id": "H37.02", "name": "QĐ20 organ", "system_id": "sys-j"}],
            }
        ),
        encoding="utf-8",
    )
    assert main(["directory", "import", str(tmp_path / "d.json")]) == 0
    capsys.readouterr()
    assert main(["directory", "list"]) == 0
    listing = json.loads(capsys.readouterr().out)
    organs = {o["organ_id"]: o for o in listing["organs"]}
    assert organs["000.00.01.H22"]["parent"] == "000.00.00.H22"  # computed from the id
    assert organs["000.00.00.H22"]["aliases"] == ["H22.OLD"]
    assert organs["000.00.00.G01"]["location"] == "upstream"
    assert organs["H37.02"]["parent"] == "H37"
    systems = {s["system_id"]: s for s in listing["systems"]}
    assert systems["sys-q"]["signature_policy"] == "required"
    assert sorted(systems["sys-q"]["organs"]) == ["000.00.00.H22", "000.00.01.H22"]
    assert token.split(".")[0] in {t["token_id"] for t in listing["tokens"]}
    assert token.split(".")[1] not in json.dumps(listing), "the secret is never stored or shown"
    assert main(["directory", "organ", "bad id!", "--name", "x"]) == 1
    assert "bad_organ_id" in capsys.readouterr().err
    assert main(["directory", "organ", "000.00.02.H22", "--name", "x", "--system", "nobody"]) == 1
    assert "unknown_system" in capsys.readouterr().err
    # Revoked at once, by id or by the whole token (its secret never echoed), audited.
    token_id = token.split(".")[0]
    assert main(["directory", "revoke-token", token]) == 0
    out = capsys.readouterr().out
    assert out.strip() == f"token {token_id} revoked" and token.split(".")[1] not in out
    assert main(["directory", "revoke-token", token_id]) == 0
    assert "already revoked" in capsys.readouterr().out
    assert main(["directory", "revoke-token", "ltnothing"]) == 2
    assert capsys.readouterr().out.strip() == "no token ltnothing"
    assert main(["directory", "list"]) == 0
    tokens = {t["token_id"]: t for t in json.loads(capsys.readouterr().out)["tokens"]}
    assert tokens[token_id]["revoked"] is True
    with sqlite3.connect(tmp_path / "hub.db") as db:
        types = [r[0] for r in db.execute("SELECT type FROM events ORDER BY seq")]
    assert types.count("directory_token_revoked") == 1  # the repeat changed nothing


def test_vxp_secret_is_printed_once_and_stored_sealed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LIENTHONG_STORE_PATH", str(tmp_path / "hub.db"))
    monkeypatch.setenv("LIENTHONG_BLOBS_PATH", str(tmp_path / "blobs"))
    monkeypatch.setenv("LIENTHONG_VXP_KEY_FILE", str(tmp_path / "vxp.key"))
    assert main(["directory", "system", "sys-v", "--vxp-strict", "--may-register"]) == 0
    assert main(["directory", "vxp-secret", "nobody"]) == 2
    capsys.readouterr()
    assert main(["directory", "vxp-secret", "sys-v"]) == 0
    secret = capsys.readouterr().out.strip()
    assert len(secret) >= 32
    assert (tmp_path / "vxp.key").stat().st_mode & 0o777 == 0o600
    assert secret.encode() not in (tmp_path / "hub.db").read_bytes()  # sealed at rest
    assert main(["directory", "list"]) == 0
    listing = json.loads(capsys.readouterr().out)
    sys_v = next(s for s in listing["systems"] if s["system_id"] == "sys-v")
    assert sys_v["vxp_secret"] and sys_v["vxp_strict"] and sys_v["may_register"]
    assert secret not in json.dumps(listing)
    assert sys_v["vxp_previous_until"] is None
    # Rotated with an overlap: the new secret alone on stdout, the overlap's end on stderr.
    assert main(["directory", "vxp-secret", "sys-v", "--overlap-days", "14"]) == 0
    out = capsys.readouterr()
    assert len(out.out.strip()) >= 32 and out.out.strip() != secret
    assert out.err.startswith("the previous secret is accepted until 20"), out.err
    assert main(["directory", "list"]) == 0
    sys_v = next(
        s for s in json.loads(capsys.readouterr().out)["systems"] if s["system_id"] == "sys-v"
    )
    assert sys_v["vxp_previous_until"] and out.err.strip().endswith(sys_v["vxp_previous_until"])


def test_a_system_is_bound_to_its_networks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LIENTHONG_STORE_PATH", str(tmp_path / "hub.db"))
    monkeypatch.setenv("LIENTHONG_BLOBS_PATH", str(tmp_path / "blobs"))
    argv = ["directory", "system", "sys-n", "--network", "10.1.0.0/16", "--network", "10.9.9.9"]
    assert main(argv) == 0
    assert main(["directory", "system", "sys-x", "--network", "10.1.0.0/99"]) != 0
    capsys.readouterr()
    assert main(["directory", "list"]) == 0
    listing = json.loads(capsys.readouterr().out)
    sys_n = next(s for s in listing["systems"] if s["system_id"] == "sys-n")
    assert sys_n["networks"] == ["10.1.0.0/16", "10.9.9.9/32"]
    assert all(s["system_id"] != "sys-x" for s in listing["systems"])


def test_suspend_resume_and_unbind_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LIENTHONG_STORE_PATH", str(tmp_path / "hub.db"))
    monkeypatch.setenv("LIENTHONG_BLOBS_PATH", str(tmp_path / "blobs"))
    assert main(["directory", "system", "sys-s"]) == 0
    assert main(["directory", "organ", "000.00.00.H22", "--name", "Q", "--system", "sys-s"]) == 0
    fp = "ab" * 32
    assert main(["directory", "bind", fp.upper(), "000.00.00.H22"]) == 0
    assert main(["directory", "bind", "abc", "000.00.00.H22"]) == 1
    assert "bad_fingerprint" in capsys.readouterr().err
    assert main(["directory", "suspend", "nobody", "--reason", "x"]) == 2
    assert main(["directory", "suspend", "sys-s", "--reason", " "]) == 1
    assert "reason_required" in capsys.readouterr().err
    assert main(["directory", "suspend", "sys-s", "--reason", "incident 7"]) == 0
    assert capsys.readouterr().out.strip() == "system sys-s suspended"
    assert main(["directory", "system", "sys-s", "--name", "renamed"]) == 0  # kept suspended
    capsys.readouterr()
    assert main(["directory", "list"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert listing["systems"][0]["suspended"] == "incident 7"
    assert listing["systems"][0]["name"] == "renamed"
    assert listing["bindings"] == [{"fingerprint": fp, "organ_id": "000.00.00.H22"}]
    assert main(["directory", "resume", "sys-s"]) == 0
    assert capsys.readouterr().out.strip() == "system sys-s resumed; 0 held push(es) sent again"
    assert main(["directory", "resume", "sys-s"]) == 0
    assert "was not suspended" in capsys.readouterr().out
    assert main(["directory", "unbind", fp, "000.00.00.H22"]) == 0
    assert main(["directory", "unbind", fp, "000.00.00.H22"]) == 2
    assert "was not bound" in capsys.readouterr().out
    with sqlite3.connect(tmp_path / "hub.db") as db:
        types = [r[0] for r in db.execute("SELECT type FROM events ORDER BY seq")]
        suspended = db.execute("SELECT suspended FROM systems").fetchall()
    assert suspended == [(None,)]
    assert [t for t in types if t.startswith(("directory_system_s", "directory_system_r"))] == [
        "directory_system_saved",
        "directory_system_suspended",
        "directory_system_saved",
        "directory_system_resumed",
    ]
    assert types.count("directory_cert_unbound") == 1
