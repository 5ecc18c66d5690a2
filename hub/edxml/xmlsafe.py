"""Hardened XML reading for bytes that come from outside.

Every byte is hostile until proven otherwise: no DTDs, no entity expansion, no
network or file access, bounded size, element count and depth, nothing before
the XML declaration. Malformed input is refused with a precise error; it is
never "repaired".
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from lxml import etree

from hub.errors import MalformedXml, PackageTooLarge

BOM: Final = b"\xef\xbb\xbf"
# libxml2 refuses text nodes over 10 MB unless XML_PARSE_HUGE is set; only then do
# we need it, and our own limits below still hold with it.
HUGE_TREE_ABOVE: Final = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class XmlLimits:
    """Structural limits applied before and while parsing."""

    max_bytes: int = 64 * 1024 * 1024
    max_elements: int = 200_000
    max_depth: int = 48

    def __post_init__(self) -> None:
        if self.max_bytes <= 0 or self.max_elements <= 0 or self.max_depth <= 0:
            raise ValueError("XML limits must be positive")


DEFAULT_LIMITS: Final = XmlLimits()

_local = threading.local()


def _parser(huge: bool) -> etree.XMLParser:
    # lxml parsers are not thread-safe but are reusable within one thread.
    attr = "huge" if huge else "normal"
    parser: etree.XMLParser | None = getattr(_local, attr, None)
    if parser is None:
        parser = etree.XMLParser(
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            dtd_validation=False,
            huge_tree=huge,
            recover=False,
            remove_blank_text=False,
            collect_ids=False,
        )
        setattr(_local, attr, parser)
    return parser


_depth_probes: dict[int, etree.XPath] = {}


def _deeper_than(root: etree._Element, depth: int) -> bool:
    probe = _depth_probes.get(depth)
    if probe is None:
        # "/*/*/...": is there any element at depth+1? Evaluated in C, stops early.
        probe = etree.XPath("boolean(/*" + "/*" * depth + ")")
        _depth_probes[depth] = probe
    return bool(probe(root))


def _prolog_has_doctype(data: bytes, start: int, *, complete: bool = True) -> bool:
    """Walk the prolog (declaration, comments, PIs, whitespace) up to the root element.

    ``complete=False``: ``data`` is only the head of a larger file; a prolog that runs
    past it is refused rather than left unchecked."""
    i, n = start, len(data)
    while i < n:
        if data[i] in b" \t\r\n":
            i += 1
        elif data.startswith(b"<?", i):
            end = data.find(b"?>", i + 2)
            i = n if end < 0 else end + 2
        elif data.startswith(b"<!--", i):
            end = data.find(b"-->", i + 4)
            i = n if end < 0 else end + 3
        else:
            return data.startswith(b"<!", i)  # <!DOCTYPE (or another declaration)
    if not complete:
        raise MalformedXml(
            f"no root element within the first {len(data)} bytes (an overlong prolog)",
            code="prolog_too_long",
        )
    return False


_HEAD = 1024 * 1024  # of a spooled file: where the prolog must end
_SCAN = 1024 * 1024  # chunk size for counting '<' in a spooled file


def read_xml(data: bytes | Path, limits: XmlLimits = DEFAULT_LIMITS) -> etree._ElementTree:
    """Parse untrusted bytes, or a file they were spooled to, into a tree; or raise a
    ``MalformedXml`` with a code. A file is parsed as it is read: its bytes are never
    held in memory whole, only the tree is."""
    if isinstance(data, Path):
        with data.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            _check_size(size, limits)
            head = f.read(_HEAD)
            tags = _prechecks(head, limits, complete=len(head) == size)
            del head  # not held while the rest is scanned and the tree is built
            while chunk := f.read(_SCAN):
                tags += chunk.count(b"<")
            _check_tags(tags, limits)
            f.seek(0)
            return _parse(lambda parser: etree.parse(f, parser), size, limits)
    size = len(data)
    _check_size(size, limits)
    _check_tags(_prechecks(data, limits, complete=True), limits)
    return _parse(lambda parser: etree.ElementTree(etree.fromstring(data, parser)), size, limits)


def _check_size(size: int, limits: XmlLimits) -> None:
    if size > limits.max_bytes:
        raise PackageTooLarge(
            f"package is {size} bytes; the limit is {limits.max_bytes}",
            details={"size": size, "limit": limits.max_bytes},
        )
    if size == 0:
        raise MalformedXml("the package is empty", code="empty_package")


def _prechecks(data: bytes, limits: XmlLimits, *, complete: bool) -> int:
    """Junk before the declaration, a DTD in the prolog; returns the count of '<'."""
    start = 3 if data.startswith(BOM) else 0
    if data[start : start + 1] != b"<":
        head = data[start : start + 16]
        raise MalformedXml(
            "bytes before the XML declaration; the package must start with '<?xml' "
            f"(found {head!r}); the sending software must not prepend anything",
            code="content_before_declaration",
            details={"first_bytes": head.hex()},
        )
    if _prolog_has_doctype(data, start, complete=complete):
        raise MalformedXml(
            "document type declarations (DTD) are not allowed in edXML packages",
            code="dtd_forbidden",
        )
    return data.count(b"<")


def _check_tags(tags: int, limits: XmlLimits) -> None:
    # Every element costs at least one '<'; counting them is a memchr-speed scan that
    # bounds the tree size before libxml2 allocates anything.
    if tags > 2 * limits.max_elements + 64:
        raise MalformedXml(
            f"too many elements (about {tags // 2}); the limit is {limits.max_elements}",
            code="too_many_elements",
        )


def _parse(
    run: Callable[[etree.XMLParser], etree._ElementTree], size: int, limits: XmlLimits
) -> etree._ElementTree:
    try:
        tree = run(_parser(size > HUGE_TREE_ABOVE))
    except etree.XMLSyntaxError as exc:
        msg = str(exc)
        code = "xml_too_deep" if "depth" in msg.lower() else "not_well_formed"
        line, col = exc.position if exc.position else (0, 0)
        raise MalformedXml(
            f"the package is not well-formed XML: {msg}",
            code=code,
            details={"line": line, "column": col},
        ) from exc
    docinfo = tree.docinfo
    # Belt and braces: the prolog scan above already refused any DOCTYPE.
    if getattr(docinfo, "doctype", ""):
        raise MalformedXml(
            "document type declarations (DTD) are not allowed in edXML packages",
            code="dtd_forbidden",
        )
    encoding = (docinfo.encoding or "UTF-8").upper().replace("_", "-")
    if encoding not in ("UTF-8", "UTF8"):
        raise MalformedXml(
            f"the package is encoded as {docinfo.encoding}; only UTF-8 is accepted "
            "(agency SDKs corrupt other encodings on download)",
            code="unsupported_encoding",
        )
    root = tree.getroot()
    if _deeper_than(root, limits.max_depth):
        raise MalformedXml(
            f"elements are nested deeper than {limits.max_depth} levels",
            code="xml_too_deep",
        )
    return tree
