"""Prometheus metrics of the decision engine, served by BentoML's `/metrics`.

BentoML already counts requests and their latency per endpoint
(`bentoml_service_request_total`, `bentoml_service_request_duration_seconds`); these add
what only the engine knows. They are created on first use, after BentoML has pointed
`prometheus_client` at its multiprocess directory (creating them at import would register
them in single-process mode, invisible to `/metrics`). They live in their own registry:
under `bentoml serve` BentoML's multiprocess collector finds their values on disk anyway;
in process (`to_asgi()`, tests) `metrics_text` appends that registry to `/metrics`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import Any

from serving.decision import Decision

_LATENCY = "intent_decision_seconds"

# Decision latency buckets (seconds): the interesting range is 0.1 ms .. 25 ms.
_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)


@dataclass(frozen=True)
class EngineMetrics:
    decisions: Any
    fallbacks: Any
    triggers: Any
    caps_hit: Any
    holdout: Any
    latency: Any
    events: Any
    model_reloads: Any
    registry: Any
    moments: Any = None  # decisions by micro-moment (trigger rate per moment in Grafana)
    moment_triggers: Any = None
    # (id of the metric, label value) -> labelled child: `labels()` costs more than `inc()`
    _children: dict[tuple[int, str], Any] = field(default_factory=dict, repr=False)

    def _inc(self, metric: Any, label: str) -> None:
        key = (id(metric), label)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(label)
        child.inc()

    def observe(self, d: Decision) -> None:
        self._inc(self.decisions, d.source.value)
        self.latency.observe(d.latency_ms / 1000.0)
        if d.fallback_reason is not None:
            self._inc(self.fallbacks, d.fallback_reason.value)
        moment = d.moment.value if d.moment is not None else "none"
        self._inc(self.moments, moment)
        if d.action.value != "none":
            self._inc(self.triggers, d.action.value)
            self._inc(self.moment_triggers, moment)
        if d.capped and d.cap_reason is not None:
            self._inc(self.caps_hit, d.cap_reason)
        if d.holdout and d.would_action.value != "none":
            self._inc(self.holdout, d.would_action.value)


@cache
def engine_metrics() -> EngineMetrics:
    """The process's metric objects (created once)."""
    from prometheus_client import CollectorRegistry, Counter, Histogram

    reg = CollectorRegistry(auto_describe=True)

    def counter(name: str, doc: str, label: str) -> Any:
        return Counter(name, doc, [label], registry=reg)

    return EngineMetrics(
        decisions=counter("intent_decisions", "Decisions made, by source", "source"),
        fallbacks=counter("intent_fallbacks", "Rules fallbacks, by reason", "reason"),
        triggers=counter("intent_triggers", "Triggers shown, by action", "action"),
        caps_hit=counter("intent_caps_hit", "Triggers suppressed by a cap, by cap", "cap"),
        holdout=counter("intent_holdout_suppressed", "Holdout triggers withheld", "action"),
        latency=Histogram(
            _LATENCY,
            "Engine time per decision (read, model, policy, caps)",
            buckets=_BUCKETS,
            registry=reg,
        ),
        events=counter("intent_events", "Events received, by result", "result"),
        model_reloads=counter("intent_model_reloads", "Model swaps, by source", "source"),
        registry=reg,
        moments=counter("intent_moment_decisions", "Decisions, by micro-moment", "moment"),
        moment_triggers=counter(
            "intent_moment_triggers", "Triggers shown, by micro-moment", "moment"
        ),
    )


def metrics_text(content: str) -> str:
    """BentoML's /metrics text plus ours when its multiprocess collector did not see them."""
    if _LATENCY in content:
        return content
    from prometheus_client import generate_latest

    return content + generate_latest(engine_metrics().registry).decode()
