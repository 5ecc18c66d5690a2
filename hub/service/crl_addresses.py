"""The CRL addresses a hub learned from the chains it validated, kept across restarts.

A CA that issues signing certificates names where it publishes its CRL only in the
certificates it issues, so the hub learns the address from the first package signed
under it (``CrlUrls``). Kept in memory only, the address was forgotten at each restart:
the CRL held for that CA was not renewed until a package signed under it came again,
and if it had gone stale meanwhile, that package was refused (``revocation_unknown``).

The addresses are kept in ``<crl_dir>/learned-addresses.json``, each with the chain that
vouched for it: the CA expected to sign the CRL there, up to the trusted CA. Read back,
an entry counts only if that chain still ends at a CA of the trust store in use and each
certificate in it was signed by the next (cryptography's ``verify_directly_issued_by``):
the file vouches for nothing by itself, and a CA withdrawn from the trust store takes its
addresses with it. Several hub processes on one machine merge what each learned (under a
lock file). ``lienthong trust show`` and ``trust crls`` read the file too.
"""

from __future__ import annotations

import fcntl
import itertools
import json
from collections.abc import Iterable
from pathlib import Path

import structlog
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from hub.files import write_atomic
from hub.signature.trust import CrlUrls, fetchable, fingerprint

log = structlog.get_logger(__name__)

FILE = "learned-addresses.json"
FORMAT = "lienthong-crl-addresses/1"
MAX_BYTES = 4 << 20  # 64 addresses with chains of a few certificates take ~1 MB at most

Chains = dict[str, tuple[x509.Certificate, ...]]  # address -> signer of its CRL, up to a CA


def vouched(chain: tuple[x509.Certificate, ...], anchors: Iterable[x509.Certificate]) -> bool:
    """Whether ``chain`` (issuer first) ends at one of ``anchors``, each certificate signed
    by the next."""
    if not chain or fingerprint(chain[-1]) not in {fingerprint(a) for a in anchors}:
        return False
    try:
        for cert, issuer in itertools.pairwise(chain):
            cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _entry(item: object) -> tuple[str, tuple[x509.Certificate, ...]] | None:
    if not isinstance(item, dict):
        return None
    url, pems = item.get("url"), item.get("chain")
    if not isinstance(url, str) or not fetchable(url):
        return None
    if not isinstance(pems, list) or not pems or not all(isinstance(p, str) for p in pems):
        return None
    try:
        return url, tuple(x509.load_pem_x509_certificate(p.encode()) for p in pems)
    except ValueError:
        return None


def read_learned(directory: Path, anchors: Iterable[x509.Certificate]) -> Chains:
    """The addresses kept in ``directory`` whose chains ``anchors`` still vouch for; an
    unreadable file counts as none (logged: the next save writes it afresh)."""
    path = directory / FILE
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except FileNotFoundError:
        return {}
    except OSError as exc:  # unreadable (permissions, a directory): as if none were kept
        log.warning("crl_addresses_unreadable", path=str(path), error=str(exc))
        return {}
    items: object = None
    if len(raw) <= MAX_BYTES:
        try:
            doc = json.loads(raw)
        except ValueError:
            doc = None
        if isinstance(doc, dict) and doc.get("format") == FORMAT:
            items = doc.get("addresses")
    if not isinstance(items, list):
        log.warning("crl_addresses_unreadable", path=str(path))
        return {}
    anchors = list(anchors)
    out: Chains = {}
    dropped = 0
    for item in items:
        entry = _entry(item)
        if entry is not None and vouched(entry[1], anchors):
            out.setdefault(*entry)
        else:
            dropped += 1
    if dropped:
        log.info("crl_addresses_dropped", path=str(path), dropped=dropped, kept=len(out))
    return out


def load_learned(directory: Path, seen: CrlUrls, anchors: Iterable[x509.Certificate]) -> int:
    """Teach ``seen`` the kept addresses; returns how many it did not know."""
    return sum(seen.add(url, chain) for url, chain in read_learned(directory, anchors).items())


def save_learned(directory: Path, seen: CrlUrls, anchors: Iterable[x509.Certificate]) -> int:
    """Keep what ``seen`` learned beside what the file holds (another process on this
    machine may have learned other addresses); returns how many addresses are kept."""
    anchors = list(anchors)
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / ".learned.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # held for a read and a small write
        kept = read_learned(directory, anchors)
        for url, chain in seen.chain_snapshot().items():
            if len(kept) >= seen.limit:
                break
            if url not in kept and vouched(chain, anchors):
                kept[url] = chain
        doc = {
            "format": FORMAT,
            "addresses": [
                {
                    "url": url,
                    "chain": [c.public_bytes(serialization.Encoding.PEM).decode() for c in chain],
                }
                for url, chain in kept.items()
            ],
        }
        write_atomic(directory / FILE, json.dumps(doc, indent=1).encode())
    return len(kept)
