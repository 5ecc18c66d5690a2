"""Small packages built in tests (the SDK samples are used where they exist)."""

from __future__ import annotations

from hub.edxml.demo import TS, document, document_bytes, status

__all__ = ["TS", "document", "document_bytes", "status"]
