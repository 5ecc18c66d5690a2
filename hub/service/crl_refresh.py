"""The hub fetches its CAs' CRLs itself.

A trust store's revocation is only as current as its CRLs: with ``[trust] require_crl``
a stale CRL refuses every signature under it, and without it a CRL never renewed lets a
revoked signer through. Every ``[trust] crl_refresh_s`` the hub downloads the CRL of
each address it knows (through the ``CrlSource`` port, ``adapters/crl_http.py``):

* the addresses configured in ``[trust] crl_urls``;
* with ``crl_from_certificates`` (the default), the CRL distribution points of the trust
  store's CA certificates and of every signer chain it has validated (a CA's address,
  learned from a certificate that chains to a trusted CA; at most 64).

A downloaded CRL is believed only if it reads as a CRL, is signed by the CA expected
for that address (or, for a configured address, by a CA of the trust store or of a
validated chain), has not passed its ``nextUpdate`` and is not older than the CRL held
for that CA. It is then written (atomically) into ``[trust] crl_dir`` and the trust
store reloads, which puts the new CRL on the ledger (``trust_store_changed``, reason
``crl_fetched``) before it takes effect. Anything else leaves the store as it was,
counted and logged; a failed address is tried again after ``crl_retry_s``.

With several hub processes on one machine one of them fetches per round (a lock file
in ``crl_dir``); the others see the new file at their next reload. Learned addresses are
kept in ``crl_dir`` too (``hub/service/crl_addresses.py``) and read back at start, so a
restart forgets none of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import fcntl
import hashlib
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import structlog
from cryptography import x509

from hub.config import TrustConfig
from hub.errors import CrlRefused, HubError, PackageTooLarge, Unavailable
from hub.files import write_atomic
from hub.ports import CrlSource
from hub.service.crl_addresses import load_learned, save_learned
from hub.service.metrics import Metrics
from hub.signature.trust import (
    CrlUrls,
    TrustStore,
    crl_newer,
    crl_urls,
    expired_at,
    fingerprint,
    partial_crl,
    read_crl,
)

log = structlog.get_logger(__name__)

Result = Literal["fetched", "unchanged", "failed", "refused"]
Targets = dict[str, x509.Certificate | None]  # address -> the CA expected to sign its CRL


@dataclass(frozen=True, slots=True)
class Outcome:
    url: str
    result: Result
    detail: str = ""  # the error code and message, or what the new CRL is


def crl_file(directory: Path, url: str) -> Path:
    """Where the CRL fetched from ``url`` is kept (one file per address)."""
    return directory / f"{hashlib.sha256(url.encode()).hexdigest()[:24]}.crl"


@contextlib.contextmanager
def _one_process(directory: Path) -> Iterator[bool]:
    """True for the one process on this machine that fetches this round."""
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / ".fetch.lock").open("a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def addresses(
    urls: Sequence[str], from_certificates: bool, trust: TrustStore, seen: CrlUrls
) -> Targets:
    """Every address to fetch, with the CA expected to sign what is found there
    (``None``: any CA of the trust store or of a validated chain)."""
    out: Targets = dict.fromkeys(urls)
    if from_certificates:
        for anchor in trust.anchors:
            for url in crl_urls(anchor):
                out.setdefault(url, None)
        out.update(seen.snapshot())
    return out


class CrlRefresher:
    def __init__(
        self,
        *,
        source: CrlSource,
        directory: Path,
        urls: Sequence[str],
        from_certificates: bool,
        trust: Callable[[], TrustStore],
        seen: CrlUrls,
        changed: Callable[[str], Awaitable[object]],
        metrics: Metrics | None,
        every_s: float,
        retry_s: float,
        poll_s: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.source = source
        self.directory = directory
        self.urls = tuple(urls)
        self.from_certificates = from_certificates
        self.trust = trust
        self.seen = seen
        self.changed = changed
        self.metrics = metrics
        self.every_s = every_s
        self.retry_s = retry_s
        self.poll_s = poll_s
        self.clock = clock
        self._due: dict[str, float] = {}
        self._validators: dict[str, tuple[str | None, str | None]] = {}  # ETag, Last-Modified
        self._reload_pending = False  # a CRL written whose reload has not yet succeeded
        self._kept = -1  # ``seen.learned`` when the learned addresses were last kept
        if metrics is not None:
            for result in get_args(Result):
                metrics.crl_fetches.labels(result)  # every series from zero, for increase()

    @classmethod
    def configured(
        cls,
        t: TrustConfig,
        *,
        source: CrlSource,
        trust: Callable[[], TrustStore],
        seen: CrlUrls,
        changed: Callable[[str], Awaitable[object]],
        metrics: Metrics | None,
    ) -> CrlRefresher:
        """A refresher as ``[trust]`` sets it up (the hub's, and ``lienthong trust crls``)."""
        return cls(
            source=source,
            directory=Path(t.crl_dir),
            urls=t.crl_url_list(),
            from_certificates=t.crl_from_certificates,
            trust=trust,
            seen=seen,
            changed=changed,
            metrics=metrics,
            every_s=t.crl_refresh_s,
            retry_s=t.crl_retry_s,
        )

    def targets(self) -> Targets:
        return addresses(self.urls, self.from_certificates, self.trust(), self.seen)

    def _issuers(self, expected: x509.Certificate | None) -> list[x509.Certificate]:
        if expected is not None:
            return [expected]
        found = {fingerprint(c): c for c in self.trust().anchors}
        for issuer in self.seen.snapshot().values():
            found.setdefault(fingerprint(issuer), issuer)
        return list(found.values())

    def judge(
        self, data: bytes, expected: x509.Certificate | None, now: dt.datetime
    ) -> x509.CertificateRevocationList | None:
        """The CRL if it is newer than the one held; ``None`` if it is the one held;
        ``CrlRefused`` if it is not to be believed."""
        try:
            crl = read_crl(data)
        except ValueError as exc:
            raise CrlRefused(f"not a CRL: {exc}", code="crl_unreadable") from None
        named = [c for c in self._issuers(expected) if c.subject == crl.issuer]
        if not named:
            raise CrlRefused(
                f"the CRL's issuer {crl.issuer.rfc4514_string()} is not a trusted CA"
                + (" expected at this address" if expected is not None else ""),
                code="crl_issuer_unknown",
            )
        issuer = next(
            (c for c in named if crl.is_signature_valid(c.public_key())),  # type: ignore[arg-type]
            None,
        )
        if issuer is None:
            raise CrlRefused(
                f"the CRL claims to be from {crl.issuer.rfc4514_string()} but that CA's key "
                "did not sign it",
                code="crl_signature_invalid",
            )
        if (partial := partial_crl(crl)) is not None:
            raise CrlRefused(
                f"the CRL is {partial}; the hub takes only complete CRLs", code="crl_partial"
            )
        if (expired := expired_at(crl, now)) is not None:
            raise CrlRefused(
                f"the CRL went stale on {expired.isoformat()} (its nextUpdate)",
                code="crl_expired",
            )
        held = self.trust().crl_for(issuer)
        if held is None or crl_newer(crl, held):
            return crl
        if crl_newer(held, crl):
            raise CrlRefused(
                f"the CRL was issued {crl.last_update_utc.isoformat()}, before the one held "
                f"({held.last_update_utc.isoformat()}): a replayed or rolled-back copy",
                code="crl_older",
            )
        return None

    async def fetch(self, url: str, expected: x509.Certificate | None) -> Outcome:
        etag, modified = self._validators.get(url, (None, None))
        try:
            got = await self.source.fetch(url, etag=etag, last_modified=modified)
        except (Unavailable, PackageTooLarge) as exc:
            return Outcome(url, "failed", f"{exc.error_code}: {exc.message}")
        if got is None:
            return Outcome(url, "unchanged", "not modified")
        now = dt.datetime.fromtimestamp(self.clock(), dt.UTC)
        try:  # in a thread: a CA's CRL can run to megabytes
            crl = await asyncio.to_thread(self.judge, got.data, expected, now)
        except CrlRefused as exc:
            return Outcome(url, "refused", f"{exc.error_code}: {exc.message}")
        self._validators[url] = (got.etag, got.last_modified)
        if crl is None:
            return Outcome(url, "unchanged", "the CRL held is current")
        await asyncio.to_thread(write_atomic, crl_file(self.directory, url), got.data)
        return Outcome(
            url,
            "fetched",
            f"{crl.issuer.rfc4514_string()}, issued {crl.last_update_utc.isoformat()}, "
            f"{len(crl)} revoked",
        )

    async def round(self, targets: Targets | None = None) -> list[Outcome]:
        """Fetch ``targets`` (all known addresses by default) once; reload the trust store
        when a new CRL was written. Empty when another process is fetching."""
        targets = self.targets() if targets is None else targets
        if not targets:
            return []
        with _one_process(self.directory) as ours:
            if not ours:  # another process on this machine fetches them now
                later = self.clock() + self.retry_s
                self._due.update(dict.fromkeys(targets, later))
                return []
            outcomes = list(await asyncio.gather(*(self.fetch(u, i) for u, i in targets.items())))
        now = self.clock()
        for o in outcomes:
            ok = o.result in ("fetched", "unchanged")
            self._due[o.url] = now + (self.every_s if ok else self.retry_s)
            if self.metrics is not None:
                self.metrics.crl_fetches.labels(o.result).inc()
                success = self.metrics.crl_fetch_success.labels(o.url)  # 0 until one succeeds
                if ok:
                    success.set(now)
            if ok:
                log.info("crl_fetch", url=o.url, result=o.result, detail=o.detail)
            else:
                log.warning("crl_fetch", url=o.url, result=o.result, detail=o.detail)
        if any(o.result == "fetched" for o in outcomes):
            self._reload_pending = True
            await self._reload()
        return outcomes

    async def _reload(self) -> None:
        await self.changed("crl_fetched")
        self._reload_pending = False  # not before: a failed reload is tried again

    async def load_learned(self) -> int:
        """Learn again the addresses kept in ``directory`` (see ``crl_addresses``)."""
        if not self.from_certificates:
            return 0
        anchors = self.trust().anchors
        return await asyncio.to_thread(load_learned, self.directory, self.seen, anchors)

    async def keep_learned(self) -> None:
        """Keep the addresses learned since the last time (see ``crl_addresses``); the
        first time, all of them (learned before the file was read back, or read back)."""
        learned = self.seen.learned
        if not self.from_certificates or learned == self._kept or not self.seen.found:
            return
        await asyncio.to_thread(save_learned, self.directory, self.seen, self.trust().anchors)
        self._kept = learned

    async def run(self) -> None:
        """Fetch each address when due; look every ``poll_s`` for addresses just learned,
        and keep them."""
        if self.every_s <= 0:
            return
        if n := await self.load_learned():
            log.info("crl_addresses_loaded", count=n)
        while True:
            now = self.clock()
            due = {u: i for u, i in self.targets().items() if self._due.get(u, 0.0) <= now}
            try:
                await self.keep_learned()
                if due:
                    await self.round(due)
                elif self._reload_pending:
                    await self._reload()
            except (OSError, HubError) as exc:  # the next look tries again
                log.warning("crl_refresh_failed", error=str(exc))
            await asyncio.sleep(min(self.poll_s, self.every_s))
