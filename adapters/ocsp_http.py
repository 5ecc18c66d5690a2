"""OCSP over HTTP (RFC 6960 appendix A): a POST of the DER request, as CAs' responders
take it.

The answer is read in chunks and refused past ``max_bytes``; the whole exchange is bounded
by ``timeout_s``; proxies are taken from the environment (``adapters/outbound.py``). Only
http and https addresses are asked, redirects included (at most three). Whether the
bytes are an answer to believe is not decided here (``hub/signature/ocsp.py``).
"""

from __future__ import annotations

import aiohttp

from adapters.outbound import OutboundHttp, read_capped
from hub.errors import Unavailable
from hub.signature.ocsp import MAX_RESPONSE_BYTES
from hub.signature.trust import fetchable

_CHUNK = 16 * 1024


class HttpOcspSource(OutboundHttp):
    def __init__(self, *, timeout_s: float = 5.0, max_bytes: int = MAX_RESPONSE_BYTES) -> None:
        super().__init__(timeout_s)
        self.max_bytes = max_bytes

    async def ask(self, url: str, request: bytes) -> bytes:
        if not fetchable(url):
            raise Unavailable(f"not an http(s) OCSP address: {url}", code="ocsp_url_scheme")
        headers = {
            "Content-Type": "application/ocsp-request",
            "Accept": "application/ocsp-response",
        }
        try:
            async with self.session().post(
                url, data=request, headers=headers, max_redirects=3
            ) as resp:
                if resp.status != 200:
                    raise Unavailable(
                        f"the OCSP responder answered {resp.status}", code="ocsp_fetch_failed"
                    )
                return await read_capped(
                    resp,
                    self.max_bytes,
                    what="the OCSP response",
                    code="ocsp_too_large",
                    chunk=_CHUNK,
                )
        except (aiohttp.ClientError, TimeoutError) as exc:
            msg = f"the OCSP responder could not be reached: {exc}"
            raise Unavailable(msg, code="ocsp_fetch_failed") from exc
