"""The README's first steps, for real: ``lienthong dev`` serves the embedded default
with a demo directory, and the CLI client sends, lists, fetches, acknowledges and
reads the status of a first package."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.service.procs import free_port

pytestmark = pytest.mark.slow


def _lt(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hub.cli.main", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_dev_hub_and_cli_client_first_package(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "LIENTHONG_URL": f"http://127.0.0.1:{port}"}
    base = tmp_path / "dev"
    with (tmp_path / "dev.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hub.cli.main", "dev", "--dir", str(base), "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=tmp_path,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert proc.poll() is None, (tmp_path / "dev.log").read_text()
            assert time.monotonic() < deadline, "dev hub did not become ready"
            time.sleep(0.2)
        printed = (tmp_path / "dev.log").read_text()
        assert "lienthong send" in printed and "tokens" in printed
        pki = base / "pki"
        tokens = base / "tokens"
        r = _lt(
            "edxml",
            "build",
            "--from",
            "000.00.00.H53",
            "--to",
            "000.00.00.G22",
            "-o",
            str(base / "a.edxml"),
            env=env,
            cwd=tmp_path,
        )
        assert r.returncode == 0, r.stderr
        r = _lt(
            "edxml",
            "sign",
            str(base / "a.edxml"),
            "--key",
            str(pki / "agencies/000.00.00.H53.key"),
            "--cert",
            str(pki / "agencies/000.00.00.H53.pem"),
            "-o",
            str(base / "a.signed.edxml"),
            env=env,
            cwd=tmp_path,
        )
        assert r.returncode == 0, r.stderr
        r = _lt(
            "send",
            str(base / "a.signed.edxml"),
            "--token-file",
            str(tokens / "sys-h53.token"),
            env=env,
            cwd=tmp_path,
        )
        assert r.returncode == 0, r.stdout + r.stderr
        sent = json.loads(r.stdout)
        assert sent["signature"]["outcome"] == "valid"
        pid = sent["id"]
        g22 = ["--token-file", str(tokens / "sys-g22.token")]
        for _ in range(100):
            r = _lt("inbox", *g22, env=env, cwd=tmp_path)
            if json.loads(r.stdout)["items"]:
                break
            time.sleep(0.1)
        assert [i["id"] for i in json.loads(r.stdout)["items"]] == [pid]
        r = _lt("fetch", pid, "-o", str(base / "got.edxml"), *g22, env=env, cwd=tmp_path)
        assert r.returncode == 0, r.stdout
        assert (base / "got.edxml").read_bytes() == (base / "a.signed.edxml").read_bytes()
        r = _lt("ack", pid, "done", *g22, env=env, cwd=tmp_path)
        assert r.returncode == 0, r.stdout
        r = _lt("status", pid, "--token-file", str(tokens / "sys-h53.token"), env=env, cwd=tmp_path)
        assert json.loads(r.stdout)["deliveries"][0]["state"] == "done"
        r = _lt(
            "status", pid, *g22, env={**env, "LIENTHONG_URL": "http://127.0.0.1:1"}, cwd=tmp_path
        )
        assert r.returncode != 0 and "cannot reach the hub" in r.stderr
        # The printed VXP endpoint and secret work for an SDK-style client.
        assert f"http://127.0.0.1:{port}/vxp" in printed
        secret = (tokens / "sys-g22.vxp-secret").read_text().strip()
        assert asyncio.run(_vxp_agencies(f"http://127.0.0.1:{port}/vxp", secret)) >= 4
        # The printed backup command, from another process while the hub serves.
        assert "backup --config" in printed
        conf = ["backup", "--config", str(base / "lienthong.toml")]
        r = _lt(*conf, "create", str(base / "backups/first"), env=env, cwd=tmp_path)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "packages 1, package files 1" in r.stdout
        r = _lt(*conf, "check", str(base / "backups/first"), env=env, cwd=tmp_path)
        assert r.returncode == 0 and "backup OK" in r.stdout, r.stdout + r.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
    assert proc.returncode == 0, (tmp_path / "dev.log").read_text()[-2000:]


async def _vxp_agencies(endpoint: str, secret: str) -> int:
    from adapters.vxp_client import VxpClient  # noqa: PLC0415

    client = VxpClient(endpoint, "sys-g22", secret, sdk=True)
    try:
        return len(await client.agencies())
    finally:
        await client.close()


def test_a_port_in_use_is_a_clear_configuration_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        got = _lt(
            "dev",
            "--dir",
            str(tmp_path / "dev"),
            "--port",
            str(port),
            env={**os.environ},
            cwd=tmp_path,
        )
    assert got.returncode == 5, got.stderr
    assert f"127.0.0.1:{port} is already in use" in got.stderr
    assert "Traceback" not in got.stderr
