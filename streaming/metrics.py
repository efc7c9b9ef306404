"""Prometheus metrics of the stream consumer, on a registry of its own.

`intent consume` serves them on `metrics_port` (prometheus_client's HTTP server): throughput
is `rate(intent_stream_events_total[1m])` (also `intent_stream_events_per_second`, over the
last `lag_every_s`), lag is `intent_stream_lag` (entries the group has not read yet) plus
`intent_stream_pending` (read, not acknowledged).
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


@dataclass(frozen=True)
class StreamMetrics:
    registry: CollectorRegistry
    events: Counter
    acked: Counter
    claimed: Counter
    failures: Counter
    batch_seconds: Histogram
    event_to_state: Histogram
    lag: Gauge
    pending: Gauge
    events_per_second: Gauge

    def text(self) -> str:
        return generate_latest(self.registry).decode()


def stream_metrics() -> StreamMetrics:
    """A fresh registry and its metrics (one per consumer; tests build many)."""
    reg = CollectorRegistry()
    return StreamMetrics(
        registry=reg,
        events=Counter(
            "intent_stream_events",
            "Stream events by outcome (accepted, duplicate, late, rejected, failed)",
            ["result"],
            registry=reg,
        ),
        acked=Counter("intent_stream_acked", "Stream entries acknowledged", registry=reg),
        claimed=Counter(
            "intent_stream_claimed", "Entries claimed from idle consumers", registry=reg
        ),
        failures=Counter(
            "intent_stream_batch_failures",
            "Batches not applied (entries stay pending and are read again)",
            registry=reg,
        ),
        batch_seconds=Histogram(
            "intent_stream_batch_seconds",
            "Time to validate, apply and acknowledge one batch",
            buckets=_LATENCY_BUCKETS,
            registry=reg,
        ),
        event_to_state=Histogram(
            "intent_stream_event_to_state_seconds",
            "From XADD (the entry id's time) to the event's state being stored",
            buckets=_LATENCY_BUCKETS,
            registry=reg,
        ),
        lag=Gauge("intent_stream_lag", "Entries the group has not read yet", registry=reg),
        pending=Gauge(
            "intent_stream_pending", "Entries read by the group, not yet acknowledged", registry=reg
        ),
        events_per_second=Gauge(
            "intent_stream_events_per_second",
            "Entries acknowledged per second over the last refresh interval",
            registry=reg,
        ),
    )
