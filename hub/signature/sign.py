"""Sign an edXML package: enveloped, exclusive C14N, RSA-SHA256, certificate in X509Data.

Used by the CLI and by tests and demos; the hub never signs (or rewrites) packages
it routes.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence

import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from lxml import etree

from hub.edxml import ns
from hub.edxml.xmlsafe import DEFAULT_LIMITS, XmlLimits, read_xml
from hub.errors import InputError


def sign_package(
    data: bytes,
    key_pem: bytes,
    cert: x509.Certificate,
    chain: Sequence[x509.Certificate] = (),
    *,
    limits: XmlLimits = DEFAULT_LIMITS,
    digest: str = "sha256",
) -> bytes:
    """Return new package bytes carrying an enveloped signature over the whole document.

    A placeholder ``Signature``/``DigitalSignature`` in the edXML namespace (the SDK's
    dummy) is removed first; an existing XML-DSig signature is an error.
    """
    tree = read_xml(data, limits)
    root = tree.getroot()
    header = root.find(f"{ns.q('edXMLEnvelope')}/{ns.q('edXMLHeader')}")
    if header is None:
        raise InputError("no edXMLEnvelope/edXMLHeader to sign", code="not_edxml")
    if root.find(f".//{{{ns.DSIG}}}Signature") is not None:
        raise InputError("the package is already signed", code="already_signed")
    for placeholder in header.findall(ns.q("Signature")) + header.findall(ns.q("DigitalSignature")):
        header.remove(placeholder)

    sign_t, digest_t = {
        "sha256": (xmlsec.constants.TransformRsaSha256, xmlsec.constants.TransformSha256),
        "sha512": (xmlsec.constants.TransformRsaSha512, xmlsec.constants.TransformSha512),
        # Only to build legacy test material; the verifier refuses it by default.
        "sha1": (xmlsec.constants.TransformRsaSha1, xmlsec.constants.TransformSha1),
    }[digest]
    sig = xmlsec.template.create(root, xmlsec.constants.TransformExclC14N, sign_t)
    header.append(sig)
    ref = xmlsec.template.add_reference(sig, digest_t, uri="")
    xmlsec.template.add_transform(ref, xmlsec.constants.TransformEnveloped)
    xmlsec.template.add_transform(ref, xmlsec.constants.TransformExclC14N)
    key_info = xmlsec.template.ensure_key_info(sig)
    x509_data = xmlsec.template.add_x509_data(key_info)
    xmlsec.template.x509_data_add_certificate(x509_data)

    key = xmlsec.Key.from_memory(key_pem, xmlsec.constants.KeyDataFormatPem)
    key.load_cert_from_memory(
        cert.public_bytes(serialization.Encoding.PEM), xmlsec.constants.KeyDataFormatCertPem
    )
    ctx = xmlsec.SignatureContext()
    ctx.key = key
    ctx.sign(sig)
    # Intermediates travel in KeyInfo (not covered by the signature, as usual).
    for extra in chain:
        el = etree.SubElement(x509_data, f"{{{ns.DSIG}}}X509Certificate")
        el.text = _b64(extra)
    out: bytes = etree.tostring(tree, xml_declaration=True, encoding="UTF-8")
    return out


def _b64(cert: x509.Certificate) -> str:
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode("ascii")
