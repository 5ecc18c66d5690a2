"""Push over https: the endpoint's certificate is verified, and the hub presents its own
client certificate to endpoints that require mutual TLS."""

from __future__ import annotations

import hashlib
import ipaddress
import ssl
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from adapters.push import HttpPusher, push_tls
from hub.config import DeliveryConfig, load
from hub.errors import ConfigError, Unavailable
from hub.pki import Issued, issue, key_usage, make_ca
from hub.ports import Outgoing
from hub.records import PackageRow
from tests.service.harness import pem_files

_TLS = key_usage("digital_signature", "key_encipherment")


class _Endpoint:
    """An agency's https endpoint that requires a client certificate from its CA."""

    def __init__(self, tmp: Path, client_ca: Issued) -> None:
        self.ca = make_ca("agency server CA")
        server = issue(
            self.ca,
            "agency endpoint",
            key_usage=_TLS,
            eku=(ExtendedKeyUsageOID.SERVER_AUTH,),
            san=(x509.IPAddress(ipaddress.ip_address("127.0.0.1")),),
        )
        (tmp / "client-ca.pem").write_bytes(client_ca.cert_pem)
        self.tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.tls.load_cert_chain(*pem_files(tmp, "endpoint", server))
        self.tls.load_verify_locations(str(tmp / "client-ca.pem"))
        self.tls.verify_mode = ssl.CERT_REQUIRED
        self.received: list[tuple[bytes, str]] = []

    async def handle(self, request: web.Request) -> web.Response:
        peer = request.transport.get_extra_info("peercert") if request.transport else None
        subject = dict(x[0] for x in peer["subject"]) if peer else {}
        self.received.append((await request.read(), subject.get("commonName", "")))
        return web.Response(status=202)


def _package(data: bytes) -> tuple[PackageRow, Outgoing]:
    sha = hashlib.sha256(data).hexdigest()
    row = PackageRow("p1", sha, len(data), "edoc", "000.00.00.G22", "sys-a", 0)
    return row, Outgoing(sha, len(data), data=data)


async def test_a_push_presents_the_hubs_certificate_and_checks_the_endpoints(
    tmp_path: Path,
) -> None:
    hub_ca = make_ca("hub client CA")
    hub_cert = issue(
        hub_ca, "lienthong hub", key_usage=_TLS, eku=(ExtendedKeyUsageOID.CLIENT_AUTH,)
    )
    endpoint = _Endpoint(tmp_path, hub_ca)
    (tmp_path / "agency-ca.pem").write_bytes(endpoint.ca.cert_pem)
    cert, key = pem_files(tmp_path, "hub", hub_cert)
    app = web.Application()
    app.router.add_post("/inbox", endpoint.handle)
    server = TestServer(app)
    await server.start_server(ssl=endpoint.tls)
    try:
        url = str(server.make_url("/inbox"))
        assert url.startswith("https://")

        async def push(cfg: DeliveryConfig) -> None:
            pusher = HttpPusher(5.0, tls=push_tls(cfg))
            try:
                await pusher.push(url, *_package(b"<edXML/>"))
            finally:
                await pusher.close()

        mutual = DeliveryConfig(
            push_ca_file=str(tmp_path / "agency-ca.pem"), push_client_cert=cert, push_client_key=key
        )
        await push(mutual)
        assert endpoint.received == [(b"<edXML/>", "lienthong hub")]
        # Without the hub's certificate the endpoint refuses the handshake.
        with pytest.raises(Unavailable) as no_cert:
            await push(DeliveryConfig(push_ca_file=str(tmp_path / "agency-ca.pem")))
        assert no_cert.value.error_code == "push_unreachable"
        # An endpoint whose certificate does not chain to the configured CAs is not trusted.
        (tmp_path / "other-ca.pem").write_bytes(make_ca("another CA").cert_pem)
        with pytest.raises(Unavailable) as untrusted:
            await push(
                DeliveryConfig(
                    push_ca_file=str(tmp_path / "other-ca.pem"),
                    push_client_cert=cert,
                    push_client_key=key,
                )
            )
        assert "certificate verify failed" in untrusted.value.message
        assert len(endpoint.received) == 1
    finally:
        await server.close()


def test_push_tls_settings_are_checked_at_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="go together"):
        load(None, env={"LIENTHONG_DELIVERY_PUSH_CLIENT_CERT": "/etc/hub.pem"})
    with pytest.raises(ConfigError, match="cannot be used"):
        push_tls(DeliveryConfig(push_ca_file=str(tmp_path / "missing.pem")))
    ctx = push_tls(DeliveryConfig())  # the system's CAs, verifying, TLS 1.2 at least
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
