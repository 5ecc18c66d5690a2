"""Signature verification: valid signatures pass; every refusal has its own code."""

from __future__ import annotations

import base64
import copy
import datetime as dt
import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID
from lxml import etree

from hub import pki
from hub.edxml import ns
from hub.edxml.parser import parse_package
from hub.errors import SignatureRefused
from hub.signature.policy import (
    CertBindings,
    Outcome,
    SignatureChecker,
    SignaturePolicy,
    enforce,
)
from hub.signature.sign import sign_package
from hub.signature.trust import TrustStore
from tests.conftest import SENDER, fixture_bytes
from tests.edxml.samples import document_bytes

DS = ns.DSIG
REQUIRED = SignaturePolicy.REQUIRED


def checker(dev_pki, *, crls=(), bindings=None, allow_sha1=False, require_crl=False):
    trust = TrustStore([dev_pki.ca.cert], list(crls), require_crl=require_crl)
    b = bindings or CertBindings.of({dev_pki.agency.fingerprint: [SENDER]})
    return SignatureChecker(trust, b, allow_sha1=allow_sha1)


def signed(dev_pki, issued=None, **kw):
    who = issued or dev_pki.agency
    return sign_package(document_bytes(sender=SENDER), who.key_pem, who.cert, **kw)


def outcome(dev_pki, data, policy=REQUIRED, **kw):
    return checker(dev_pki, **kw).check(parse_package(data), policy, SENDER)


def refused_with(dev_pki, data, **kw) -> str:
    rec = outcome(dev_pki, data, **kw)
    assert not rec.accepted and rec.outcome is Outcome.INVALID
    assert rec.reason_code is not None
    return rec.reason_code


def test_a_valid_signature_is_accepted_with_a_full_record(dev_pki):
    rec = outcome(dev_pki, signed(dev_pki), crls=[pki.make_crl(dev_pki.ca)])
    assert rec.accepted and rec.outcome is Outcome.VALID
    assert rec.cert_fingerprint == dev_pki.agency.fingerprint
    assert rec.signer_subject and "test agency G22" in rec.signer_subject
    assert rec.chain_fingerprints == (dev_pki.agency.fingerprint, dev_pki.ca.fingerprint)
    assert rec.revocation == "checked"
    assert rec.signature_method and rec.signature_method.endswith("rsa-sha256")


def test_verification_is_repeatable_from_cache(dev_pki):
    data = signed(dev_pki)
    assert all(outcome(dev_pki, data).accepted for _ in range(3))


def test_changed_byte_in_the_header_is_refused(dev_pki):
    data = signed(dev_pki).replace(b"Nguy\xe1\xbb\x85n V\xc4\x83n A", b"Nguyen Van B")
    assert refused_with(dev_pki, data) == "signature_invalid"


def test_changed_byte_in_an_attachment_is_refused(dev_pki):
    data = signed(dev_pki)
    i = data.index(b"</edXML:ContentTransferEncoded>") - 6
    tampered = data[:i] + (b"B" if data[i : i + 1] != b"B" else b"C") + data[i + 1 :]
    assert refused_with(dev_pki, tampered) == "signature_invalid"


def _tree(data: bytes) -> etree._Element:
    return etree.fromstring(data)


def _bytes(root: etree._Element) -> bytes:
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def test_wrapping_signature_moved_out_of_the_header_is_refused(dev_pki):
    root = _tree(signed(dev_pki))
    sig = root.find(f".//{{{DS}}}Signature")
    root.find(ns.q("AttachmentEncoded")).append(sig)
    assert refused_with(dev_pki, _bytes(root)) == "signature_misplaced"


def test_wrapping_signed_element_moved_under_a_new_root_is_refused(dev_pki):
    # Sign with a reference to the root's id, then wrap the signed original inside a
    # forged package: the reference still resolves to the (moved) signed element.
    base = _tree(document_bytes(sender=SENDER))
    base.set("Id", "pkg")
    original = _tree(sign_package(_bytes(base), dev_pki.agency.key_pem, dev_pki.agency.cert))
    sig = original.find(f".//{{{DS}}}Signature")
    sig.find(f"{{{DS}}}SignedInfo/{{{DS}}}Reference").set("URI", "#pkg")
    forged = _tree(document_bytes(sender=SENDER).replace(b"V/v k", b"FORGED k"))
    forged.find(f"{ns.q('edXMLEnvelope')}/{ns.q('edXMLHeader')}").append(copy.deepcopy(sig))
    forged.find(ns.q("AttachmentEncoded")).append(original)
    code = refused_with(dev_pki, _bytes(forged))
    assert code in {"signature_multiple", "reference_not_whole_document"}
    # And with the inner signature removed, the id reference is what gives it away.
    inner = forged.find(f"{ns.q('AttachmentEncoded')}/{ns.q('edXML')}")
    inner_sig = inner.find(f".//{{{DS}}}Signature")
    inner_sig.getparent().remove(inner_sig)
    assert refused_with(dev_pki, _bytes(forged)) == "reference_not_whole_document"


def test_wrapping_second_element_with_the_same_id_is_refused(dev_pki):
    base = _tree(document_bytes(sender=SENDER))
    base.set("Id", "pkg")
    signed_root = _tree(sign_package(_bytes(base), dev_pki.agency.key_pem, dev_pki.agency.cert))
    signed_root.find(f".//{{{DS}}}Reference").set("URI", "#pkg")
    dup = etree.SubElement(signed_root.find(ns.q("AttachmentEncoded")), "Evil")
    dup.set("Id", "pkg")
    assert refused_with(dev_pki, _bytes(signed_root)) == "duplicate_id"


def test_reference_to_a_sub_element_only_is_refused(dev_pki):
    root = _tree(signed(dev_pki))
    root.find(f".//{ns.q('MessageHeader')}").set("Id", "mh")
    root.find(f".//{{{DS}}}Reference").set("URI", "#mh")
    assert refused_with(dev_pki, _bytes(root)) == "reference_not_whole_document"


def test_a_second_signature_is_refused(dev_pki):
    root = _tree(signed(dev_pki))
    header = root.find(f".//{ns.q('edXMLHeader')}")
    header.append(copy.deepcopy(root.find(f".//{{{DS}}}Signature")))
    assert refused_with(dev_pki, _bytes(root)) == "signature_multiple"


def test_external_reference_is_refused(dev_pki):
    root = _tree(signed(dev_pki))
    root.find(f".//{{{DS}}}Reference").set("URI", "http://attacker.invalid/doc.xml")
    assert refused_with(dev_pki, _bytes(root)) == "reference_external"


def test_xpath_or_xslt_transform_is_refused(dev_pki):
    root = _tree(signed(dev_pki))
    transforms = root.find(f".//{{{DS}}}Transforms")
    t = etree.SubElement(transforms, f"{{{DS}}}Transform")
    t.set("Algorithm", "http://www.w3.org/TR/1999/REC-xslt-19991116")
    assert refused_with(dev_pki, _bytes(root)) == "transform_forbidden"


def test_object_in_signature_is_refused(dev_pki):
    root = _tree(signed(dev_pki))
    etree.SubElement(root.find(f".//{{{DS}}}Signature"), f"{{{DS}}}Object").text = "x"
    assert refused_with(dev_pki, _bytes(root)) == "signature_object_forbidden"


def test_sha1_downgrade_is_refused_unless_a_legacy_policy_allows_it(dev_pki):
    data = signed(dev_pki, digest="sha1")
    assert refused_with(dev_pki, data) == "algorithm_forbidden"
    assert outcome(dev_pki, data, allow_sha1=True).accepted


def test_algorithm_swapped_in_signed_info_is_refused(dev_pki):
    root = _tree(signed(dev_pki))
    root.find(f".//{{{DS}}}SignatureMethod").set(
        "Algorithm", "http://www.w3.org/2001/04/xmldsig-more#hmac-sha256"
    )
    assert refused_with(dev_pki, _bytes(root)) == "algorithm_forbidden"


def test_expired_certificate_is_refused(dev_pki):
    now = dt.datetime.now(dt.UTC)
    old = pki.issue(
        dev_pki.ca,
        "expired",
        not_before=now - dt.timedelta(days=30),
        not_after=now - dt.timedelta(days=1),
    )
    b = CertBindings.of({old.fingerprint: [SENDER]})
    assert refused_with(dev_pki, signed(dev_pki, old), bindings=b) == "cert_expired"


def test_not_yet_valid_certificate_is_refused(dev_pki):
    now = dt.datetime.now(dt.UTC)
    future = pki.issue(
        dev_pki.ca,
        "future",
        not_before=now + dt.timedelta(days=1),
        not_after=now + dt.timedelta(days=30),
    )
    b = CertBindings.of({future.fingerprint: [SENDER]})
    assert refused_with(dev_pki, signed(dev_pki, future), bindings=b) == "cert_not_yet_valid"


def test_untrusted_certificate_is_refused(dev_pki):
    rogue_ca = pki.make_ca("rogue CA")
    rogue = pki.issue(rogue_ca, "test agency G22")
    b = CertBindings.of({rogue.fingerprint: [SENDER]})
    assert refused_with(dev_pki, signed(dev_pki, rogue), bindings=b) == "cert_untrusted"


def test_certificate_chaining_through_an_intermediate_is_accepted(dev_pki):
    inter = pki.make_ca("intermediate", parent=dev_pki.ca)
    leaf = pki.issue(inter, "agency via intermediate")
    data = signed(dev_pki, leaf, chain=[inter.cert])
    b = CertBindings.of({leaf.fingerprint: [SENDER]})
    rec = outcome(dev_pki, data, bindings=b)
    assert rec.accepted and len(rec.chain) == 3
    # Without the intermediate in KeyInfo the chain cannot be built.
    assert refused_with(dev_pki, signed(dev_pki, leaf), bindings=b) == "cert_untrusted"


def test_revoked_certificate_is_refused(dev_pki):
    victim = pki.issue(dev_pki.ca, "revoked agency")
    crl = pki.make_crl(dev_pki.ca, [victim.cert])
    b = CertBindings.of({victim.fingerprint: [SENDER]})
    assert refused_with(dev_pki, signed(dev_pki, victim), crls=[crl], bindings=b) == "cert_revoked"


def test_stale_crl_makes_revocation_unknown(dev_pki):
    now = dt.datetime.now(dt.UTC)
    stale = pki.make_crl(
        dev_pki.ca, last_update=now - dt.timedelta(days=10), next_update=now - dt.timedelta(days=1)
    )
    assert refused_with(dev_pki, signed(dev_pki), crls=[stale]) == "revocation_unknown"


def test_crl_required_but_missing(dev_pki):
    assert refused_with(dev_pki, signed(dev_pki), require_crl=True) == "revocation_unknown"
    assert outcome(dev_pki, signed(dev_pki)).revocation == "no_crl"


def test_crl_signed_by_another_key_is_ignored(dev_pki):
    impostor = pki.make_ca("test CA")  # same name, different key
    forged_crl = pki.make_crl(impostor, [dev_pki.agency.cert])
    assert outcome(dev_pki, signed(dev_pki), crls=[forged_crl]).accepted


def test_wrong_key_usage_is_refused(dev_pki):
    enc = pki.issue(dev_pki.ca, "encryption only", key_usage=pki.ENCIPHERMENT_ONLY)
    b = CertBindings.of({enc.fingerprint: [SENDER]})
    assert refused_with(dev_pki, signed(dev_pki, enc), bindings=b) == "cert_key_usage"


def test_wrong_extended_key_usage_is_refused(dev_pki):
    tls = pki.issue(dev_pki.ca, "tls server", eku=[ExtendedKeyUsageOID.SERVER_AUTH])
    b = CertBindings.of({tls.fingerprint: [SENDER]})
    assert refused_with(dev_pki, signed(dev_pki, tls), bindings=b) == "cert_key_usage"


def test_certificate_bound_to_another_organ_is_refused(dev_pki):
    data = signed(dev_pki, dev_pki.other)  # valid, trusted, but bound to another organ
    b = CertBindings.of(
        {dev_pki.other.fingerprint: ["000.00.00.H53"], dev_pki.agency.fingerprint: [SENDER]}
    )
    rec = outcome(dev_pki, data, bindings=b)
    assert rec.reason_code == "cert_not_bound" and rec.cert_fingerprint == dev_pki.other.fingerprint


def test_binding_by_subject(dev_pki):
    subject = dev_pki.agency.cert.subject.rfc4514_string()
    assert outcome(
        dev_pki, signed(dev_pki), bindings=CertBindings.of(subjects={subject: [SENDER]})
    ).accepted


def test_certificate_missing_or_garbage(dev_pki):
    root = _tree(signed(dev_pki))
    cert = root.find(f".//{{{DS}}}X509Certificate")
    cert.text = "MIIFqTCCBJG"
    assert refused_with(dev_pki, _bytes(root)) == "certificate_invalid"
    cert.getparent().remove(cert)
    assert refused_with(dev_pki, _bytes(root)) == "certificate_missing"


def test_certificate_swapped_for_another_trusted_one_is_refused(dev_pki):
    root = _tree(signed(dev_pki))

    der = dev_pki.other.cert.public_bytes(serialization.Encoding.DER)
    root.find(f".//{{{DS}}}X509Certificate").text = base64.b64encode(der).decode()
    assert refused_with(dev_pki, _bytes(root)) == "signature_invalid"


# --- policies --------------------------------------------------------------------


@pytest.mark.parametrize("name", ["edoc_new.edxml", "sdk_built_edoc_dc0bdef0.edxml"])
def test_sdk_placeholders_are_reported_as_placeholders(dev_pki, name):
    parsed = parse_package(fixture_bytes(name))
    c = checker(dev_pki)
    lenient = c.check(parsed, SignaturePolicy.IF_PRESENT, parsed.package.from_.organ_id)
    assert lenient.accepted and lenient.outcome is Outcome.PLACEHOLDER
    strict = c.check(parsed, REQUIRED, parsed.package.from_.organ_id)
    assert not strict.accepted and strict.outcome is Outcome.PLACEHOLDER
    assert strict.reason_code == "signature_placeholder"
    with pytest.raises(SignatureRefused) as exc:
        enforce(strict)
    assert exc.value.error_code == "signature_placeholder"


def test_dotnet_digital_signature_placeholder(dev_pki):
    data = document_bytes().replace(
        b"</edXML:TraceHeaderList>", b"</edXML:TraceHeaderList><edXML:DigitalSignature/>"
    )
    assert parse_package(data).signature_form == "placeholder"


def test_unsigned_package_under_each_policy(dev_pki):
    parsed = parse_package(document_bytes())
    c = checker(dev_pki)
    assert c.check(parsed, REQUIRED, SENDER).reason_code == "signature_missing"
    assert c.check(parsed, SignaturePolicy.IF_PRESENT, SENDER).outcome is Outcome.ABSENT
    assert c.check(parsed, SignaturePolicy.OFF, SENDER).outcome is Outcome.UNCHECKED


def test_if_present_still_refuses_a_bad_real_signature(dev_pki):
    data = signed(dev_pki).replace(b"Nguy\xe1\xbb\x85n V\xc4\x83n A", b"Nguyen Van B")
    rec = outcome(dev_pki, data, policy=SignaturePolicy.IF_PRESENT)
    assert not rec.accepted and rec.reason_code == "signature_invalid"


def test_off_accepts_even_a_broken_signature(dev_pki):
    data = signed(dev_pki).replace(b"Nguy\xe1\xbb\x85n V\xc4\x83n A", b"Nguyen Van B")
    assert outcome(dev_pki, data, policy=SignaturePolicy.OFF).outcome is Outcome.UNCHECKED


def test_record_is_json_ready(dev_pki):

    rec = outcome(dev_pki, signed(dev_pki))
    assert json.loads(json.dumps(rec.as_dict()))["outcome"] == "valid"


def test_signature_moved_elsewhere_is_not_mistaken_for_unsigned(dev_pki):
    root = _tree(signed(dev_pki))
    root.find(ns.q("AttachmentEncoded")).append(root.find(f".//{{{DS}}}Signature"))
    rec = outcome(dev_pki, _bytes(root), policy=SignaturePolicy.IF_PRESENT)
    assert not rec.accepted and rec.reason_code == "signature_misplaced"
