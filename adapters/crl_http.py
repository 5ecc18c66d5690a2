"""CRLs over HTTP(S), as CAs publish them (RFC 5280 distribution points).

A conditional GET (``If-None-Match``/``If-Modified-Since``) so an unchanged CRL costs a
304; the body is read in chunks and refused past ``max_bytes``; proxies are taken from
the environment (``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY``), as agency networks often
need. Only http and https addresses are fetched, redirects included. Whether the bytes
are a CRL worth believing is not decided here (``hub/service/crl_refresh.py``).
"""

from __future__ import annotations

import aiohttp

from adapters.outbound import OutboundHttp, read_capped
from hub.errors import Unavailable
from hub.ports import FetchedCrl
from hub.signature.trust import fetchable

_CHUNK = 64 * 1024


class HttpCrlSource(OutboundHttp):
    def __init__(self, *, timeout_s: float = 30.0, max_bytes: int = 16 * 1024 * 1024) -> None:
        super().__init__(timeout_s)
        self.max_bytes = max_bytes

    async def fetch(
        self, url: str, *, etag: str | None = None, last_modified: str | None = None
    ) -> FetchedCrl | None:
        if not fetchable(url):
            raise Unavailable(f"not an http(s) CRL address: {url}", code="crl_url_scheme")
        headers = {"Accept": "application/pkix-crl, application/x-pkcs7-crl, */*"}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        try:
            async with self.session().get(url, headers=headers, max_redirects=3) as resp:
                if resp.status == 304:
                    return None
                if resp.status != 200:
                    raise Unavailable(
                        f"the CRL server answered {resp.status}", code="crl_fetch_failed"
                    )
                data = await read_capped(
                    resp, self.max_bytes, what="the CRL", code="crl_too_large", chunk=_CHUNK
                )
                return FetchedCrl(data, resp.headers.get("ETag"), resp.headers.get("Last-Modified"))
        except (aiohttp.ClientError, TimeoutError) as exc:
            msg = f"the CRL could not be fetched: {exc}"
            raise Unavailable(msg, code="crl_fetch_failed") from exc
