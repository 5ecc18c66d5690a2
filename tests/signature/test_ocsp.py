"""OCSP: the hub asks a signer's CA about the signer's certificate, believes only answers
the CA (or its delegate) signed about that certificate, current and answering the
question asked, and weighs them beside the CRL."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID

from adapters.ocsp_http import HttpOcspSource
from hub import pki
from hub.config import load
from hub.errors import ConfigError, OcspRefused, SignatureRefused
from hub.service.metrics import Metrics
from hub.service.ocsp_check import OcspChecker
from hub.signature.ocsp import OcspAnswers, build_request, ocsp_urls, read_response
from hub.signature.policy import SignatureEvidence
from hub.signature.trust import TrustStore, fingerprint
from hub.signature.verify import SignedBy
from tests.signature.ocsp_server import OcspServer, answer

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)  # as ASN.1 times hold it
HOUR = dt.timedelta(hours=1)
NONCE = b"0123456789abcdef"
REVOKED = ocsp.OCSPCertStatus.REVOKED


@pytest.fixture(scope="module")
def ca() -> pki.Issued:
    return pki.make_ca("OCSP test CA")


@pytest.fixture(scope="module")
def signer(ca: pki.Issued) -> pki.Issued:
    return pki.issue(ca, "signer", ocsp_urls=["http://ocsp.example/", "ldap://x.example/"])


def read(data: bytes, signer: pki.Issued, ca: pki.Issued, nonce: bytes | None = NONCE, crl=None):
    return read_response(data, signer.cert, ca.cert, nonce=nonce, now=NOW, max_age=HOUR, crl=crl)


def refusal(data: bytes, signer: pki.Issued, ca: pki.Issued, **kw) -> str:
    with pytest.raises(OcspRefused) as err:
        read(data, signer, ca, **kw)
    return err.value.error_code


# ------------------------------------------------------------------ reading an answer


def test_the_responder_address_comes_from_the_certificate(signer, ca):
    assert ocsp_urls(signer.cert) == ("http://ocsp.example/",)  # LDAP is never asked
    assert ocsp_urls(ca.cert) == ()
    request = ocsp.load_der_ocsp_request(build_request(signer.cert, ca.cert, NONCE))
    assert request.serial_number == signer.cert.serial_number
    assert request.extensions.get_extension_for_class(ocsp.x509.OCSPNonce).value.nonce == NONCE


def test_a_good_answer_signed_by_the_ca(signer, ca):
    got = read(answer(signer.cert, ca, nonce=NONCE), signer, ca)
    assert got.status == "good"
    assert got.issuer == fingerprint(ca.cert)
    assert got.responder == ca.cert.subject.rfc4514_string()
    assert got.fresh(NOW) and got.expires <= NOW + HOUR


def test_a_revoked_answer_says_when_and_why(signer, ca):
    got = read(answer(signer.cert, ca, status=REVOKED), signer, ca)
    assert got.status == "revoked"
    assert got.reason == "key_compromise" and got.revoked_at is not None


def test_a_delegate_the_ca_authorised_for_ocsp_may_answer(signer, ca):
    delegate = pki.issue(ca, "responder", eku=(ExtendedKeyUsageOID.OCSP_SIGNING,))
    got = read(answer(signer.cert, ca, signer=delegate), signer, ca)
    assert got.status == "good" and "responder" in got.responder


def test_a_delegate_on_its_cas_crl_may_not_answer_unless_the_ca_exempted_it(signer, ca):
    ocsp_eku = (ExtendedKeyUsageOID.OCSP_SIGNING,)
    delegate = pki.issue(ca, "responder", eku=ocsp_eku)
    exempt = pki.issue(ca, "exempt responder", eku=ocsp_eku, ocsp_nocheck=True)
    listed = pki.make_crl(ca, [delegate.cert, exempt.cert])
    # A current CRL not listing it: checked. None, or a stale one: believed, unchecked.
    unlisted = pki.make_crl(ca, [signer.cert])
    got = read(answer(signer.cert, ca, signer=delegate, status=REVOKED), signer, ca, crl=unlisted)
    assert got.status == "revoked" and got.responder_checked
    stale = pki.make_crl(ca, last_update=NOW - 3 * HOUR, next_update=NOW - HOUR)
    for crl in (None, stale):
        got = read(answer(signer.cert, ca, signer=delegate), signer, ca, crl=crl)
        assert got.status == "good" and not got.responder_checked
    # Listed: its answers are not believed, whatever they say.
    for status in (ocsp.OCSPCertStatus.GOOD, REVOKED):
        data = answer(signer.cert, ca, signer=delegate, status=status)
        assert refusal(data, signer, ca, crl=listed) == "ocsp_responder_revoked"
    # id-pkix-ocsp-nocheck: the CA said its revocation is not to be checked.
    for crl in (listed, None):
        got = read(answer(signer.cert, ca, signer=exempt), signer, ca, crl=crl)
        assert got.status == "good" and got.responder_checked
    # The CA answering itself is not checked against its own CRL.
    assert read(answer(signer.cert, ca), signer, ca, crl=listed).responder_checked


@pytest.mark.parametrize("who", ["no_ocsp_eku", "other_ca", "other_ca_itself"])
def test_nobody_else_may_answer(signer, ca, who):
    other = pki.make_ca("another CA")
    by = {
        "no_ocsp_eku": pki.issue(ca, "not a responder"),  # issued by the CA, but for signing
        "other_ca": pki.issue(other, "responder", eku=(ExtendedKeyUsageOID.OCSP_SIGNING,)),
        "other_ca_itself": None,
    }[who]
    if by is None:
        # Another CA answers in its own name about our signer (same serial, its key).
        data = answer(signer.cert, other, about_issuer=ca.cert)
        assert refusal(data, signer, ca) == "ocsp_responder_unauthorised"
        return
    assert refusal(answer(signer.cert, ca, signer=by), signer, ca) == "ocsp_responder_unauthorised"


def test_a_forged_answer_in_the_cas_name_is_refused(signer, ca):
    impostor = pki.make_ca("OCSP test CA")  # the CA's name, another key
    assert impostor.cert.subject == ca.cert.subject
    data = answer(signer.cert, ca, signer=impostor, by_name=True)
    assert refusal(data, signer, ca) == "ocsp_signature_invalid"


def test_an_answer_about_another_certificate_is_refused(signer, ca):
    other = pki.issue(ca, "someone else")
    assert refusal(answer(other.cert, ca), signer, ca) == "ocsp_wrong_certificate"


def test_the_nonce_must_be_ours_when_one_comes_back(signer, ca):
    assert refusal(answer(signer.cert, ca, nonce=b"x" * 16), signer, ca) == "ocsp_nonce_mismatch"
    # Responders that pre-produce their answers send none: judged by their times.
    assert read(answer(signer.cert, ca), signer, ca).status == "good"


def test_stale_and_future_answers_are_refused(signer, ca):
    lapsed = answer(signer.cert, ca, this_update=NOW - 3 * HOUR, next_update=NOW - HOUR)
    assert refusal(lapsed, signer, ca) == "ocsp_stale"
    future = answer(signer.cert, ca, this_update=NOW + HOUR)
    assert refusal(future, signer, ca) == "ocsp_stale"
    # Without nextUpdate an answer counts for max_age after it was made.
    old = answer(signer.cert, ca, this_update=NOW - 2 * HOUR, next_update=None)
    assert refusal(old, signer, ca) == "ocsp_stale"
    recent = read(answer(signer.cert, ca, this_update=NOW - HOUR / 2, next_update=None), signer, ca)
    assert recent.expires == NOW - HOUR / 2 + HOUR
    # A long-lived answer is asked again after max_age at the latest.
    week = answer(signer.cert, ca, next_update=NOW + dt.timedelta(days=7))
    assert read(week, signer, ca).expires == NOW + HOUR


def test_unsuccessful_and_unreadable_answers_are_refused(signer, ca):
    later = ocsp.OCSPResponseBuilder.build_unsuccessful(ocsp.OCSPResponseStatus.TRY_LATER)
    assert refusal(later.public_bytes(serialization.Encoding.DER), signer, ca) == (
        "ocsp_unsuccessful"
    )
    assert refusal(b"<html>captive portal</html>", signer, ca) == "ocsp_unreadable"
    assert refusal(b"\x30" * 70_000, signer, ca) == "ocsp_unreadable"


# ------------------------------------------------------------------ in the trust decision


def _trust(ca: pki.Issued, *, crl=None, require_crl=False) -> tuple[TrustStore, OcspAnswers]:
    answers = OcspAnswers()
    crls = [crl] if crl is not None else []
    return TrustStore([ca.cert], crls, require_crl=require_crl, ocsp=answers), answers


def test_a_good_answer_stands_in_for_a_missing_crl(signer, ca):
    trust, answers = _trust(ca, require_crl=True)
    with pytest.raises(SignatureRefused) as err:
        trust.validate(signer.cert)
    assert err.value.error_code == "revocation_unknown"
    answers.put(signer.fingerprint, read(answer(signer.cert, ca), signer, ca, nonce=None))
    assert trust.validate(signer.cert).revocation == "ocsp"


def test_an_unchecked_delegates_good_answer_does_not_stand_in_for_the_crl(signer, ca):
    delegate = pki.issue(ca, "responder", eku=(ExtendedKeyUsageOID.OCSP_SIGNING,))
    trust, answers = _trust(ca, require_crl=True)
    good = read(answer(signer.cert, ca, signer=delegate), signer, ca, nonce=None)
    answers.put(signer.fingerprint, good)
    with pytest.raises(SignatureRefused) as err:
        trust.validate(signer.cert)
    assert err.value.error_code == "revocation_unknown"
    # The same "good", from a responder that was checked: a new decision, which it carries.
    version = answers.version
    answers.put(signer.fingerprint, read(answer(signer.cert, ca), signer, ca, nonce=None))
    assert answers.version > version
    assert trust.validate(signer.cert).revocation == "ocsp"
    # Its "revoked" still refuses: believing it cannot let a revoked signer through.
    answers.put(
        signer.fingerprint,
        read(answer(signer.cert, ca, signer=delegate, status=REVOKED), signer, ca, nonce=None),
    )
    with pytest.raises(SignatureRefused) as err:
        trust.validate(signer.cert)
    assert err.value.error_code == "cert_revoked"


def test_a_good_answer_stands_in_for_a_stale_crl_but_not_for_a_revocation_on_it(signer, ca):
    stale = pki.make_crl(ca, last_update=NOW - 3 * HOUR, next_update=NOW - HOUR)
    trust, answers = _trust(ca, crl=stale)
    answers.put(signer.fingerprint, read(answer(signer.cert, ca), signer, ca, nonce=None))
    assert trust.validate(signer.cert).revocation == "ocsp"
    listed = pki.make_crl(ca, [signer.cert])
    trust, answers = _trust(ca, crl=listed)
    answers.put(signer.fingerprint, read(answer(signer.cert, ca), signer, ca, nonce=None))
    with pytest.raises(SignatureRefused) as err:
        trust.validate(signer.cert)
    assert err.value.error_code == "cert_revoked"


def test_a_revoked_answer_refuses_at_once_though_the_decision_was_cached(signer, ca):
    trust, answers = _trust(ca, crl=pki.make_crl(ca))
    assert trust.validate(signer.cert).revocation == "checked"  # cached for 300 s
    answers.put(signer.fingerprint, read(answer(signer.cert, ca, status=REVOKED), signer, ca))
    with pytest.raises(SignatureRefused) as err:
        trust.validate(signer.cert)
    assert err.value.error_code == "cert_revoked"
    assert "OCSP responder" in err.value.message


def test_an_answer_from_another_issuer_or_lapsed_is_not_used(signer, ca):
    trust, answers = _trust(ca, require_crl=True)
    good = read(answer(signer.cert, ca), signer, ca, nonce=None)
    answers.put(signer.fingerprint, good.__class__(**{**_fields(good), "issuer": "0" * 64}))
    with pytest.raises(SignatureRefused):
        trust.validate(signer.cert)
    lapsed = {**_fields(good), "expires": NOW - dt.timedelta(seconds=1)}
    answers.put(signer.fingerprint, good.__class__(**lapsed))
    with pytest.raises(SignatureRefused):
        trust.validate(signer.cert)


def _fields(a) -> dict:
    return {name: getattr(a, name) for name in a.__slots__}


def test_answers_are_bounded():
    a = OcspAnswers(limit=3)
    ca = pki.make_ca("bound CA")
    s = pki.issue(ca, "s")
    got = read_response(answer(s.cert, ca), s.cert, ca.cert, nonce=None, now=NOW, max_age=HOUR)
    for i in range(5):
        a.put(f"{i}", got)
    assert len(a) == 3 and a.get("0") is None and a.get("4") is got


# ------------------------------------------------------------------ asking the responder


def _evidence(*certs: pki.Issued) -> SignatureEvidence:
    # As X509Certificate elements carry them: base64 of the DER encoding.
    texts = tuple(
        base64.b64encode(c.cert.public_bytes(serialization.Encoding.DER)).decode() for c in certs
    )
    return SignatureEvidence("xmldsig", signed=SignedBy(texts, "rsa-sha256", "sha256", "exc-c14n"))


async def _checker(**kw) -> tuple[OcspChecker, OcspAnswers, Metrics, HttpOcspSource]:
    answers, metrics = OcspAnswers(), Metrics()
    source = HttpOcspSource(timeout_s=2.0)
    return OcspChecker(source, answers, metrics=metrics, **kw), answers, metrics, source


def _count(metrics: Metrics, result: str) -> float:
    return (
        metrics.registry.get_sample_value("lienthong_ocsp_requests_total", {"result": result}) or 0
    )


@dataclass
class Asked:
    ca: pki.Issued
    server: OcspServer
    signer: pki.Issued
    checker: OcspChecker
    answers: OcspAnswers
    metrics: Metrics

    def trust(self, *, crl: bool = False, revoked: tuple[pki.Issued, ...] = ()) -> TrustStore:
        crls = [pki.make_crl(self.ca, [r.cert for r in revoked])] if crl else []
        return TrustStore([self.ca.cert], crls, ocsp=self.answers)

    async def prepare(self, trust: TrustStore) -> None:
        await self.checker.prepare(_evidence(self.signer), trust)


@asynccontextmanager
async def _asked(
    server_kw: dict | None = None,
    issuer: pki.Issued | None = None,
    delegated: bool = False,
    **checker_kw,
) -> AsyncIterator[Asked]:
    """A CA with a responder (answering in the CA's name, or ``delegated`` to a certificate
    the CA issued for OCSP signing), a signer whose certificate names it, and the hub's
    checker."""
    ca = pki.make_ca("asked CA")
    responder_ca = issuer or ca
    delegate = (
        pki.issue(responder_ca, "responder", eku=(ExtendedKeyUsageOID.OCSP_SIGNING,))
        if delegated
        else None
    )
    async with OcspServer(responder_ca, delegate, **(server_kw or {})) as server:
        signer = pki.issue(responder_ca, "signer", ocsp_urls=[server.url])
        server.know(signer.cert)
        checker, answers, metrics, source = await _checker(**checker_kw)
        try:
            yield Asked(ca, server, signer, checker, answers, metrics)
        finally:
            await source.close()


async def test_the_hub_asks_once_for_many_packages_and_keeps_the_answer():
    async with _asked() as a:
        trust = a.trust()
        await asyncio.gather(*(a.prepare(trust) for _ in range(20)))
        await a.prepare(trust)
    assert len(a.server.requests) == 1
    assert a.answers.get(a.signer.fingerprint).status == "good"
    assert _count(a.metrics, "good") == 1
    assert trust.validate(a.signer.cert).revocation == "ocsp"


async def test_a_revocation_the_responder_knows_refuses_the_signer():
    async with _asked() as a:
        a.server.statuses[a.signer.cert.serial_number] = REVOKED
        trust = a.trust(crl=True)  # the CRL lists nothing
        await a.prepare(trust)
    assert _count(a.metrics, "revoked") == 1
    with pytest.raises(SignatureRefused) as err:
        trust.validate(a.signer.cert)
    assert err.value.error_code == "cert_revoked"


@pytest.mark.parametrize("listed", [True, False])
async def test_a_delegate_responder_the_cas_crl_lists_is_not_believed(listed):
    async with _asked(delegated=True) as a:
        a.server.statuses[a.signer.cert.serial_number] = REVOKED
        assert a.server.delegate is not None
        trust = a.trust(crl=True, revoked=(a.server.delegate,) if listed else ())
        await a.prepare(trust)
    assert len(a.server.requests) == 1
    if listed:  # its answer is refused: the CRL decides, and lists not the signer
        assert _count(a.metrics, "refused") == 1 and a.answers.get(a.signer.fingerprint) is None
        assert trust.validate(a.signer.cert).revocation == "checked"
        return
    assert _count(a.metrics, "revoked") == 1
    with pytest.raises(SignatureRefused) as err:
        trust.validate(a.signer.cert)
    assert err.value.error_code == "cert_revoked"


@pytest.mark.parametrize(
    ("http_status", "body", "result"),
    [(500, None, "failed"), (200, b"not OCSP", "refused"), (200, b"x" * 70_000, "failed")],
)
async def test_no_answer_to_believe_leaves_the_crl_to_decide_and_waits_before_asking_again(
    http_status, body, result
):
    async with _asked({"http_status": http_status, "body": body}, retry_s=3600.0) as a:
        trust = a.trust(crl=True)
        await a.prepare(trust)
        await a.prepare(trust)  # not asked again yet
    assert len(a.server.requests) == 1
    assert _count(a.metrics, result) == 1
    assert a.answers.get(a.signer.fingerprint) is None
    assert trust.validate(a.signer.cert).revocation == "checked"  # by the CRL


async def test_a_slow_responder_costs_at_most_the_timeout():
    async with _asked({"delay": 5.0}, timeout_s=0.3) as a:
        loop = asyncio.get_running_loop()
        start = loop.time()
        await a.prepare(a.trust())
        assert loop.time() - start < 2.0
    assert _count(a.metrics, "failed") == 1


async def test_nobody_is_asked_about_a_certificate_no_trusted_ca_issued():
    rogue = pki.make_ca("rogue CA")
    async with _asked(issuer=rogue) as a:
        await a.checker.prepare(_evidence(a.signer, rogue), a.trust())  # trusts a.ca only
    assert a.server.requests == []


async def test_an_answer_near_its_end_is_renewed_in_the_background():
    async with _asked() as a:
        now = dt.datetime.now(dt.UTC)
        held = read_response(
            answer(a.signer.cert, a.ca), a.signer.cert, a.ca.cert, nonce=None, now=now, max_age=HOUR
        )
        ending = held.__class__(
            **{**_fields(held), "received": now - HOUR, "expires": now + dt.timedelta(minutes=2)}
        )
        a.answers.put(a.signer.fingerprint, ending)
        await a.prepare(a.trust())  # uses the one held, asks meanwhile
        assert a.answers.get(a.signer.fingerprint) is ending
        await asyncio.gather(*a.checker._asking.values())
    assert len(a.server.requests) == 1
    assert a.answers.get(a.signer.fingerprint).expires > ending.expires


def test_the_request_uses_a_sha1_cert_id_as_responders_expect(signer, ca):
    request = ocsp.load_der_ocsp_request(build_request(signer.cert, ca.cert, NONCE))
    assert isinstance(request.hash_algorithm, hashes.SHA1)


def test_ocsp_is_on_by_default_and_its_settings_are_checked():
    assert load(None, env={}).trust.ocsp is True
    assert load(None, env={"LIENTHONG_TRUST_OCSP": "false"}).trust.ocsp is False
    for key in ("OCSP_TIMEOUT_S", "OCSP_MAX_AGE_S", "OCSP_RETRY_S"):
        with pytest.raises(ConfigError, match="must be positive"):
            load(None, env={f"LIENTHONG_TRUST_{key}": "0"})


async def test_a_question_that_goes_wrong_never_fails_the_package(monkeypatch):
    ca = pki.make_ca("faulty CA")
    signer = pki.issue(ca, "signer", ocsp_urls=["http://127.0.0.1:9/ocsp"])
    checker, answers, metrics, source = await _checker(retry_s=3600.0)

    async def broken(url: str, request: bytes) -> bytes:
        raise RuntimeError("a bug below")

    monkeypatch.setattr(source, "ask", broken)
    trust = TrustStore([ca.cert], [pki.make_crl(ca)], ocsp=answers)
    await checker.prepare(_evidence(signer), trust)  # does not raise
    assert _count(metrics, "failed") == 1 and not checker._may_ask(signer.fingerprint)
    assert trust.validate(signer.cert).revocation == "checked"
