"""Prometheus metrics, one registry per hub instance (tests run several in a process).

With ``[server] workers > 1`` every worker process writes its values to files in the
directory named by ``PROMETHEUS_MULTIPROC_DIR`` (the supervisor sets it) and ``/metrics``,
whichever worker answers, reports the whole unit: counters and histograms summed over
the workers; gauges read from the shared store and broker as the most recently measured
value; a worker's own state (its upstream circuit, its last upstream success) as the
highest over the workers.
"""

from __future__ import annotations

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
        self.queue_depth = Gauge(
            "lienthong_queue_depth",
            "Messages waiting per broker queue",
            ["queue"],
            multiprocess_mode="mostrecent",
            registry=r,
        )
        self.pending = Gauge(
            "lienthong_deliveries_open",
            "Deliveries not yet done, rejected or dead",
            multiprocess_mode="mostrecent",
            registry=r,
        )
        self.oldest_pending = Gauge(
            "lienthong_oldest_open_delivery_age_seconds",
            "Age of the oldest delivery not yet done, rejected or dead",
            multiprocess_mode="mostrecent",
            registry=r,
        )
        self.dead = Gauge(
            "lienthong_deliveries_dead",
            "Dead deliveries",
            multiprocess_mode="mostrecent",
            registry=r,
        )
        self.dead_letters = Gauge(
            "lienthong_dead_letters",
            "Messages on the dead-letter queue",
            multiprocess_mode="mostrecent",
            registry=r,
        )
        self.overdue = Gauge(
            "lienthong_overdue_acknowledgements",
            "Documents received before today (Vietnam time) with no business status yet "
            "(NĐ 30/2020 same-day receipt rule)",
            multiprocess_mode="mostrecent",
            registry=r,
        )
        self.outbox = Gauge(
            "lienthong_outbox_rows",
            "Committed messages not yet confirmed by the broker",
            multiprocess_mode="mostrecent",
            registry=r,
        )
        self.upstream_last_ok = Gauge(
            "lienthong_upstream_last_success_timestamp_seconds",
            "When the upstream axis last answered a poll (Unix time)",
            multiprocess_mode="max",
            registry=r,
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
        self.upstream_circuit = Gauge(
            "lienthong_upstream_circuit_open",
            "1 while the upstream circuit is open",
            multiprocess_mode="max",
            registry=r,
        )
        self.upstream_oldest = Gauge(
            "lienthong_upstream_oldest_waiting_age_seconds",
            "Age of the oldest package waiting to be forwarded upstream",
            multiprocess_mode="mostrecent",
            registry=r,
        )
        self.ledger_size = Gauge(
            "lienthong_ledger_sealed_leaves",
            "Leaves in the latest signed checkpoint",
            multiprocess_mode="mostrecent",
            registry=r,
        )
        self.ledger_checkpoint_age = Gauge(
            "lienthong_ledger_checkpoint_age_seconds",
            "Age of the latest signed checkpoint",
            multiprocess_mode="mostrecent",
            registry=r,
        )
        self.ledger_unsealed = Gauge(
            "lienthong_ledger_unsealed_events",
            "Events not yet in a checkpoint",
            multiprocess_mode="mostrecent",
            registry=r,
        )
        self.purged = Counter(
            "lienthong_retention_purged_total", "Package bodies purged by retention", registry=r
        )
