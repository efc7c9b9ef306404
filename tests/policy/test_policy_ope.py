"""Off-policy estimators on a synthetic log with a known answer."""

from __future__ import annotations

import pytest
from policy_helpers import MOMENT_SHARE, TRUTH, synthetic_log

from core.bandit import OpeConfig
from training.policy.ope import (
    deterministic,
    estimates_frame,
    evaluate,
    fit_reward_model,
    on_policy,
)

COST = 0.03
CFG = OpeConfig(
    confidence=0.95,
    bootstrap_resamples=300,
    bootstrap_seed=0,
    max_weight=50.0,
    mlflow_experiment="unused",
)


@pytest.fixture(scope="module")
def log():
    return synthetic_log(trigger_cost=COST)


@pytest.fixture(scope="module")
def model(log):
    return fit_reward_model(log, COST)


def truth(choose) -> dict[str, float]:
    """The target policy's true values, from the generator's table (not from the code)."""
    completed = sum(MOMENT_SHARE[m] * TRUTH[(m, choose(m))] for m in MOMENT_SHARE)
    shown = sum(MOMENT_SHARE[m] * (choose(m) != "none") for m in MOMENT_SHARE)
    return {"completed": completed, "shown": shown, "reward": completed - COST * shown}


CANDIDATES = {
    "matched": lambda m: "contextual_tip" if m == "pause" else "tooltip",
    "none": lambda m: "none",
    "mismatched": lambda m: "tooltip" if m == "pause" else "contextual_tip",
}


@pytest.mark.parametrize("name", list(CANDIDATES))
def test_every_estimator_recovers_the_known_value(log, model, name) -> None:
    choose = CANDIDATES[name]
    target = deterministic([choose(m) for m in log.frame["moment"]])
    found, diagnostics = evaluate(name, log, target, model, CFG)
    expected = truth(choose)
    assert diagnostics["matches"] > 0 and diagnostics["clipped"] == 0
    for e in found:  # every estimate within its own interval's width of the truth
        assert e.low <= e.value <= e.high, e
        assert abs(e.value - expected[e.outcome]) <= e.high - e.low, e
        if e.estimator != "ips":  # the lower-variance two are also close in absolute terms
            assert e.value == pytest.approx(expected[e.outcome], abs=0.05), e
    for e in found:  # the doubly robust interval covers the (random) completion's truth
        if e.estimator == "dr" and e.outcome == "completed":
            assert e.low <= expected[e.outcome] <= e.high, e


def test_the_plain_average_of_the_log_is_biased_for_the_candidate(log, model) -> None:
    """The logging policy over-shows the tip: its own average is not the candidate's value."""
    logged = {e.outcome: e for e in on_policy(log, CFG)}
    matched = truth(CANDIDATES["matched"])["completed"]
    assert logged["completed"].high < matched  # so the weighting above did real work


def test_a_mixture_target_is_the_mixture_of_its_parts(log, model) -> None:
    half = [
        {CANDIDATES["matched"](m): 0.5, "none": 0.5} if CANDIDATES["matched"](m) != "none" else {}
        for m in log.frame["moment"]
    ]
    found, _ = evaluate("half", log, half, model, CFG)
    expected = 0.5 * truth(CANDIDATES["matched"])["completed"] + 0.5 * 0.5
    dr = next(e for e in found if e.estimator == "dr" and e.outcome == "completed")
    assert dr.value == pytest.approx(expected, abs=0.04)
    assert set(estimates_frame(found)["estimator"]) == {"ips", "snips", "dr"}
