"""Prometheus metrics, one registry per hub instance (tests run several in a process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

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
            "lienthong_queue_depth", "Messages waiting per broker queue", ["queue"], registry=r
        )
        self.pending = Gauge(
            "lienthong_deliveries_open", "Deliveries not yet done, rejected or dead", registry=r
        )
        self.oldest_pending = Gauge(
            "lienthong_oldest_open_delivery_age_seconds",
            "Age of the oldest delivery not yet done, rejected or dead",
            registry=r,
        )
        self.dead = Gauge("lienthong_deliveries_dead", "Dead deliveries", registry=r)
        self.dead_letters = Gauge(
            "lienthong_dead_letters", "Messages on the dead-letter queue", registry=r
        )
        self.overdue = Gauge(
            "lienthong_overdue_acknowledgements",
            "Documents received before today (Vietnam time) with no business status yet "
            "(NĐ 30/2020 same-day receipt rule)",
            registry=r,
        )
        self.outbox = Gauge(
            "lienthong_outbox_rows",
            "Committed messages not yet confirmed by the broker",
            registry=r,
        )
        self.upstream_last_ok = Gauge(
            "lienthong_upstream_last_success_timestamp_seconds",
            "When the upstream axis last answered a poll (Unix time)",
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
            "lienthong_upstream_circuit_open", "1 while the upstream circuit is open", registry=r
        )
        self.upstream_oldest = Gauge(
            "lienthong_upstream_oldest_waiting_age_seconds",
            "Age of the oldest package waiting to be forwarded upstream",
            registry=r,
        )
        self.ledger_size = Gauge(
            "lienthong_ledger_sealed_leaves", "Leaves in the latest signed checkpoint", registry=r
        )
        self.ledger_checkpoint_age = Gauge(
            "lienthong_ledger_checkpoint_age_seconds",
            "Age of the latest signed checkpoint",
            registry=r,
        )
        self.ledger_unsealed = Gauge(
            "lienthong_ledger_unsealed_events", "Events not yet in a checkpoint", registry=r
        )
        self.purged = Counter(
            "lienthong_retention_purged_total", "Package bodies purged by retention", registry=r
        )
