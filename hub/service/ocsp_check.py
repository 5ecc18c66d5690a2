"""The hub asks a signer's CA whether the signer's certificate is revoked (OCSP).

CRLs are published every few hours to days; a CA's OCSP responder knows of a revocation
at once. With ``[trust] ocsp`` on (the default), before the trust decision on a package
whose signature matched, the intake calls ``OcspChecker.prepare``. When the signer's
certificate names an OCSP responder (its Authority Information Access, http or https)
and no current answer is held for it, the hub asks, and keeps the answer it believes
(``hub/signature/ocsp.py``) in ``OcspAnswers``, which the trust store consults beside the
CRL. So the first package of a signer waits for one answer (at most
``ocsp_timeout_s``); the following ones use it until it lapses (its ``nextUpdate``, at
most ``ocsp_max_age_s`` after it was made). An answer in its last tenth of life is renewed
in the background, and the packages meanwhile use the one held.

Only certificates that chain to a trusted CA are asked about (the chain is built first),
so a package cannot make the hub send requests to an address of its own choosing. Each
certificate has one question in flight at a time, whatever the number of packages
waiting for it. A responder that cannot be reached, answers an error, or gives an answer
not to believe is tried again only after ``ocsp_retry_s``: meanwhile the CRL decides, as
it does for certificates without a responder. Every question counts in
``lienthong_ocsp_requests_total{result}`` and is an ``ocsp_check`` log line.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import time
from collections import OrderedDict
from collections.abc import Coroutine, Sequence
from typing import Any

import structlog
from cryptography import x509

from hub.config import TrustConfig
from hub.errors import HubError, OcspRefused, SignatureRefused
from hub.ports import OcspSource
from hub.service.metrics import Metrics
from hub.signature.ocsp import OcspAnswer, OcspAnswers, build_request, ocsp_urls, read_response
from hub.signature.policy import SignatureEvidence
from hub.signature.trust import TrustStore, fingerprint
from hub.signature.verify import signer_certificates

log = structlog.get_logger(__name__)

_MAX_URLS = 2  # responders asked per question, in the certificate's order
_MAX_FAILED = 4096  # certificates remembered as recently failed


class OcspChecker:
    def __init__(
        self,
        source: OcspSource,
        answers: OcspAnswers,
        *,
        timeout_s: float = 5.0,
        max_age_s: float = 3600.0,
        retry_s: float = 60.0,
        metrics: Metrics | None = None,
    ) -> None:
        self.source = source
        self.answers = answers
        self.timeout_s = timeout_s
        self.max_age = dt.timedelta(seconds=max_age_s)
        self.retry_s = retry_s
        self.metrics = metrics
        self._asking: dict[str, asyncio.Task[None]] = {}
        self._failed: OrderedDict[str, float] = OrderedDict()  # fingerprint -> retry after

    @classmethod
    def configured(
        cls, t: TrustConfig, source: OcspSource, answers: OcspAnswers, metrics: Metrics
    ) -> OcspChecker:
        return cls(
            source,
            answers,
            timeout_s=t.ocsp_timeout_s,
            max_age_s=t.ocsp_max_age_s,
            retry_s=t.ocsp_retry_s,
            metrics=metrics,
        )

    async def prepare(self, evidence: SignatureEvidence, trust: TrustStore) -> None:
        """Make sure a current answer about the signer is held, when it can be had."""
        if evidence.signed is None or evidence.refusal is not None:
            return
        try:
            leaf, others = signer_certificates(evidence.signed)
        except SignatureRefused:
            return  # the trust decision says why
        if not ocsp_urls(leaf):
            return  # no responder to ask (most certificates today): nothing more to look up
        key = fingerprint(leaf)
        now = dt.datetime.now(dt.UTC)
        held = self.answers.get(key)
        if held is not None and held.fresh(now):
            if _due(held, now) and key not in self._asking and self._may_ask(key):
                self._start(key, leaf, others, trust)  # renewed meanwhile, not waited for
            return
        if not self._may_ask(key):
            return
        task = self._asking.get(key) or self._start(key, leaf, others, trust)
        await asyncio.shield(task)  # a caller that goes away leaves the question asked

    async def close(self) -> None:
        for task in list(self._asking.values()):
            task.cancel()
        await asyncio.gather(*self._asking.values(), return_exceptions=True)

    def _may_ask(self, key: str) -> bool:
        after = self._failed.get(key)
        return after is None or time.monotonic() >= after

    def _start(
        self,
        key: str,
        leaf: x509.Certificate,
        others: Sequence[x509.Certificate],
        trust: TrustStore,
    ) -> asyncio.Task[None]:
        question = self._question(key, leaf, others, trust)
        task = asyncio.create_task(self._ask(key, question), name="ocsp-ask")
        self._asking[key] = task
        task.add_done_callback(lambda _: self._asking.pop(key, None))
        return task

    async def _ask(self, key: str, question: Coroutine[Any, Any, None]) -> None:
        """Never raises: a question that goes wrong leaves the CRL to decide."""
        try:
            await question
        except Exception as exc:  # no package may fail for it
            self._count("failed")
            self._fail(key)
            log.exception("ocsp_check_error", cert=key, error=str(exc))

    async def _question(
        self,
        key: str,
        leaf: x509.Certificate,
        others: Sequence[x509.Certificate],
        trust: TrustStore,
    ) -> None:
        now = dt.datetime.now(dt.UTC)
        try:
            chain = trust.chain(leaf, others, now)
        except SignatureRefused:
            return  # not trusted: nobody is asked about it
        if len(chain) < 2:
            return  # a trusted CA's own certificate
        issuer = chain[1]
        bound = log.bind(cert=key, subject=leaf.subject.rfc4514_string())
        deadline = asyncio.get_running_loop().time() + self.timeout_s  # the whole question
        for url in ocsp_urls(leaf)[:_MAX_URLS]:
            nonce = os.urandom(16)
            try:
                async with asyncio.timeout_at(deadline):
                    data = await self.source.ask(url, build_request(leaf, issuer, nonce))
                answer = read_response(
                    data,
                    leaf,
                    issuer,
                    nonce=nonce,
                    now=dt.datetime.now(dt.UTC),
                    max_age=self.max_age,
                    crl=trust.crl_for(issuer),
                )
            except OcspRefused as exc:
                self._count("refused")
                bound.warning(
                    "ocsp_check", url=url, result="refused", code=exc.error_code, error=exc.message
                )
            except (HubError, TimeoutError) as exc:
                code = exc.error_code if isinstance(exc, HubError) else "ocsp_timeout"
                self._count("failed")
                bound.warning("ocsp_check", url=url, result="failed", code=code, error=str(exc))
            else:
                self.answers.put(key, answer)
                self._failed.pop(key, None)
                self._count(answer.status)
                bound.info(
                    "ocsp_check",
                    url=url,
                    result=answer.status,
                    this_update=answer.this_update.isoformat(),
                    expires=answer.expires.isoformat(),
                    responder=answer.responder,
                    responder_checked=answer.responder_checked,
                )
                return
        self._fail(key)

    def _fail(self, key: str) -> None:
        self._failed[key] = time.monotonic() + self.retry_s
        self._failed.move_to_end(key)
        while len(self._failed) > _MAX_FAILED:
            self._failed.popitem(last=False)

    def _count(self, result: str) -> None:
        if self.metrics is not None:
            self.metrics.ocsp_requests.labels(result).inc()


def _due(answer: OcspAnswer, now: dt.datetime) -> bool:
    """In its last tenth of life: time to ask again, while it still counts."""
    life = answer.expires - answer.received
    return now >= answer.expires - life / 10
