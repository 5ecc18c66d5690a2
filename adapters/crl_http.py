"""CRLs over HTTP(S), as CAs publish them (RFC 5280 distribution points).

A conditional GET (``If-None-Match``/``If-Modified-Since``) so an unchanged CRL costs a
304; the body is read in chunks and refused past ``max_bytes``; proxies are taken from
the environment (``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY``), as agency networks often
need. Only http and https addresses are fetched, redirects included. Whether the bytes
are a CRL worth believing is not decided here (``hub/service/crl_refresh.py``).
"""

from __future__ import annotations

import aiohttp

from hub.errors import Unavailable
from hub.ports import FetchedCrl
from hub.signature.trust import fetchable
from hub.streams import capped

_CHUNK = 64 * 1024


class HttpCrlSource:
    def __init__(self, *, timeout_s: float = 30.0, max_bytes: int = 16 * 1024 * 1024) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.max_bytes = max_bytes
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def fetch(
        self, url: str, *, etag: str | None = None, last_modified: str | None = None
    ) -> FetchedCrl | None:
        if not fetchable(url):
            raise Unavailable(f"not an http(s) CRL address: {url}", code="crl_url_scheme")
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout, trust_env=True)
        headers = {"Accept": "application/pkix-crl, application/x-pkcs7-crl, */*"}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        try:
            async with self._session.get(url, headers=headers, max_redirects=3) as resp:
                if resp.status == 304:
                    return None
                if resp.status != 200:
                    raise Unavailable(
                        f"the CRL server answered {resp.status}", code="crl_fetch_failed"
                    )
                chunks = capped(
                    resp.content.iter_chunked(_CHUNK),
                    resp.content_length,
                    self.max_bytes,
                    what="the CRL",
                    code="crl_too_large",
                )
                data = b"".join([c async for c in chunks])
                return FetchedCrl(data, resp.headers.get("ETag"), resp.headers.get("Last-Modified"))
        except (aiohttp.ClientError, TimeoutError) as exc:
            msg = f"the CRL could not be fetched: {exc}"
            raise Unavailable(msg, code="crl_fetch_failed") from exc
