"""The step-gated rules policy: the source document's trigger table, fired only at steps
whose drop-off in the training window exceeds a configured level.

Unconditioned rules trigger everywhere and are a straw man: most of what the model adds over
them is knowing which steps lose users. This policy knows that too, from the same data the
champion was trained on (the step statistics as of the end of its training window), so the
model's edge over it is the honest one.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime

import pandas as pd
import pyarrow as pa

from core.vocabulary import ActionType, Outcome
from features.simulator.hook import Intervention, MomentContext, Policy

DROPOFF = "step_dropoff_rate"


def step_dropoff(step_stats: pa.Table, until: datetime | None) -> dict[str, float]:
    """Each step's drop-off rate in the latest `step_stats` row at or before `until` (the
    trailing window of the aggregates config), or the latest row when `until` is None."""
    frame = step_stats.select(["step", "event_timestamp", DROPOFF]).to_pandas()
    if until is not None:
        frame = frame[frame["event_timestamp"] <= pd.Timestamp(until)]
    frame = frame.dropna(subset=[DROPOFF]).sort_values(["step", "event_timestamp"])
    latest = frame.groupby("step", sort=True).tail(1)
    return {str(s): float(r) for s, r in zip(latest["step"], latest[DROPOFF], strict=True)}


def gated_steps(dropoff: Mapping[str, float], level: float) -> frozenset[str]:
    """The steps whose drop-off exceeds `level`."""
    return frozenset(step for step, rate in dropoff.items() if rate > level)


class StepGatedPolicy:
    """`inner` decides at micro-moments on the gated steps; elsewhere nothing is shown (and
    `inner` is not asked, so its caps and log see only the gated moments)."""

    def __init__(self, inner: Policy, steps: Collection[str]) -> None:
        self.inner = inner
        self.steps = frozenset(steps)

    def decide(self, ctx: MomentContext) -> Intervention:
        step = ctx.moment.step or ctx.state.step or ""
        if step in self.steps:
            return self.inner.decide(ctx)
        return Intervention(ActionType.NONE, f"{ctx.session_id}:{ctx.now:.3f}")

    def observe(self, decision_id: str, outcome: Outcome, now: float) -> None:
        self.inner.observe(decision_id, outcome, now)
