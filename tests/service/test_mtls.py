"""Mutual TLS: a connected system may authenticate with a TLS client certificate
registered to it instead of (or together with) its bearer token."""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import json
import os
import ssl
import sys
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from adapters.factory import opened_store
from hub.edxml import demo
from hub.errors import AuthenticationFailed
from hub.pki import Issued, issue, key_usage, make_ca
from hub.ports import Directory, SystemClock
from hub.records import Credential, System
from hub.service.auth import authenticate, hash_secret
from hub.service.directory_admin import DirectoryAdmin
from tests.service import harness
from tests.service.harness import A, B, signed
from tests.service.procs import HubProcess, free_port, write_config

_CLIENT = key_usage("digital_signature", "key_encipherment")


def _der(cert: Issued) -> bytes:
    return cert.cert.public_bytes(serialization.Encoding.DER)


def _directory(client: Issued) -> Directory:
    systems = {s: System(s, s) for s in ("sys-a", "sys-b")}
    creds = {
        "ta": Credential("ta", "sys-a", hash_secret("sa"), 0),
        "tb": Credential("tb", "sys-b", hash_secret("sb"), 0),
    }
    fp = hashlib.sha256(_der(client)).hexdigest()
    return Directory(1, {}, {}, systems, creds, (), client_certs={fp: "sys-a"})


def test_who_a_certificate_and_a_token_authenticate() -> None:
    ca = make_ca("test client CA")
    a_cert = issue(ca, "sys-a client", key_usage=_CLIENT, eku=(ExtendedKeyUsageOID.CLIENT_AUTH,))
    stray = issue(ca, "stray client", key_usage=_CLIENT, eku=(ExtendedKeyUsageOID.CLIENT_AUTH,))
    d = _directory(a_cert)
    assert authenticate(d, None, _der(a_cert), peer=None).system_id == "sys-a"
    assert authenticate(d, "Bearer ta.sa", _der(a_cert), peer=None).system_id == "sys-a"
    by_token = authenticate(d, "Bearer tb.sb", _der(stray), peer=None)
    assert by_token.system_id == "sys-b"  # the token decides
    for header, cert, code in (
        (None, _der(stray), "unknown_client_cert"),
        ("Bearer tb.sb", _der(a_cert), "credentials_disagree"),
        ("Bearer ta.wrong", _der(a_cert), "bad_credentials"),
        (None, None, "missing_credentials"),
    ):
        with pytest.raises(AuthenticationFailed) as err:
            authenticate(d, header, cert, peer=None)
        assert err.value.error_code == code


def _client(ca_pem: str, cert: tuple[str, str] | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=ca_pem)
    if cert is not None:
        ctx.load_cert_chain(*cert)
    return ctx


async def test_a_system_sends_over_mutual_tls_without_a_token(
    tmp_path: Path, pki_dir: tuple[Path, dict[str, str]]
) -> None:
    root, bindings = pki_dir
    ca = make_ca("test TLS CA")
    other_ca = make_ca("someone else's CA")
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem)
    ca_pem = str(tmp_path / "ca.pem")
    server = issue(
        ca,
        "hub",
        key_usage=_CLIENT,
        eku=(ExtendedKeyUsageOID.SERVER_AUTH,),
        san=(x509.IPAddress(ipaddress.ip_address("127.0.0.1")),),
    )
    client_eku = (ExtendedKeyUsageOID.CLIENT_AUTH,)
    a_cert = issue(ca, "sys-a client", key_usage=_CLIENT, eku=client_eku)
    stray = issue(ca, "stray client", key_usage=_CLIENT, eku=client_eku)
    foreign = issue(other_ca, "foreign client", key_usage=_CLIENT, eku=client_eku)
    cfg = harness.config(tmp_path, root, "embedded")
    cfg.server.tls_cert, cfg.server.tls_key = harness.pem_files(tmp_path, "server", server)
    cfg.server.tls_client_ca = ca_pem
    tokens = await harness.seed_directory(cfg, bindings)
    async with opened_store(cfg) as store:
        fp = await DirectoryAdmin(store, SystemClock(), "test").add_client_cert(
            "sys-a", a_cert.cert_pem
        )
    hub = HubProcess(
        write_config(cfg, tmp_path / "hub.toml"),
        free_port(),
        tmp_path / "hub.log",
        tls=_client(ca_pem, None),
    )
    data = signed(root, A, demo.document_bytes(sender=A, to=(B,)))
    try:
        await asyncio.to_thread(hub.start)

        async def call(
            cert: tuple[str, str] | None, token: str | None = None, method: str = "GET"
        ) -> tuple[int, dict[str, object]]:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            path = "/api/v1/packages" if method == "POST" else "/api/v1/inbox"
            async with (
                aiohttp.ClientSession() as s,
                s.request(
                    method,
                    hub.url + path,
                    data=data if method == "POST" else None,
                    headers=headers,
                    ssl=_client(ca_pem, cert),
                ) as r,
            ):
                return r.status, await r.json()

        a_files = harness.pem_files(tmp_path, "a", a_cert)
        status, body = await call(a_files, method="POST")
        assert status == 202, body
        assert (await call(a_files))[0] == 200
        assert (await call(a_files, tokens["sys-a"]))[0] == 200
        status, body = await call(a_files, tokens["sys-b"])
        assert (status, body["error"]["code"]) == (401, "credentials_disagree")  # type: ignore[index]
        status, body = await call(harness.pem_files(tmp_path, "stray", stray))
        assert (status, body["error"]["code"]) == (401, "unknown_client_cert")  # type: ignore[index]
        status, body = await call(None)
        assert (status, body["error"]["code"]) == (401, "missing_credentials")  # type: ignore[index]
        assert (await call(None, tokens["sys-b"]))[0] == 200  # token-only clients still work
        cli = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "hub.cli.main",
            "inbox",
            "--url",
            hub.url,
            "--ca",
            ca_pem,
            "--cert",
            a_files[0],
            "--key",
            a_files[1],
            stdout=asyncio.subprocess.PIPE,
            env={k: v for k, v in os.environ.items() if k != "LIENTHONG_TOKEN"},
        )
        out, _ = await cli.communicate()
        assert cli.returncode == 0, out
        assert "items" in json.loads(out)
        with pytest.raises(aiohttp.ClientError):  # refused in the handshake
            await call(harness.pem_files(tmp_path, "foreign", foreign))
        async with (
            aiohttp.ClientSession() as s,
            s.get(hub.url + "/healthz", ssl=_client(ca_pem, None)) as r,
        ):
            assert r.status == 200

        async with opened_store(cfg) as store:
            assert await DirectoryAdmin(store, SystemClock(), "test").remove_client_cert(fp)
        status, body = await harness.eventually(lambda: call(a_files), lambda v: v[0] == 401)
        assert body["error"]["code"] == "unknown_client_cert"  # type: ignore[index]
    finally:
        await asyncio.to_thread(hub.stop)


async def test_administrators_register_and_remove_client_certificates(
    hut: harness.HubUnderTest,
) -> None:
    ca = make_ca("test client CA")
    cert = issue(ca, "sys-b client", key_usage=_CLIENT, eku=(ExtendedKeyUsageOID.CLIENT_AUTH,))
    body = {"certificate": cert.cert_pem.decode()}
    path = "/api/v1/admin/systems/sys-b/client-certs"
    r = await hut.client.post(path, json=body, headers=hut.auth("auditor"))
    assert r.status == 403 and (await r.json())["error"]["code"] == "role_forbidden"
    r = await hut.client.post(path, json={"certificate": "junk"}, headers=hut.auth("admin"))
    assert r.status == 400 and (await r.json())["error"]["code"] == "bad_certificate"
    r = await hut.client.post(path, json=body, headers=hut.auth("admin"))
    assert r.status == 201, await r.text()
    fp = (await r.json())["fingerprint"]
    assert hut.hub.directory.current.client_certs == {fp: "sys-b"}
    assert authenticate(hut.hub.directory.current, None, _der(cert), peer=None).system_id == "sys-b"
    r = await hut.client.post(f"/api/v1/admin/client-certs/{fp}/remove", headers=hut.auth("admin"))
    assert (await r.json())["removed"] is True
    assert hut.hub.directory.current.client_certs == {}
    events = await hut.hub.store.ledger_events(0, 10**9, 10_000)
    assert [e.type for e in events if "client_cert" in e.type] == [
        "directory_client_cert_added",
        "directory_client_cert_removed",
    ]
