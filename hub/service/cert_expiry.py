"""When the certificates the hub relies on expire, as a metric, so an alert comes weeks
ahead rather than an outage no other alert names.

Each role's earliest ``notAfter`` (a chain counts whole: an intermediate that expires
first ends it as surely) is exported as
``lienthong_certificate_expiry_timestamp_seconds{role}``:

* ``trust_anchor`` — the CAs in the trust store: every signature under an expired one
  is refused. Measured again at every trust store reload.
* ``ledger`` — the certificate (and chain) signing the ledger's checkpoints: checkpoints
  signed after it expired no longer verify.
* ``server_tls`` — the HTTPS certificate the hub serves (``[server] tls_cert``): clients
  refuse the handshake. ``tls_client_ca`` — the CA that mutual-TLS clients' certificates
  chain to.
* ``push_client`` — the certificate the hub presents to agencies' push endpoints
  (``[delivery] push_client_cert``).

Files are read when the hub starts (their renewal needs a restart to take effect in any
case). ``LienthongCertificateExpiresSoon`` fires 30 days ahead (``deploy/prometheus``).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import structlog
from cryptography import x509

from hub.config import Config
from hub.service.metrics import Metrics

log = structlog.get_logger(__name__)


def earliest_expiry(certs: Iterable[x509.Certificate]) -> float | None:
    """The earliest ``notAfter`` of ``certs`` as a Unix time; None when there are none."""
    times = [c.not_valid_after_utc.timestamp() for c in certs]
    return min(times) if times else None


def _file(path: str) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(Path(path).read_bytes())
    except (OSError, ValueError) as exc:  # the server or the push client says so louder
        log.warning("certificate_unreadable", path=path, error=str(exc))
        return []


def measure(metrics: Metrics, role: str, certs: Iterable[x509.Certificate]) -> None:
    at = earliest_expiry(certs)
    if at is not None:
        metrics.cert_expiry.labels(role).set(at)


def measure_configured(metrics: Metrics, cfg: Config, ledger: Iterable[x509.Certificate]) -> None:
    """The roles read from the configuration's files, and the ledger's chain."""
    measure(metrics, "ledger", ledger)
    for role, path in (
        ("server_tls", cfg.server.tls_cert),
        ("tls_client_ca", cfg.server.tls_client_ca),
        ("push_client", cfg.delivery.push_client_cert),
    ):
        if path:
            measure(metrics, role, _file(path))
