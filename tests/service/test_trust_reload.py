"""A new CRL (or CA) in the trust store directory takes effect without a restart, once it
is on the ledger; a directory that does not read cleanly leaves the store in use as it was."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import shutil
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from hub.edxml import demo
from hub.pki import Issued, make_crl
from tests.service import harness
from tests.service.harness import A, B, HubUnderTest, eventually, signed
from tests.service.procs import HubProcess, free_port, write_config
from tests.signature.crl_server import CrlServer, der


def _ca(root: Path) -> Issued:
    cert = x509.load_pem_x509_certificate((root / "ca" / "ca.pem").read_bytes())
    key = serialization.load_pem_private_key((root / "ca" / "ca.key").read_bytes(), None)
    return Issued(cert, key)  # type: ignore[arg-type]


def _write_crl(
    root: Path, trust: Path, revoked: list[x509.Certificate], next_update: dt.datetime
) -> x509.CertificateRevocationList:
    """The CA's new CRL, written aside and renamed into place as an operator would."""
    crl = make_crl(_ca(root), revoked, next_update=next_update)
    (trust / "ca.crl.part").write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    os.replace(trust / "ca.crl.part", trust / "ca.crl")
    return crl


async def _submit(h: HubUnderTest, root: Path, number: str) -> tuple[int, str | None]:
    data = signed(root, A, demo.document_bytes(sender=A, to=(B,), number=number))
    r = await h.submit("sys-a", data, "edoc")
    body = await r.json()
    return r.status, (body.get("error") or {}).get("code")


@pytest.mark.parametrize("backend", ["embedded", "scaled"])
async def test_a_new_crl_takes_effect_without_a_restart_and_is_on_the_ledger(
    backend: str, tmp_path: Path, pki_dir: tuple[Path, dict[str, str]]
) -> None:
    if backend == "scaled":
        harness.require_services()
    root, bindings = pki_dir
    trust = tmp_path / "trust"  # this test's own copy: it changes the CRL
    shutil.copytree(root / "trust", trust)
    cfg = harness.config(
        tmp_path, root, backend, trust__dir=str(trust), trust__require_crl=True, trust__reload_s=0.1
    )
    tokens = await harness.seed_directory(cfg, bindings)
    h = await harness.start(cfg, tokens, root)
    try:
        assert await _submit(h, root, "1/TRUST") == (202, None)

        # The CA revokes A's signing certificate; its new CRL is renamed into place.
        revoked = x509.load_pem_x509_certificate((root / "agencies" / f"{A}.pem").read_bytes())
        next_update = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(days=2)
        crl = _write_crl(root, trust, [revoked], next_update)

        async def changes() -> list[dict[str, object]]:
            events = await h.hub.store.ledger(0, 10_000)
            return [e.data for e in events if e.type == "trust_store_changed"]

        (change,) = await eventually(changes, lambda xs: len(xs) == 1)
        assert change["reason"] == "changed" and change["require_crl"] is True
        assert str(change["process"]).endswith(f":{os.getpid()}")
        assert change["crls"] == [
            {
                "issuer": revoked.issuer.rfc4514_string(),
                "number": None,
                "this_update": crl.last_update_utc.isoformat(),
                "next_update": next_update.isoformat(),
                "revoked": 1,
            }
        ]
        assert await _submit(h, root, "2/TRUST") == (422, "cert_revoked")
        expiry = await harness.metric(h, "lienthong_trust_crl_expiry_timestamp_seconds")
        assert expiry == next_update.timestamp()

        # A file that does not read: the store in use stays, and so does the refusal.
        (trust / "new-ca.pem").write_text("-----BEGIN CERTIFICATE-----\nnot a certificate\n")
        assert await h.hub.trust_reloader.check() is False
        assert await harness.metric(h, "lienthong_trust_reload_failures_total") == 1
        assert await _submit(h, root, "3/TRUST") == (422, "cert_revoked")
        assert len(await changes()) == 1
        # Put right (the file removed), the directory reads again: on the ledger, in force.
        (trust / "new-ca.pem").unlink()
        _write_crl(root, trust, [], next_update)
        await eventually(changes, lambda xs: len(xs) == 2)
        assert await _submit(h, root, "4/TRUST") == (202, None)
    finally:
        await harness.stop(h)
        await harness.drop_backends(cfg)


def test_sighup_reloads_the_trust_store_of_a_running_hub(
    tmp_path: Path, pki_dir: tuple[Path, dict[str, str]]
) -> None:
    """``systemctl reload`` (SIGHUP) with polling off: the signal alone brings the new CRL."""
    root, bindings = pki_dir
    trust = tmp_path / "trust"
    shutil.copytree(root / "trust", trust)
    cfg = harness.config(
        tmp_path,
        root,
        "embedded",
        trust__dir=str(trust),
        trust__require_crl=True,
        trust__reload_s=0.0,
    )
    tokens = asyncio.run(harness.seed_directory(cfg, bindings))
    hub = HubProcess(write_config(cfg, tmp_path / "hub.toml"), free_port(), tmp_path / "hub.log")
    hub.start()
    try:
        auth = {"Authorization": f"Bearer {tokens['sys-a']}", "Content-Type": "application/xml"}

        def submit(number: str) -> int:
            data = signed(root, A, demo.document_bytes(sender=A, to=(B,), number=number))
            req = urllib.request.Request(hub.url + "/api/v1/packages", data, auth)
            try:
                with urllib.request.urlopen(req, timeout=10) as r:
                    return int(r.status)
            except urllib.error.HTTPError as exc:
                return exc.code

        assert submit("1/HUP") == 202
        revoked = x509.load_pem_x509_certificate((root / "agencies" / f"{A}.pem").read_bytes())
        _write_crl(root, trust, [revoked], dt.datetime.now(dt.UTC) + dt.timedelta(days=2))
        time.sleep(0.5)
        assert submit("2/HUP") == 202  # nothing looks at the directory by itself
        assert hub.proc is not None
        hub.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while submit("3/HUP") != 422:
            assert time.monotonic() < deadline, "the CRL was not reloaded on SIGHUP"
            time.sleep(0.1)
        assert "trust_store_reloaded" in hub.log_path.read_text()
    finally:
        hub.stop()


@pytest.mark.parametrize("backend", ["embedded", "scaled"])
async def test_the_hub_fetches_a_new_crl_itself_and_it_takes_effect_on_the_ledger(
    backend: str, tmp_path: Path, pki_dir: tuple[Path, dict[str, str]]
) -> None:
    """The CA publishes a CRL revoking A's certificate at its address: the hub downloads
    it, records the new trust on the ledger and refuses A's next package."""
    if backend == "scaled":
        harness.require_services()
    root, bindings = pki_dir
    async with CrlServer() as server:
        server.body = der(make_crl(_ca(root), [], number=1))
        cfg = harness.config(
            tmp_path,
            root,
            backend,
            trust__require_crl=True,
            trust__reload_s=0.0,  # the fetch alone must bring the new CRL into force
            trust__crl_urls=server.url(),
            trust__crl_refresh_s=0.1,
        )
        tokens = await harness.seed_directory(cfg, bindings)
        h = await harness.start(cfg, tokens, root)
        try:

            async def changes() -> list[dict[str, object]]:
                events = await h.hub.store.ledger(0, 10_000)
                return [e.data for e in events if e.type == "trust_store_changed"]

            # The first CRL at the address is newer than the trust directory's: taken.
            await eventually(changes, lambda xs: len(xs) == 1)
            assert await _submit(h, root, "1/FETCH") == (202, None)

            revoked = x509.load_pem_x509_certificate((root / "agencies" / f"{A}.pem").read_bytes())
            server.body = der(make_crl(_ca(root), [revoked], number=2))
            *_, change = await eventually(changes, lambda xs: len(xs) == 2)
            assert change["reason"] == "crl_fetched"
            assert [(c["number"], c["revoked"]) for c in change["crls"]] == [(None, 0), (2, 1)]
            assert await _submit(h, root, "2/FETCH") == (422, "cert_revoked")
            assert (tmp_path / "crls").is_dir()
            ok = await harness.metric(h, "lienthong_crl_fetches_total")
            assert ok >= 2
        finally:
            await harness.stop(h)
            await harness.drop_backends(cfg)
