"""Which push endpoints the hub will send packages to.

A push endpoint receives whole signed documents, so it must be an absolute ``https``
URL: plain ``http`` would hand them to anyone on the path, and is allowed only where
``[delivery] allow_http_push`` says so (a laboratory, a loopback test endpoint). A URL
must not carry credentials: it is stored in the directory and written into the ledger's
``pushed`` events, where a secret must never be.

Checked twice: when an organ is saved (so an administrator hears of it at once) and
before each push (a directory written by an earlier version, or by hand, may hold one).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from hub.errors import InputError


def check_push_url(url: str, *, allow_http: bool) -> str:
    """``url`` when the hub may push to it; ``InputError`` (``bad_push_url`` or
    ``push_url_not_https``) saying why not."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        _ = parts.port  # a port that is not a number raises here
    except ValueError as exc:
        raise InputError(f"the push URL cannot be read: {exc}", code="bad_push_url") from exc
    if parts.username is not None or parts.password is not None:  # first: never echoed
        raise InputError(
            "a push URL must not carry credentials (it is stored and written into the "
            "ledger); the hub authenticates to push endpoints with its client certificate",
            code="bad_push_url",
        )
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http") or not host:
        raise InputError(
            f"push URL {url!r} must be an absolute https:// URL with a host",
            code="bad_push_url",
        )
    if parts.fragment:
        raise InputError(f"push URL {url!r} must not have a fragment", code="bad_push_url")
    if scheme == "http" and not allow_http:
        raise InputError(
            f"push URL {url!r} is plain http: packages are pushed over https only "
            "([delivery] allow_http_push allows http, for a laboratory)",
            code="push_url_not_https",
        )
    return url
