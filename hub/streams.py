"""Bodies from outside, read in chunks: refused once over a size limit, spooled while
hashed. One mechanism for what the hub receives (uploads, on both faces) and what its
VXP client takes from an axis: bytes from either side are as hostile as any others."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

from hub.errors import PackageTooLarge
from hub.ports import BlobStore, Spool


def check_declared(
    length: int | None,
    limit: int,
    *,
    what: str = "the package",
    code: str = "package_too_large",
) -> None:
    """Refuse a body whose declared length (``Content-Length``) is over ``limit``."""
    if length is not None and length > limit:
        raise PackageTooLarge(f"{what} is {length} bytes; the limit is {limit}", code=code)


async def capped(
    chunks: AsyncIterator[bytes],
    length: int | None,
    limit: int,
    *,
    what: str = "the package",
    code: str = "package_too_large",
) -> AsyncIterator[bytes]:
    """``chunks`` as they arrive, refused by the declared ``length`` first, else once
    their total passes ``limit``."""
    check_declared(length, limit, what=what, code=code)
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise PackageTooLarge(f"{what} exceeds the limit of {limit} bytes", code=code)
        yield chunk


async def spool_hashed(chunks: AsyncIterator[bytes], blobs: BlobStore) -> tuple[Spool, str]:
    """Write ``chunks`` to a new spool file of ``blobs``, hashing them on the way: memory
    holds one chunk, never the body. Returns the finished spool and the SHA-256; on any
    failure the spool is removed. The caller discards it once done (harmless if adopted)."""
    digest = hashlib.sha256()
    spool = blobs.spool()
    try:
        async for chunk in chunks:
            digest.update(chunk)
            await spool.write(chunk)
        await spool.finish()
    except BaseException:
        spool.discard()
        raise
    return spool, digest.hexdigest()
