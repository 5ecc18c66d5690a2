"""The hub's own outbound HTTP to its CAs (CRL downloads, OCSP questions): one session,
opened on first use, proxies from the environment (``HTTPS_PROXY``/``HTTP_PROXY``/
``NO_PROXY``, as agency networks often need), bodies read in chunks under a cap."""

from __future__ import annotations

import aiohttp

from hub.streams import capped


class OutboundHttp:
    def __init__(self, timeout_s: float) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout, trust_env=True)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


async def read_capped(
    resp: aiohttp.ClientResponse, max_bytes: int, *, what: str, code: str, chunk: int
) -> bytes:
    """The whole body, refused (``PackageTooLarge`` with ``code``) past ``max_bytes``."""
    chunks = capped(
        resp.content.iter_chunked(chunk), resp.content_length, max_bytes, what=what, code=code
    )
    return b"".join([c async for c in chunks])
