"""A CA's OCSP responder for tests: an HTTP server on 127.0.0.1 that answers from a table
of serial numbers, signed by the CA (or a delegate), echoing the request's nonce."""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass, field

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from hub import pki
from tests.signature.crl_server import serve_locally


def answer(
    cert: x509.Certificate,
    ca: pki.Issued,
    *,
    status: ocsp.OCSPCertStatus = ocsp.OCSPCertStatus.GOOD,
    signer: pki.Issued | None = None,
    this_update: dt.datetime | None = None,
    next_update: dt.datetime | bool | None = True,
    nonce: bytes | None = None,
    about_issuer: x509.Certificate | None = None,
    by_name: bool = False,
) -> bytes:
    """A DER OCSP response about ``cert`` (issued by ``ca``), signed by ``signer`` (the CA
    by default; a delegate is included in the response; ``by_name``: the responder named
    by its subject rather than its key hash). ``next_update=True``: a day on."""
    now = dt.datetime.now(dt.UTC)
    this = this_update or now - dt.timedelta(minutes=1)
    nxt: dt.datetime | None = this + dt.timedelta(days=1) if next_update is True else None
    if isinstance(next_update, dt.datetime):
        nxt = next_update
    revoked = status is ocsp.OCSPCertStatus.REVOKED
    by = signer or ca
    b = (
        ocsp.OCSPResponseBuilder()
        .add_response(
            cert=cert,
            issuer=about_issuer or ca.cert,
            algorithm=hashes.SHA1(),
            cert_status=status,
            this_update=this,
            next_update=nxt,
            revocation_time=this - dt.timedelta(hours=1) if revoked else None,
            revocation_reason=x509.ReasonFlags.key_compromise if revoked else None,
        )
        .responder_id(
            ocsp.OCSPResponderEncoding.NAME if by_name else ocsp.OCSPResponderEncoding.HASH,
            by.cert,
        )
    )
    if signer is not None:
        b = b.certificates([signer.cert])
    if nonce is not None:
        b = b.add_extension(x509.OCSPNonce(nonce), critical=False)
    response = b.sign(by.key, hashes.SHA256())
    return response.public_bytes(serialization.Encoding.DER)


@dataclass
class OcspServer:
    """Answers about the certificates ``ca`` issued: ``statuses`` by serial number (good
    when absent), signed by ``ca`` or its ``delegate``. ``http_status``/``body`` override
    the answer; ``delay`` slows it."""

    ca: pki.Issued
    delegate: pki.Issued | None = None
    statuses: dict[int, ocsp.OCSPCertStatus] = field(default_factory=dict)
    http_status: int = 200
    body: bytes | None = None
    delay: float = 0.0
    requests: list[ocsp.OCSPRequest] = field(default_factory=list)
    port: int = 0
    _runner: web.AppRunner | None = None
    _issued: dict[int, x509.Certificate] = field(default_factory=dict)

    def know(self, *certs: x509.Certificate) -> None:
        for c in certs:
            self._issued[c.serial_number] = c

    async def __aenter__(self) -> OcspServer:
        async def serve(request: web.Request) -> web.StreamResponse:
            req = ocsp.load_der_ocsp_request(await request.read())
            self.requests.append(req)
            if self.delay:
                await asyncio.sleep(self.delay)
            if self.http_status != 200 or self.body is not None:
                return web.Response(status=self.http_status, body=self.body or b"")
            cert = self._issued[req.serial_number]
            try:
                nonce = req.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
            except x509.ExtensionNotFound:
                nonce = None
            status = self.statuses.get(req.serial_number, ocsp.OCSPCertStatus.GOOD)
            body = answer(cert, self.ca, status=status, nonce=nonce, signer=self.delegate)
            return web.Response(body=body, content_type="application/ocsp-response")

        app = web.Application()
        app.router.add_post("/ocsp", serve)
        self._runner, self.port = await serve_locally(app)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/ocsp"
