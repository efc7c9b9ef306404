"""The step-gated rules policy and the model's edge over the best simple policy."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from loop_helpers import repo_layout, small_setup
from pydantic import ValidationError

from core.vocabulary import ActionType
from features.simulator.engine import simulate
from features.simulator.hook import Intervention, MomentContext
from loop.config import PolicySpec
from loop.edge import model_edge
from loop.evaluate import RunResult, run_one
from loop.gating import StepGatedPolicy, gated_steps, step_dropoff
from loop.metrics import COMPLETION, TRIGGERS_PER_USER_DAY

RULES = PolicySpec(name="rules", kind="rules", caps=True)
GATED = PolicySpec(name="gated_rules", kind="rules", caps=True, min_step_dropoff=0.2)
FOCUS = "identity_verification"


def day(d: int) -> datetime:
    return datetime(2025, 3, d, tzinfo=UTC)


def test_dropoff_is_read_as_of_the_end_of_the_training_window() -> None:
    stats = pa.table(
        {
            "step": ["a", "a", "a", "b", "b"],
            "event_timestamp": [day(1), day(2), day(3), day(1), day(2)],
            "step_dropoff_rate": [0.1, 0.3, 0.9, 0.05, None],
        }
    )
    assert step_dropoff(stats, day(2)) == {"a": 0.3, "b": 0.05}
    assert step_dropoff(stats, None) == {"a": 0.9, "b": 0.05}
    assert gated_steps(step_dropoff(stats, day(2)), 0.2) == {"a"}


@settings(max_examples=80, deadline=None)
@given(
    rates=st.dictionaries(st.text("abcdef", min_size=1, max_size=3), st.floats(0, 1)),
    low=st.floats(0, 1),
    high=st.floats(0, 1),
)
def test_property_gating_keeps_exactly_the_steps_above_the_level(rates, low, high) -> None:
    low, high = min(low, high), max(low, high)
    kept = gated_steps(rates, low)
    assert all(rates[s] > low for s in kept)
    assert all(s in kept for s, r in rates.items() if r > low)
    assert gated_steps(rates, high) <= kept  # a higher level never adds a step


class Recording:
    """Shows a tooltip at every moment it is asked about and records the step."""

    def __init__(self) -> None:
        self.steps: list[str] = []

    def decide(self, ctx: MomentContext) -> Intervention:
        self.steps.append(ctx.moment.step or ctx.state.step or "")
        return Intervention(ActionType.TOOLTIP, f"d{len(self.steps)}")

    def observe(self, decision_id, outcome, now) -> None:
        return None


def test_the_gated_policy_only_asks_its_rules_at_gated_steps(tmp_path: Path) -> None:
    setup = small_setup(repo_layout(tmp_path), users=200, days=5)
    everywhere, inner = Recording(), Recording()
    for policy in (everywhere, StepGatedPolicy(inner, {FOCUS})):
        simulate(
            setup.simulator,
            setup.configs.signals,
            setup.configs.funnel,
            200,
            5,
            4,
            start=date(2025, 3, 1),
            policy=policy,
        )
    assert set(inner.steps) == {FOCUS}
    assert len(set(everywhere.steps)) > 1 and 0 < len(inner.steps) < len(everywhere.steps)


def test_gated_rules_run_through_the_engine_and_trigger_less(tmp_path: Path) -> None:
    setup = small_setup(repo_layout(tmp_path), users=300, days=10)
    gated = dataclasses.replace(setup, dropoff={FOCUS: 0.5, "profile": 0.1})
    rules = run_one(setup, RULES, 5).metrics
    only_focus = run_one(gated, GATED, 5, tmp_path / "kept").metrics
    assert 0 < only_focus[TRIGGERS_PER_USER_DAY] < rules[TRIGGERS_PER_USER_DAY]
    from serving.decision_log import sqlite_log

    log = sqlite_log(tmp_path / "kept" / "decisions.db", synchronous="normal", batch_max=1)
    try:
        assert set(log.decisions()["step"]) == {FOCUS}
    finally:
        log.close()
    with pytest.raises(ValueError, match="drop-off"):
        run_one(setup, GATED, 5)  # no drop-off rates: refuse rather than gate nothing


def test_min_step_dropoff_is_for_rules_only() -> None:
    with pytest.raises(ValidationError, match="min_step_dropoff only applies to kind rules"):
        PolicySpec(name="m", kind="model", caps=True, min_step_dropoff=0.2)


def result(policy: str, seed: int, completion: float) -> RunResult:
    return RunResult(policy, seed, {COMPLETION: completion}, 0.0, 0, None)


SPECS = [
    PolicySpec(name="no_triggers", kind="none"),
    RULES,
    GATED,
    PolicySpec(name="model", kind="model", caps=True),
]


def test_the_edge_is_over_the_best_simple_policy_paired_by_seed() -> None:
    runs = [
        *(result("no_triggers", s, 0.40 + s / 100) for s in (1, 2, 3)),
        *(result("rules", s, 0.50 + s / 100) for s in (1, 2, 3)),
        *(result("gated_rules", s, 0.58 + s / 100) for s in (1, 2, 3)),
        *(result("model", s, v) for s, v in ((1, 0.60), (2, 0.62), (3, 0.62))),
    ]
    edge = model_edge(runs, SPECS, "model", COMPLETION, 0.95)
    assert edge is not None and edge.best_simple == "gated_rules"
    # per seed: 0.60-0.59, 0.62-0.60, 0.62-0.61
    assert edge.estimate.value == pytest.approx(np.mean([0.01, 0.02, 0.01]))
    assert edge.estimate.lo < edge.estimate.value < edge.estimate.hi
    assert "gated_rules" in edge.sentence() and "pp" in edge.sentence()
    assert model_edge(runs, SPECS[3:], "model", COMPLETION, 0.95) is None


@settings(max_examples=50, deadline=None)
@given(
    values=st.lists(
        st.tuples(st.floats(0, 1), st.floats(0, 1), st.floats(0, 1)), min_size=2, max_size=6
    )
)
def test_property_the_edge_is_never_above_the_edge_over_any_simple_policy(values) -> None:
    runs = []
    for seed, (rules, gated, model) in enumerate(values):
        runs += [result("rules", seed, rules), result("gated_rules", seed, gated)]
        runs.append(result("model", seed, model))
    edge = model_edge(runs, SPECS, "model", COMPLETION, 0.95)
    assert edge is not None
    for other in ("rules", "gated_rules"):
        mean_other = np.mean([v[("rules", "gated_rules").index(other)] for v in values])
        assert edge.simple_means[other] == pytest.approx(mean_other)
        mean_edge_vs_other = np.mean(
            [v[2] - v[("rules", "gated_rules").index(other)] for v in values]
        )
        assert edge.estimate.value <= mean_edge_vs_other + 1e-12
