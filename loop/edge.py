"""The model's edge over the best simple policy: the honest closed-loop headline.

Simple policies are those without a model (no triggers, the rules, the step-gated rules).
The best of them is the one with the highest mean of the metric over seeds; the edge is the
model policy minus it, paired by seed (the same simulated users under both), with a Student
t interval over seeds (`loop.stats.mean_interval`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from loop.config import PolicyKind, PolicySpec
from loop.evaluate import RunResult
from loop.stats import Estimate, mean_interval


@dataclass(frozen=True)
class Edge:
    """`policy - best_simple` on `metric`, paired by seed."""

    policy: str
    best_simple: str
    metric: str
    estimate: Estimate
    simple_means: dict[str, float]  # every simple policy's mean over seeds

    def sentence(self) -> str:
        e = self.estimate
        return (
            f"{self.policy} vs the best simple policy, {self.best_simple} (paired by seed): "
            f"{self.metric.removesuffix('_rate')} {e.value * 100:+.1f} pp "
            f"[{e.lo * 100:+.1f}, {e.hi * 100:+.1f}]"
        )

    def metrics(self) -> dict[str, float]:
        """MLflow metrics: the edge and its interval."""
        key = f"edge.{self.policy}.{self.metric}"
        e = self.estimate
        return {key: e.value, f"{key}.lo": e.lo, f"{key}.hi": e.hi}


def simple_policies(specs: Sequence[PolicySpec]) -> list[str]:
    return [s.name for s in specs if s.kind != PolicyKind.MODEL]


def model_edge(
    results: Sequence[RunResult],
    specs: Sequence[PolicySpec],
    policy: str,
    metric: str,
    confidence: float,
) -> Edge | None:
    """The edge of `policy` over the best simple policy that ran; None when none ran."""
    by: dict[str, dict[int, float]] = {}
    for r in results:
        by.setdefault(r.policy, {})[r.seed] = r.metrics[metric]
    if policy not in by:
        return None
    means = {n: float(np.mean(list(by[n].values()))) for n in simple_policies(specs) if n in by}
    if not means:
        return None
    best = max(means, key=means.__getitem__)
    seeds = sorted(set(by[policy]) & set(by[best]))
    diffs = [by[policy][s] - by[best][s] for s in seeds]
    return Edge(policy, best, metric, mean_interval(diffs, confidence), means)
