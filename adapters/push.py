"""Push delivery: POST the raw package to an agency's endpoint.

Any failure (connection, timeout, non-2xx) is ``Unavailable``: the delivery worker
retries it with backoff within the organ's budget, then marks it dead.
"""

from __future__ import annotations

import aiohttp

from hub.errors import Unavailable
from hub.ports import Outgoing
from hub.records import PackageRow


class HttpPusher:
    def __init__(self, timeout_s: float = 30.0) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def push(self, url: str, package: PackageRow, body: Outgoing) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
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
