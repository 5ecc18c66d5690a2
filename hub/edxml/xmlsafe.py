"""Hardened XML reading for bytes that come from outside.

Every byte is hostile until proven otherwise: no DTDs, no entity expansion, no
network or file access, bounded size, element count and depth, nothing before
the XML declaration. Malformed input is refused with a precise error; it is
never "repaired".
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
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


def _prolog_has_doctype(data: bytes, start: int) -> bool:
    """Walk the prolog (declaration, comments, PIs, whitespace) up to the root element."""
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
    return False


def read_xml(data: bytes, limits: XmlLimits = DEFAULT_LIMITS) -> etree._ElementTree:
    """Parse untrusted bytes into a tree, or raise a ``MalformedXml`` with a code."""
    size = len(data)
    if size > limits.max_bytes:
        raise PackageTooLarge(
            f"package is {size} bytes; the limit is {limits.max_bytes}",
            details={"size": size, "limit": limits.max_bytes},
        )
    if size == 0:
        raise MalformedXml("the package is empty", code="empty_package")
    start = 3 if data.startswith(BOM) else 0
    if data[start : start + 1] != b"<":
        head = data[start : start + 16]
        raise MalformedXml(
            "bytes before the XML declaration; the package must start with '<?xml' "
            f"(found {head!r}); the sending software must not prepend anything",
            code="content_before_declaration",
            details={"first_bytes": head.hex()},
        )
    if _prolog_has_doctype(data, start):
        raise MalformedXml(
            "document type declarations (DTD) are not allowed in edXML packages",
            code="dtd_forbidden",
        )
    # Every element costs at least one '<'; counting them is a memchr-speed scan that
    # bounds the tree size before libxml2 allocates anything.
    tags = data.count(b"<")
    if tags > 2 * limits.max_elements + 64:
        raise MalformedXml(
            f"too many elements (about {tags // 2}); the limit is {limits.max_elements}",
            code="too_many_elements",
        )
    try:
        tree = etree.ElementTree(etree.fromstring(data, _parser(size > HUGE_TREE_ABOVE)))
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
