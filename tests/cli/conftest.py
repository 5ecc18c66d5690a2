"""Fixtures shared with the service tests, and a stdlib HTTP server for CLI commands
that call out (they are synchronous: the server runs in a thread)."""

from __future__ import annotations

import contextlib
import http.server
import threading
from collections.abc import Iterator

from tests.service.conftest import pki_dir  # noqa: F401 - the development PKI, made once


@contextlib.contextmanager
def serve_in_thread(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    """``handler`` served on 127.0.0.1 at a free port: yields ``http://127.0.0.1:PORT``."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
