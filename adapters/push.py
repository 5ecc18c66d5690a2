"""Push delivery: POST the raw package to an agency's endpoint.

Any failure (connection, TLS handshake, timeout, non-2xx) is ``Unavailable``: the
delivery worker retries it with backoff within the organ's budget, then marks it dead.
An endpoint the hub may not push to (plain http without ``[delivery] allow_http_push``,
credentials in the URL: ``hub/service/endpoints.py``) is an ``InputError``: dead at once.

Over https the endpoint's certificate is verified (against ``[delivery] push_ca_file``
when set, else the system's CAs), and the hub presents its own client certificate when
``push_client_cert``/``push_client_key`` are set, so an agency can require mutual TLS.
"""

from __future__ import annotations

import ssl

import aiohttp

from hub.config import DeliveryConfig
from hub.errors import ConfigError, Unavailable
from hub.ports import Outgoing
from hub.records import PackageRow
from hub.service.endpoints import check_push_url


def push_tls(cfg: DeliveryConfig) -> ssl.SSLContext:
    """The TLS context for pushes: verifying, TLS 1.2 at least, with the hub's client
    certificate when configured. A missing or unreadable file stops the start."""
    try:
        ctx = ssl.create_default_context(cafile=cfg.push_ca_file or None)
        if cfg.push_client_cert:
            ctx.load_cert_chain(cfg.push_client_cert, cfg.push_client_key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"[delivery] push TLS files cannot be used: {exc}") from exc
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


class HttpPusher:
    def __init__(
        self,
        timeout_s: float = 30.0,
        *,
        tls: ssl.SSLContext | None = None,
        allow_http: bool = False,
    ) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._tls = tls
        self._allow_http = allow_http
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def push(self, url: str, package: PackageRow, body: Outgoing) -> None:
        # A URL saved before the check existed, or written by hand: refused for good
        # (InputError), not retried.
        check_push_url(url, allow_http=self._allow_http)
        if self._session is None:
            connector = aiohttp.TCPConnector(ssl=self._tls if self._tls is not None else True)
            self._session = aiohttp.ClientSession(timeout=self._timeout, connector=connector)
        headers = {
            "Content-Type": "application/xml",
            "X-Lienthong-Package-Id": package.id,
            "X-Lienthong-Sha256": package.sha256,
            "X-Lienthong-Kind": package.kind,
            "X-Lienthong-Sender": package.sender_organ,
            "Content-Length": str(body.size),  # a large package is sent as it is read
        }
        try:
            async with self._session.post(url, data=body.body(), headers=headers) as resp:
                if resp.status // 100 != 2:
                    text = (await resp.text())[:200]
                    raise Unavailable(
                        f"push endpoint answered {resp.status}: {text}", code="push_refused"
                    )
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Unavailable(f"push endpoint unreachable: {exc}", code="push_unreachable") from exc
