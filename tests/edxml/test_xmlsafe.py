"""Hostile and malformed input is refused with its own code; nothing hangs or grows."""

from __future__ import annotations

import resource
import time
from pathlib import Path

import pytest

from hub.edxml.parser import parse_package
from hub.edxml.xmlsafe import XmlLimits, read_xml
from hub.errors import MalformedXml, PackageTooLarge
from tests.edxml.samples import document_bytes


def _code(data: bytes, limits: XmlLimits | None = None) -> str:
    with pytest.raises((MalformedXml, PackageTooLarge)) as exc:
        read_xml(data, limits or XmlLimits())
    return exc.value.error_code


def test_xxe_external_entity_is_refused_and_never_read(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    data = (
        f'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file://{secret}">]><r>&x;</r>'
    ).encode()
    with pytest.raises(MalformedXml) as exc:
        read_xml(data)
    assert exc.value.error_code == "dtd_forbidden"
    assert "TOP-SECRET" not in str(exc.value.details) + exc.value.message


def test_billion_laughs_is_refused_quickly_without_expansion():
    lol = ['<!ENTITY l0 "lol">'] + [
        f'<!ENTITY l{i} "{("&l" + str(i - 1) + ";") * 10}">' for i in range(1, 10)
    ]
    data = f'<?xml version="1.0"?><!DOCTYPE r [{"".join(lol)}]><r>&l9;</r>'.encode()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    assert _code(data) == "dtd_forbidden"
    assert time.perf_counter() - start < 2.0
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50_000  # KiB


def test_plain_dtd_is_refused():
    assert _code(b'<?xml version="1.0"?><!DOCTYPE r SYSTEM "http://x/r.dtd"><r/>') == (
        "dtd_forbidden"
    )


def test_excessive_depth_is_refused():
    deep = b"<a>" * 100 + b"</a>" * 100
    assert _code(b'<?xml version="1.0"?>' + deep) == "xml_too_deep"


def test_depth_beyond_libxml2_limit_is_refused_as_too_deep():
    deep = b"<a>" * 5000 + b"</a>" * 5000
    assert _code(b'<?xml version="1.0"?>' + deep) == "xml_too_deep"


def test_oversized_input_is_refused_before_parsing():
    assert _code(b"<r>" + b"x" * 2000 + b"</r>", XmlLimits(max_bytes=1000)) == ("package_too_large")


def test_too_many_elements_is_refused_before_parsing():
    assert _code(b"<r>" + b"<e/>" * 500 + b"</r>", XmlLimits(max_elements=100)) == (
        "too_many_elements"
    )


def test_junk_before_the_declaration_is_refused_not_repaired():
    data = b"1212" + document_bytes()
    with pytest.raises(MalformedXml) as exc:
        parse_package(data)
    assert exc.value.error_code == "content_before_declaration"
    assert "1212" in exc.value.message


def test_whitespace_before_the_declaration_is_refused():
    assert _code(b"  \n" + document_bytes()) == "content_before_declaration"


def test_utf8_bom_is_accepted():
    assert read_xml(b"\xef\xbb\xbf" + document_bytes()).getroot() is not None


def test_undeclared_prefix_is_not_well_formed():
    data = b'<?xml version="1.0"?><edXML><edXML:edXMLEnvelope/></edXML>'
    assert _code(data) == "not_well_formed"


def test_truncated_document_reports_position():
    with pytest.raises(MalformedXml) as exc:
        read_xml(document_bytes()[:300])
    assert exc.value.error_code == "not_well_formed"
    assert exc.value.details["line"] > 0


def test_empty_input_is_refused():
    assert _code(b"") == "empty_package"


def test_non_utf8_encoding_is_refused():
    data = '<?xml version="1.0" encoding="ISO-8859-1"?><r>é</r>'.encode("latin-1")
    assert _code(data) == "unsupported_encoding"


def test_large_text_node_over_ten_megabytes_parses_within_limits():
    payload = b"QUFB" * (3 * 1024 * 1024)  # 12 MiB of base64 in one text node
    data = b'<?xml version="1.0"?><r><p>' + payload + b"</p></r>"
    tree = read_xml(data, XmlLimits(max_bytes=32 * 1024 * 1024))
    assert len(tree.getroot()[0].text or "") == len(payload)


def _file_code(tmp_path: Path, data: bytes, limits: XmlLimits | None = None) -> str:
    path = tmp_path / "spooled.xml"
    path.write_bytes(data)
    with pytest.raises((MalformedXml, PackageTooLarge)) as exc:
        read_xml(path, limits or XmlLimits())
    return exc.value.error_code


def test_a_spooled_file_gets_the_same_refusals_as_bytes(tmp_path: Path) -> None:
    """Large uploads are parsed from the file they were spooled to; every check that
    holds for bytes holds for the file, including across its read chunks."""
    good = document_bytes()
    cases = [
        (b"junk" + good, "content_before_declaration"),
        (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>', "dtd_forbidden"),
        (b"<edXML", "not_well_formed"),
        (b"", "empty_package"),
    ]
    for data, code in cases:
        assert (_file_code(tmp_path, data), _code(data)) == (code, code)
    # "<" counted across the 1 MB read chunks: 2.8 MB of tiny elements
    many = b'<?xml version="1.0"?><r>' + b"<a></a>" * 400_000 + b"</r>"
    assert _file_code(tmp_path, many, XmlLimits(max_elements=300_000)) == "too_many_elements"
    assert _file_code(tmp_path, good, XmlLimits(max_bytes=100)) == "package_too_large"
    # a prolog running past the first megabyte is refused, not left unchecked
    long_prolog = b'<?xml version="1.0"?>' + b"<!--" + b"x" * (1024 * 1024) + b"-->" + good[21:]
    assert _file_code(tmp_path, long_prolog) == "prolog_too_long"
    path = tmp_path / "ok.xml"
    path.write_bytes(good)
    assert read_xml(path).getroot().tag == read_xml(good).getroot().tag
    parsed = parse_package(path, sha256="ab" * 32)
    assert parsed.size == len(good) and parsed.data == b"" and parsed.sha256 == "ab" * 32
    with pytest.raises(ValueError, match="SHA-256"):
        parse_package(path)
