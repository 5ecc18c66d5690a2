"""A CA's CRL publication point for tests: an HTTP server on 127.0.0.1."""

from __future__ import annotations

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import serialization


async def serve_locally(app: web.Application) -> tuple[web.AppRunner, int]:
    """``app`` served on 127.0.0.1 at a free port: its runner (to clean up) and port."""
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]


def der(crl: x509.CertificateRevocationList) -> bytes:
    return crl.public_bytes(serialization.Encoding.DER)


class CrlServer:
    """A CA's CRL publication point: serves what it is given, honours If-None-Match."""

    def __init__(self) -> None:
        self.body: bytes = b""
        self.status = 200
        self.etag: str | None = None
        self.requests: list[dict[str, str]] = []
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def __aenter__(self) -> CrlServer:
        async def serve(request: web.Request) -> web.StreamResponse:
            self.requests.append(dict(request.headers))
            if self.etag and request.headers.get("If-None-Match") == self.etag:
                return web.Response(status=304)
            headers = {"ETag": self.etag} if self.etag else {}
            return web.Response(status=self.status, body=self.body, headers=headers)

        app = web.Application()
        app.router.add_get("/{name}", serve)
        self._runner, self.port = await serve_locally(app)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    def url(self, name: str = "ca.crl") -> str:
        return f"http://127.0.0.1:{self.port}/{name}"
