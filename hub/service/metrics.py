"""Prometheus metrics, one registry per hub instance (tests run several in a process).

With ``[server] workers > 1`` every worker process writes its values to files in the
directory named by ``PROMETHEUS_MULTIPROC_DIR`` (the supervisor sets it) and ``/metrics``,
whichever worker answers, reports the whole unit: counters and histograms summed over
the workers; gauges read from the shared store and broker as the most recently measured
value; a worker's own state (its upstream circuit, its last upstream success) as the
highest over the workers.
"""

from __future__ import annotations

import functools
import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def exposition(registry: CollectorRegistry) -> bytes:
    """The text ``/metrics`` serves: this process's registry, or with several workers the
    values of all of them."""
    if os.environ.get(MULTIPROC_ENV):
        merged = CollectorRegistry()
        MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
        return generate_latest(merged)
    return generate_latest(registry)


_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        # With several workers: a value measured from the shared store or broker reports
        # its latest measurement; a worker's own state, the highest over the workers.
        shared = functools.partial(Gauge, registry=r, multiprocess_mode="mostrecent")
        own = functools.partial(Gauge, registry=r, multiprocess_mode="max")
        self.intake = Counter(
            "lienthong_intake_total",
            "Submitted packages by outcome (accepted, duplicate, or the refusal code)",
            ["kind", "outcome"],
            registry=r,
        )
        self.intake_seconds = Histogram(
            "lienthong_intake_seconds",
            "Submit latency from first byte to committed answer",
            ["kind"],
            buckets=_LATENCY,
            registry=r,
        )
        self.http_seconds = Histogram(
            "lienthong_http_request_seconds",
            "HTTP request latency by route",
            ["method", "route", "status"],
            buckets=_LATENCY,
            registry=r,
        )
        self.deliveries = Counter(
            "lienthong_delivery_transitions_total",
            "Delivery state transitions",
            ["route", "state"],
            registry=r,
        )
        self.queue_depth = shared(
            "lienthong_queue_depth",
            "Messages waiting per broker queue",
            ["queue"],
        )
        self.pending = shared(
            "lienthong_deliveries_open",
            "Deliveries not yet done, rejected or dead",
        )
        self.oldest_pending = shared(
            "lienthong_oldest_open_delivery_age_seconds",
            "Age of the oldest delivery not yet done, rejected or dead",
        )
        self.dead = shared(
            "lienthong_deliveries_dead",
            "Dead deliveries",
        )
        self.dead_letters = shared(
            "lienthong_dead_letters",
            "Messages on the dead-letter queue",
        )
        self.blob_free = shared(
            "lienthong_blob_free_bytes",
            "Free space on the blob volume (new packages are refused below [blobs] min_free_mb)",
        )
        self.overdue = shared(
            "lienthong_overdue_acknowledgements",
            "Documents received before today (Vietnam time) with no business status yet "
            "(NĐ 30/2020 same-day receipt rule)",
        )
        self.outbox = shared(
            "lienthong_outbox_rows",
            "Committed messages not yet confirmed by the broker",
        )
        self.upstream_last_ok = own(
            "lienthong_upstream_last_success_timestamp_seconds",
            "When the upstream axis last answered a poll (Unix time)",
        )
        self.upstream_failures = Counter(
            "lienthong_upstream_failures_total",
            "Failed calls to the upstream axis",
            ["op"],
            registry=r,
        )
        self.upstream_received = Counter(
            "lienthong_upstream_received_total",
            "Packages taken from the upstream axis, by outcome",
            ["outcome"],
            registry=r,
        )
        self.upstream_circuit = own(
            "lienthong_upstream_circuit_open",
            "1 while the upstream circuit is open",
        )
        self.upstream_oldest = shared(
            "lienthong_upstream_oldest_waiting_age_seconds",
            "Age of the oldest package waiting to be forwarded upstream",
        )
        self.ledger_size = shared(
            "lienthong_ledger_sealed_leaves",
            "Leaves in the latest signed checkpoint",
        )
        self.ledger_checkpoint_age = shared(
            "lienthong_ledger_checkpoint_age_seconds",
            "Age of the latest signed checkpoint",
        )
        self.ledger_unsealed = shared(
            "lienthong_ledger_unsealed_events",
            "Events not yet in a checkpoint",
        )
        self.trust_crl_expiry = Gauge(
            "lienthong_trust_crl_expiry_timestamp_seconds",
            "When the first CRL in force (each CA's newest) goes stale (its nextUpdate; 0: no CRL)",
            registry=r,
            multiprocess_mode="min",
        )
        self.cert_expiry = Gauge(
            "lienthong_certificate_expiry_timestamp_seconds",
            "The earliest notAfter among the certificates the hub relies on, by role "
            "(trust_anchor, ledger, server_tls, tls_client_ca, push_client)",
            ["role"],
            registry=r,
            multiprocess_mode="min",
        )
        self.vxp_previous_secret = Counter(
            "lienthong_vxp_previous_secret_total",
            "VXP calls signed with the secret a rotation replaced, during its overlap, by "
            "system (not zero: the agency has not changed its SDK configuration yet)",
            ["system"],
            registry=r,
        )
        self.token_expiry = shared(
            "lienthong_token_expiry_timestamp_seconds",
            "When each system's bearer-token access ends: the latest expiry among its tokens "
            "not revoked (+Inf: one has no end, or none is left to expire)",
            ["system"],
        )
        self.trust_reload_failures = Counter(
            "lienthong_trust_reload_failures_total",
            "Changed trust store directories that could not be read (the old store stays)",
            registry=r,
        )
        self.crl_fetches = Counter(
            "lienthong_crl_fetches_total",
            "CRL downloads by result: fetched (a newer CRL taken), unchanged, failed "
            "(unreachable, too large), refused (not a CRL to believe)",
            ["result"],
            registry=r,
        )
        self.crl_fetch_success = Gauge(
            "lienthong_crl_fetch_last_success_timestamp_seconds",
            "When each CRL address last answered with a CRL to believe (fetched or unchanged)",
            ["url"],
            registry=r,
            multiprocess_mode="max",
        )
        self.ocsp_requests = Counter(
            "lienthong_ocsp_requests_total",
            "Questions to CAs' OCSP responders by result: good, revoked, unknown (a believed "
            "answer), failed (unreachable, error status, too large), refused (not an answer "
            "to believe)",
            ["result"],
            registry=r,
        )
        for result in ("good", "revoked", "unknown", "failed", "refused"):
            self.ocsp_requests.labels(result)  # at 0 from the start: increase() sees the first
        self.examiner_exits = Counter(
            "lienthong_examiner_exits_total",
            "Examiner processes that stopped unasked (each is replaced; the packages it "
            "held were answered 503)",
            registry=r,
        )
        self.purged = Counter(
            "lienthong_retention_purged_total", "Package bodies purged by retention", registry=r
        )
