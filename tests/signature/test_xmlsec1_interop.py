"""Interoperability with the independent xmlsec1 command-line tool, both directions."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from hub.edxml import ns
from hub.edxml.parser import parse_package
from hub.signature.policy import CertBindings, Outcome, SignatureChecker, SignaturePolicy
from hub.signature.sign import sign_package
from hub.signature.trust import TrustStore
from tests.conftest import SENDER
from tests.edxml.samples import document_bytes

XMLSEC1 = shutil.which("xmlsec1")
pytestmark = pytest.mark.skipif(
    XMLSEC1 is None and os.environ.get("CI") != "true",
    reason="xmlsec1 CLI not installed (make test installs Debian's xmlsec1)",
)

TEMPLATE_SIGNATURE = f"""<Signature xmlns="{ns.DSIG}">
<SignedInfo>
<CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>
<SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"/>
<Reference URI="">
<Transforms>
<Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/>
<Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>
</Transforms>
<DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/>
<DigestValue/>
</Reference>
</SignedInfo>
<SignatureValue/>
<KeyInfo><X509Data><X509Certificate/></X509Data></KeyInfo>
</Signature>"""


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    assert XMLSEC1 is not None
    return subprocess.run([XMLSEC1, *args], check=False, capture_output=True, text=True, timeout=60)


def test_lienthong_signature_verifies_with_xmlsec1(dev_pki, tmp_path):
    signed = sign_package(
        document_bytes(sender=SENDER), dev_pki.agency.key_pem, dev_pki.agency.cert
    )
    (tmp_path / "signed.xml").write_bytes(signed)
    (tmp_path / "ca.pem").write_bytes(dev_pki.ca.cert_pem)
    ok = _run("--verify", "--trusted-pem", str(tmp_path / "ca.pem"), str(tmp_path / "signed.xml"))
    assert ok.returncode == 0, ok.stderr
    # And xmlsec1 agrees that a tampered copy is bad.
    (tmp_path / "bad.xml").write_bytes(signed.replace(b"V/v k", b"V/v K"))
    bad = _run("--verify", "--trusted-pem", str(tmp_path / "ca.pem"), str(tmp_path / "bad.xml"))
    assert bad.returncode != 0


def test_xmlsec1_signature_verifies_in_lienthong(dev_pki, tmp_path):
    template = document_bytes(sender=SENDER).replace(
        b"</edXML:TraceHeaderList>", b"</edXML:TraceHeaderList>" + TEMPLATE_SIGNATURE.encode()
    )
    (tmp_path / "template.xml").write_bytes(template)
    (tmp_path / "key.pem").write_bytes(dev_pki.agency.key_pem)
    (tmp_path / "cert.pem").write_bytes(dev_pki.agency.cert_pem)
    out = tmp_path / "signed.xml"
    res = _run(
        "--sign",
        "--privkey-pem",
        f"{tmp_path / 'key.pem'},{tmp_path / 'cert.pem'}",
        "--output",
        str(out),
        str(tmp_path / "template.xml"),
    )
    assert res.returncode == 0, res.stderr
    checker = SignatureChecker(
        TrustStore([dev_pki.ca.cert]), CertBindings.of({dev_pki.agency.fingerprint: [SENDER]})
    )
    parsed = parse_package(out.read_bytes())
    rec = checker.check(parsed, SignaturePolicy.REQUIRED, SENDER)
    assert rec.accepted and rec.outcome is Outcome.VALID, rec
    tampered = parse_package(out.read_bytes().replace(b"V/v k", b"V/v K"))
    assert (
        checker.check(tampered, SignaturePolicy.REQUIRED, SENDER).reason_code == "signature_invalid"
    )
