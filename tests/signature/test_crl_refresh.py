"""The hub fetches its CAs' CRLs: from configured addresses and the distribution points of
the chains it trusts; it believes only CRLs signed by the CA expected, current and not
older than the one held; of several CRLs from one CA the newest counts."""

from __future__ import annotations

import asyncio
import datetime as dt
import fcntl
import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from adapters.crl_http import HttpCrlSource
from hub import pki
from hub.errors import SignatureRefused, Unavailable
from hub.service import crl_addresses
from hub.service.crl_refresh import CrlRefresher, crl_file
from hub.service.metrics import Metrics
from hub.signature.trust import CrlUrls, TrustStore, crl_urls
from tests.signature.crl_server import CrlServer, der


def metric_value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


NOW = dt.datetime.now(dt.UTC)


def _refresher(tmp_path, trust, *, urls=(), seen=None, max_bytes=1 << 20, metrics=None):
    changed: list[str] = []

    async def on_change(reason: str) -> None:
        changed.append(reason)

    source = HttpCrlSource(timeout_s=5.0, max_bytes=max_bytes)
    r = CrlRefresher(
        source=source,
        directory=tmp_path / "crls",
        urls=urls,
        from_certificates=True,
        trust=lambda: trust,
        seen=seen or CrlUrls(),
        changed=on_change,
        metrics=metrics,
        every_s=3600.0,
        retry_s=60.0,
        poll_s=0.05,
    )
    return r, source, changed


# ------------------------------------------------------------------ the trust store


@pytest.mark.parametrize("names", [("a.crl", "b.crl"), ("b.crl", "a.crl")])
def test_of_two_crls_from_one_ca_the_newer_counts_whatever_their_order(tmp_path, names):
    ca = pki.make_ca("two-CRL CA")
    signer = pki.issue(ca, "signer")
    trust_dir = tmp_path / "trust"
    trust_dir.mkdir()
    (trust_dir / "ca.pem").write_bytes(ca.cert_pem)
    old = pki.make_crl(ca, [], last_update=NOW - dt.timedelta(days=2), number=1)
    new = pki.make_crl(ca, [signer.cert], last_update=NOW - dt.timedelta(hours=1), number=2)
    (trust_dir / names[0]).write_bytes(der(old))  # the older one first, then last
    (trust_dir / names[1]).write_bytes(der(new))
    trust = TrustStore.from_directory(trust_dir)
    assert trust.crl_for(ca.cert) == new
    with pytest.raises(SignatureRefused) as err:
        trust.validate(signer.cert)
    assert err.value.error_code == "cert_revoked"


def _delta(ca: pki.Issued, revoked: list[x509.Certificate]) -> x509.CertificateRevocationList:
    """A delta CRL: only the changes since CRL number 1, issued after any full CRL."""
    b = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.cert.subject)
        .last_update(NOW)
        .next_update(NOW + dt.timedelta(days=1))
        .add_extension(x509.CRLNumber(9), critical=False)
        .add_extension(x509.DeltaCRLIndicator(1), critical=True)
    )
    for cert in revoked:
        b = b.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(cert.serial_number)
            .revocation_date(NOW)
            .build()
        )
    return b.sign(ca.key, hashes.SHA256())


def test_the_expiry_watched_is_that_of_each_cas_crl_in_force():
    """An old copy superseded by a newer CRL may go stale: no alarm for it."""
    ca, other = pki.make_ca("watched CA"), pki.make_ca("second CA")
    soon = (NOW + dt.timedelta(hours=2)).replace(microsecond=0)
    later = (NOW + dt.timedelta(days=6)).replace(microsecond=0)
    old = pki.make_crl(ca, last_update=NOW - dt.timedelta(days=3), next_update=soon)
    new = pki.make_crl(ca, next_update=later + dt.timedelta(days=1))
    second = pki.make_crl(other, next_update=later)
    assert TrustStore([ca.cert], [old]).crl_expiry() == soon
    assert TrustStore([ca.cert, other.cert], [old, new, second]).crl_expiry() == later


def test_a_forged_crl_dated_later_does_not_hide_the_real_ones_expiry():
    """The watched expiry is that of CRLs their CA signed: a copy in the CA's name under
    another key, dated later, is not the one in force (``crl_for`` ignores it too)."""
    ca = pki.make_ca("forged-for CA")
    forger = pki.make_ca("forged-for CA")  # the same name, another key
    soon = (NOW + dt.timedelta(hours=2)).replace(microsecond=0)
    real = pki.make_crl(ca, last_update=NOW - dt.timedelta(days=1), next_update=soon)
    forged = pki.make_crl(forger, next_update=NOW + dt.timedelta(days=30))
    trust = TrustStore([ca.cert], [real, forged])
    assert trust.crl_for(ca.cert) == real
    assert trust.crl_expiry() == soon
    # An issuing CA seen in a validated chain is known too; until then its CRL counts.
    sub = pki.make_ca("issuing CA", parent=ca)
    sub_soon = soon - dt.timedelta(hours=1)
    sub_later = (NOW + dt.timedelta(days=9)).replace(microsecond=0)
    sub_crl = pki.make_crl(sub, last_update=NOW - dt.timedelta(days=1), next_update=sub_soon)
    sub_forged = pki.make_crl(pki.make_ca("issuing CA"), next_update=sub_later)
    trust = TrustStore([ca.cert], [sub_crl, sub_forged])
    assert trust.crl_expiry() == sub_later  # the issuing CA is not known yet
    signer = pki.issue(sub, "signer", crl_urls=["http://sub.example/sub.crl"])
    trust.validate(signer.cert, [sub.cert])  # now it is
    assert trust.crl_expiry() == sub_soon


def test_a_delta_crl_never_stands_in_for_the_full_one(tmp_path):
    ca = pki.make_ca("delta CA")
    signer = pki.issue(ca, "signer")
    full = pki.make_crl(ca, [signer.cert], last_update=NOW - dt.timedelta(days=1), number=1)
    trust = TrustStore([ca.cert], [full, _delta(ca, [])])  # the delta is newer, lists nothing
    assert trust.crl_for(ca.cert) == full
    with pytest.raises(SignatureRefused) as err:
        trust.validate(signer.cert)
    assert err.value.error_code == "cert_revoked"


def test_a_validated_chain_tells_where_its_cas_publish_crls():
    root = pki.make_ca("root CA")
    sub = pki.make_ca("issuing CA", parent=root, crl_urls=["http://root.example/root.crl"])
    leaf = pki.issue(
        sub,
        "signer",
        crl_urls=["ldap://dir.example/cn=issuing", "http://sub.example/sub.crl"],
    )
    assert crl_urls(leaf.cert) == ("http://sub.example/sub.crl",)  # LDAP is not fetched
    trust = TrustStore([root.cert])
    trust.validate(leaf.cert, [sub.cert])
    found = trust.seen_crl_urls.snapshot()
    # Each address maps to the CA that signs the CRL published there.
    assert found == {
        "http://sub.example/sub.crl": sub.cert,
        "http://root.example/root.crl": root.cert,
    }


def test_learned_addresses_are_bounded():
    seen = CrlUrls(limit=2)
    ca = pki.make_ca("many CA")
    for i in range(4):
        seen.note([pki.issue(ca, f"s{i}", crl_urls=[f"http://x.example/{i}.crl"]).cert, ca.cert])
    assert len(seen.snapshot()) == 2


# ------------------------------------------------------------------ fetching


async def test_a_new_crl_is_fetched_written_and_the_store_reloads(tmp_path):
    ca = pki.make_ca("fetch CA")
    signer = pki.issue(ca, "signer")
    trust = TrustStore([ca.cert], [pki.make_crl(ca, [], last_update=NOW - dt.timedelta(days=1))])
    trust.validate(signer.cert)
    metrics = Metrics()
    async with CrlServer() as server:
        server.body = der(pki.make_crl(ca, [signer.cert], number=7))
        server.etag = '"v7"'
        r, source, changed = _refresher(tmp_path, trust, urls=[server.url()], metrics=metrics)
        try:
            (o,) = await r.round()
            assert (o.result, changed) == ("fetched", ["crl_fetched"])
            assert "1 revoked" in o.detail
            written = crl_file(tmp_path / "crls", server.url())
            assert written.read_bytes() == server.body
            assert not list((tmp_path / "crls").glob("*.part"))
            # What the hub's reload reads: the fetched CRL revokes the signer.
            reloaded = TrustStore.from_directory(
                _trust_dir(tmp_path, ca), crl_dir=tmp_path / "crls"
            )
            with pytest.raises(SignatureRefused) as err:
                reloaded.validate(signer.cert)
            assert err.value.error_code == "cert_revoked"

            # Next round: a conditional request, answered 304; nothing written again.
            trust = reloaded
            r.trust = lambda: trust
            (o,) = await r.round()
            assert o.result == "unchanged" and changed == ["crl_fetched"]
            assert server.requests[-1].get("If-None-Match") == '"v7"'
            assert metric_value(metrics, "lienthong_crl_fetches_total", result="fetched") == 1
            assert metric_value(metrics, "lienthong_crl_fetches_total", result="unchanged") == 1
            assert (
                metric_value(
                    metrics, "lienthong_crl_fetch_last_success_timestamp_seconds", url=server.url()
                )
                > 0
            )
        finally:
            await source.close()


def _trust_dir(tmp_path: Path, ca: pki.Issued) -> Path:
    d = tmp_path / "trust"
    d.mkdir(exist_ok=True)
    (d / "ca.pem").write_bytes(ca.cert_pem)
    return d


def _refusals():
    """(name, how the served CRL is made from (ca, other CA, held CRL), expected code)."""
    impostor_key = pki.make_ca("fetch CA")  # same name as the real CA, another key
    return [
        ("garbage", lambda ca, other: b"<html>captive portal</html>", "crl_unreadable"),
        ("unknown CA", lambda ca, other: der(pki.make_crl(other)), "crl_issuer_unknown"),
        ("forged", lambda ca, other: der(pki.make_crl(impostor_key)), "crl_signature_invalid"),
        (
            "stale",
            lambda ca, other: der(
                pki.make_crl(
                    ca,
                    last_update=NOW - dt.timedelta(days=9),
                    next_update=NOW - dt.timedelta(days=2),
                )
            ),
            "crl_expired",
        ),
        ("delta", lambda ca, other: der(_delta(ca, [])), "crl_partial"),
        (
            "rolled back",
            lambda ca, other: der(pki.make_crl(ca, last_update=NOW - dt.timedelta(days=5))),
            "crl_older",
        ),
    ]


@pytest.mark.parametrize(("name", "make", "code"), _refusals(), ids=[x[0] for x in _refusals()])
async def test_a_crl_not_to_believe_is_refused_and_nothing_changes(tmp_path, name, make, code):
    ca = pki.make_ca("fetch CA")
    other = pki.make_ca("another CA")  # not trusted
    held = pki.make_crl(ca, last_update=NOW - dt.timedelta(days=1))
    trust = TrustStore([ca.cert], [held])
    metrics = Metrics()
    async with CrlServer() as server:
        server.body = make(ca, other)
        r, source, changed = _refresher(tmp_path, trust, urls=[server.url()], metrics=metrics)
        try:
            (o,) = await r.round()
        finally:
            await source.close()
    assert (o.result, o.detail.split(":")[0]) == ("refused", code)
    assert changed == []
    assert not (tmp_path / "crls").exists() or not list((tmp_path / "crls").glob("*.crl"))
    assert metric_value(metrics, "lienthong_crl_fetches_total", result="refused") == 1
    assert r._due[server.url()] == pytest.approx(r.clock() + 60.0, abs=5)  # retried sooner


async def test_a_learned_address_takes_only_the_crl_of_its_own_ca(tmp_path):
    """A trusted CA's CRL served at another CA's address is refused: each address answers
    for the CA whose certificates named it."""
    ca = pki.make_ca("issuing CA")
    other = pki.make_ca("second trusted CA")
    async with CrlServer() as server:
        signer = pki.issue(ca, "signer", crl_urls=[server.url()])
        trust = TrustStore([ca.cert, other.cert])
        trust.validate(signer.cert)  # teaches the address
        r, source, changed = _refresher(tmp_path, trust, seen=trust.seen_crl_urls)
        try:
            server.body = der(pki.make_crl(other))
            (o,) = await r.round()
            assert o.result == "refused" and o.detail.startswith("crl_issuer_unknown")
            server.body = der(pki.make_crl(ca, [signer.cert]))
            (o,) = await r.round()
            assert o.result == "fetched" and changed == ["crl_fetched"]
        finally:
            await source.close()


@pytest.mark.parametrize(
    ("status", "body", "code"),
    [(500, b"oops", "crl_fetch_failed"), (200, b"x" * 5000, "crl_too_large")],
)
async def test_a_failed_download_changes_nothing(tmp_path, status, body, code):
    ca = pki.make_ca("fetch CA")
    trust = TrustStore([ca.cert])
    async with CrlServer() as server:
        server.status, server.body = status, body
        r, source, changed = _refresher(tmp_path, trust, urls=[server.url()], max_bytes=4096)
        try:
            (o,) = await r.round()
        finally:
            await source.close()
    assert (o.result, o.detail.split(":")[0]) == ("failed", code)
    assert changed == []


async def test_an_unreachable_address_fails_and_others_still_fetch(tmp_path):
    ca = pki.make_ca("fetch CA")
    trust = TrustStore([ca.cert])
    async with CrlServer() as server:
        server.body = der(pki.make_crl(ca))
        dead = "http://127.0.0.1:9/ca.crl"  # discard port: nothing listens
        r, source, _ = _refresher(tmp_path, trust, urls=[dead, server.url()])
        try:
            results = {o.url: o.result for o in await r.round()}
        finally:
            await source.close()
    assert results == {dead: "failed", server.url(): "fetched"}


async def test_one_process_fetches_at_a_time(tmp_path):
    ca = pki.make_ca("fetch CA")
    trust = TrustStore([ca.cert])
    async with CrlServer() as server:
        server.body = der(pki.make_crl(ca))
        r, source, _ = _refresher(tmp_path, trust, urls=[server.url()])
        (tmp_path / "crls").mkdir()
        try:
            with (tmp_path / "crls" / ".fetch.lock").open("a") as other:
                fcntl.flock(other, fcntl.LOCK_EX)  # another hub process is fetching
                assert await r.round() == []
                assert server.requests == []
            (o,) = await r.round()
            assert o.result == "fetched"
        finally:
            await source.close()


async def test_the_running_refresher_fetches_a_newly_learned_address_soon(tmp_path):
    ca = pki.make_ca("issuing CA")
    async with CrlServer() as server:
        server.body = der(pki.make_crl(ca))
        trust = TrustStore([ca.cert])
        r, source, changed = _refresher(tmp_path, trust, seen=trust.seen_crl_urls)
        task = asyncio.create_task(r.run())
        try:
            await asyncio.sleep(0.2)
            assert server.requests == []  # nothing known yet
            trust.validate(pki.issue(ca, "signer", crl_urls=[server.url()]).cert)
            for _ in range(100):
                if changed:
                    break
                await asyncio.sleep(0.05)
            assert changed == ["crl_fetched"] and len(server.requests) == 1
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await source.close()


async def test_a_reload_that_fails_after_a_fetch_is_tried_again(tmp_path):
    """The CRL is written but the ledger could not take the reload's event (store down):
    the running refresher tries the reload again instead of waiting for a newer CRL."""
    ca = pki.make_ca("retry CA")
    trust = TrustStore([ca.cert])
    calls: list[str] = []

    async def flaky(reason: str) -> None:
        calls.append(reason)
        if len(calls) == 1:
            raise Unavailable("the store is down", code="store_unavailable")

    async with CrlServer() as server:
        server.body = der(pki.make_crl(ca))
        r, source, _ = _refresher(tmp_path, trust, urls=[server.url()])
        r.changed = flaky
        task = asyncio.create_task(r.run())
        try:
            for _ in range(100):
                if len(calls) >= 2:
                    break
                await asyncio.sleep(0.05)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await source.close()
    assert calls[:2] == ["crl_fetched", "crl_fetched"]
    assert len(server.requests) == 1  # fetched once; only the reload was repeated
    assert not r._reload_pending


# ------------------------------------------------------------------ learned addresses kept


def _chain_pki(url: str) -> tuple[pki.Issued, pki.Issued, pki.Issued]:
    """A root, an issuing CA under it, and a signer whose certificate names ``url``."""
    root = pki.make_ca("kept root CA")
    sub = pki.make_ca("kept issuing CA", parent=root)
    return root, sub, pki.issue(sub, "signer", crl_urls=[url])


async def test_learned_addresses_survive_a_restart(tmp_path):
    """What one process learned from a chain, the next one fetches from its start, with no
    package signed under that CA in between."""
    async with CrlServer() as server:
        root, sub, signer = _chain_pki(server.url())
        server.body = der(pki.make_crl(sub))
        before = TrustStore([root.cert])
        before.validate(signer.cert, [sub.cert])
        r, source, _ = _refresher(tmp_path, before, seen=before.seen_crl_urls)
        try:
            await r.keep_learned()
        finally:
            await source.close()
        assert (tmp_path / "crls" / crl_addresses.FILE).is_file()

        after = TrustStore([root.cert])  # a restarted hub: nothing learned in memory
        r, source, changed = _refresher(tmp_path, after, seen=after.seen_crl_urls)
        task = asyncio.create_task(r.run())
        try:
            for _ in range(100):
                if changed:
                    break
                await asyncio.sleep(0.05)
            assert changed == ["crl_fetched"] and len(server.requests) == 1
            # The address answers for the issuing CA it was learned for, as before.
            assert after.seen_crl_urls.snapshot() == {server.url(): sub.cert}
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await source.close()


def test_a_kept_address_counts_only_while_a_trusted_ca_vouches_for_it(tmp_path):
    url = "http://kept.example/sub.crl"
    root, sub, signer = _chain_pki(url)
    trust = TrustStore([root.cert])
    trust.validate(signer.cert, [sub.cert])
    crl_addresses.save_learned(tmp_path, trust.seen_crl_urls, trust.anchors)
    assert crl_addresses.read_learned(tmp_path, [root.cert]) == {url: (sub.cert, root.cert)}
    # The root withdrawn from the trust store: its CAs' addresses go with it.
    assert crl_addresses.read_learned(tmp_path, [pki.make_ca("other root").cert]) == {}
    # A chain rewritten in the file: a CA of the same name but another key is not vouched
    # for by the root (its certificate was not signed by the root's key).
    impostor = pki.make_ca("kept issuing CA", parent=pki.make_ca("kept root CA"))
    path = tmp_path / crl_addresses.FILE
    doc = json.loads(path.read_text())
    doc["addresses"][0]["chain"][0] = impostor.cert_pem.decode()
    path.write_text(json.dumps(doc))
    assert crl_addresses.read_learned(tmp_path, [root.cert]) == {}


@pytest.mark.parametrize(
    "content",
    [b"not json", b'{"format": "other", "addresses": []}', b"[1, 2]", b"{}", b"\xff\xfe"],
)
def test_an_unreadable_file_of_kept_addresses_counts_as_none(tmp_path, content):
    (tmp_path / crl_addresses.FILE).write_bytes(content)
    root = pki.make_ca("kept root CA")
    assert crl_addresses.read_learned(tmp_path, [root.cert]) == {}
    seen = CrlUrls()
    seen.note([pki.issue(root, "s", crl_urls=["http://x.example/a.crl"]).cert, root.cert])
    assert crl_addresses.save_learned(tmp_path, seen, [root.cert]) == 1  # written afresh
    assert list(crl_addresses.read_learned(tmp_path, [root.cert])) == ["http://x.example/a.crl"]


def test_processes_keep_what_each_learned(tmp_path):
    root = pki.make_ca("kept root CA")
    first, second = CrlUrls(), CrlUrls()
    first.note([pki.issue(root, "a", crl_urls=["http://a.example/a.crl"]).cert, root.cert])
    second.note([pki.issue(root, "b", crl_urls=["http://b.example/b.crl"]).cert, root.cert])
    crl_addresses.save_learned(tmp_path, first, [root.cert])
    assert crl_addresses.save_learned(tmp_path, second, [root.cert]) == 2
    fresh = CrlUrls()
    assert crl_addresses.load_learned(tmp_path, fresh, [root.cert]) == 2
    assert set(fresh.snapshot()) == {"http://a.example/a.crl", "http://b.example/b.crl"}
    assert crl_addresses.load_learned(tmp_path, fresh, [root.cert]) == 0  # known already


def test_a_file_of_kept_addresses_that_cannot_be_read_counts_as_none(tmp_path):
    (tmp_path / crl_addresses.FILE).mkdir()  # not a file: reading it fails
    assert crl_addresses.read_learned(tmp_path, [pki.make_ca("kept root CA").cert]) == {}
