"""Allow-lists of XML-DSig algorithms. Anything not listed is refused."""

from __future__ import annotations

from typing import Final

import xmlsec

C14N_EXCL: Final = "http://www.w3.org/2001/10/xml-exc-c14n#"
C14N_INCL: Final = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"
C14N_11: Final = "http://www.w3.org/2006/12/xml-c14n11"
ENVELOPED: Final = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"

CANONICALIZATION: Final = frozenset({C14N_EXCL, C14N_INCL, C14N_11})
# The only transforms a reference may list: no XPath, no XSLT, no base64 tricks.
REFERENCE_TRANSFORMS: Final = frozenset({ENVELOPED, C14N_EXCL, C14N_INCL, C14N_11})

RSA_SHA1: Final = "http://www.w3.org/2000/09/xmldsig#rsa-sha1"
SIGNATURE_STRONG: Final = frozenset(
    {
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384",
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512",
        "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
        "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384",
        "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512",
    }
)
SHA1: Final = "http://www.w3.org/2000/09/xmldsig#sha1"
DIGEST_STRONG: Final = frozenset(
    {
        "http://www.w3.org/2001/04/xmlenc#sha256",
        "http://www.w3.org/2001/04/xmldsig-more#sha384",
        "http://www.w3.org/2001/04/xmlenc#sha512",
    }
)

T = xmlsec.constants
# Defence in depth: libxmlsec1 itself is told to run only these transforms.
XMLSEC_REFERENCE: Final = (
    T.TransformEnveloped,
    T.TransformExclC14N,
    T.TransformInclC14N,
    T.TransformInclC14N11,
    T.TransformSha256,
    T.TransformSha384,
    T.TransformSha512,
    T.TransformSha1,
)
XMLSEC_SIGNATURE: Final = (
    T.TransformExclC14N,
    T.TransformInclC14N,
    T.TransformInclC14N11,
    T.TransformRsaSha256,
    T.TransformRsaSha384,
    T.TransformRsaSha512,
    T.TransformEcdsaSha256,
    T.TransformEcdsaSha384,
    T.TransformEcdsaSha512,
    T.TransformRsaSha1,
)


def signature_allowed(uri: str, *, allow_sha1: bool) -> bool:
    return uri in SIGNATURE_STRONG or (allow_sha1 and uri == RSA_SHA1)


def digest_allowed(uri: str, *, allow_sha1: bool) -> bool:
    return uri in DIGEST_STRONG or (allow_sha1 and uri == SHA1)
