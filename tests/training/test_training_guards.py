"""Training guards on data built to trigger them: a label that is noise, a feature whose
relation to the label flips in validation. Such a run is recorded as `no_signal`, reported
honestly (never inverted by calibration) and refused by `intent promote`, even with --force."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score
from training_pipeline import Pipeline, shipped_guards, with_store, with_training

from training.config import GuardConfig
from training.delong import AucDifference
from training.fit import FittedModel, fit_model
from training.frame import LABEL
from training.guards import (
    CHANCE,
    NO_SIGNAL,
    REASON_TAG,
    SIGNAL,
    SIGNAL_TAG,
    BaselineComparison,
    compare_baselines,
    signal_verdict,
)
from training.pipeline import TrainingConfigs
from training.promote import promote
from training.run import record_training
from training.split import assign_windows
from training.tracking import aliases, session, tracking_uri

GUARDS = GuardConfig(min_auc_margin=0.005, confidence=0.95, min_trees=5)


def comparison(
    baseline: str, model_auc: float, baseline_auc: float, se: float
) -> BaselineComparison:
    diff = model_auc - baseline_auc
    lower = diff - 1.6448536 * se
    return BaselineComparison(
        baseline, AucDifference(model_auc, baseline_auc, diff, se, lower, 0.95)
    )


def logistic_world(seed: int, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """A latent risk and labels drawn from it."""
    rng = np.random.default_rng(seed)
    risk = rng.normal(size=rows)
    return risk, (rng.uniform(size=rows) < 1 / (1 + np.exp(-2 * risk))).astype(np.int64)


def test_a_model_clearly_above_every_baseline_with_enough_trees_has_signal() -> None:
    risk, labels = logistic_world(0, 4000)
    rng = np.random.default_rng(1)
    model = risk + rng.normal(scale=0.3, size=len(risk))
    baselines = {
        "rules": rng.uniform(size=len(risk)),
        "logistic": risk + rng.normal(size=len(risk)),
    }
    verdict = signal_verdict(compare_baselines(labels, model, baselines, 0.95), 60, GUARDS)
    assert verdict.ok and verdict.best_baseline == "logistic" and verdict.tags[SIGNAL_TAG] == SIGNAL
    assert verdict.margin_lower > GUARDS.min_auc_margin and verdict.margin > verdict.margin_lower


def test_each_guard_alone_makes_a_run_no_signal() -> None:
    # 0.02 above the logistic baseline, but the difference's standard error is 0.015
    close = signal_verdict(
        [comparison("step_prior", 0.86, 0.82, 0.004), comparison("logistic", 0.86, 0.84, 0.015)],
        60,
        GUARDS,
    )
    assert close.status == NO_SIGNAL and "logistic baseline's 0.8400" in close.reasons[0]
    assert "DeLong standard error 0.0150" in close.reasons[0] and close.margin == pytest.approx(
        0.02
    )
    stump = signal_verdict([comparison("logistic", 0.95, 0.84, 0.001)], 1, GUARDS)
    assert stump.status == NO_SIGNAL and "kept 1 tree" in stump.reasons[0]
    assert "guards.min_trees=5" in stump.tags[REASON_TAG]


@settings(max_examples=60, deadline=None)
@given(
    runs=st.lists(
        st.tuples(
            st.sampled_from(["rules", "step_prior", "logistic"]),
            st.floats(0, 1),
            st.floats(0, 1),
            st.floats(0, 0.05),
        ),
        max_size=3,
    ),
    trees=st.integers(1, 200),
)
def test_property_no_signal_exactly_when_a_guard_fails(runs, trees) -> None:
    comparisons = [comparison(*run) for run in runs]
    verdict = signal_verdict(comparisons, trees, GUARDS)
    lowest = min((c.auc.lower for c in comparisons), default=math.nan)
    auc_fails = not comparisons or not lowest > GUARDS.min_auc_margin
    fails = auc_fails or trees < GUARDS.min_trees
    assert (verdict.status == NO_SIGNAL) is fails
    assert len(verdict.reasons) == int(auc_fails) + int(trees < GUARDS.min_trees)


def test_noise_rarely_passes_the_delong_bound_where_a_fixed_margin_often_did() -> None:
    # Model and baseline are both unrelated to a noise label, on 400 validation rows: a
    # fixed 0.005 margin calls about 4 in 10 of them a signal; the one-sided 95 % bound with
    # the same margin at most ~5 %.
    seeds = range(200)
    fixed, bounded = 0, 0
    for seed in seeds:
        rng = np.random.default_rng(seed)
        labels = (rng.uniform(size=400) < 0.45).astype(np.int64)
        scores = {"model": rng.uniform(size=400), "logistic": rng.uniform(size=400)}
        compared = compare_baselines(
            labels, scores["model"], {"logistic": scores["logistic"]}, 0.95
        )
        assert [c.baseline for c in compared] == ["logistic", CHANCE]
        fixed += compared[0].auc.difference > GUARDS.min_auc_margin
        bounded += signal_verdict(compared, 60, GUARDS).ok
    assert fixed / len(seeds) > 0.3
    assert bounded / len(seeds) <= 0.08


def shipped(pipeline: Pipeline) -> TrainingConfigs:
    """The shared world's configs with the repo's own guards (the fixture lifts them)."""
    return with_training(pipeline.configs, guards=shipped_guards())


def noise_labels(pipeline: Pipeline, seed: int = 11) -> FittedModel:
    """The shared frame with a label that is a coin flip at the real base rate."""
    frame = pipeline.data.frame.copy()
    rng = np.random.default_rng(seed)
    frame[LABEL] = (rng.uniform(size=len(frame)) < frame[LABEL].mean()).astype(np.int64)
    c = shipped(pipeline)
    return fit_model(frame, pipeline.data.service_features, c.training, c.heuristic)


@pytest.mark.slow
def test_noise_labels_are_no_signal_on_most_seeds(pipeline: Pipeline) -> None:
    # The nominal false-signal rate is 5 % (one-sided 95 % bound), but early stopping picks
    # its trees on the same ~230 validation rows the guard reads, which inflates the model's
    # validation AUC; measured: 1 of these 10 seeds passes (seed 0: 45 trees, validation AUC
    # 0.578, test 0.433, which the promotion gate's test-window check then refuses).
    verdicts = [noise_labels(pipeline, seed).signal for seed in range(10)]
    assert all(v is not None for v in verdicts)
    passed = [seed for seed, v in enumerate(verdicts) if v.ok]
    assert len(passed) <= 2, passed
    for v in verdicts:
        assert v.ok or any("DeLong" in r or "kept" in r for r in v.reasons)


def hidden_signal(pipeline: Pipeline) -> pd.DataFrame:
    """The shared frame with a label driven by a feature no baseline sees (the user's
    tenure), so the model can beat every baseline and only it."""
    frame = pipeline.data.frame.copy()
    tenure = frame[HIDDEN].fillna(0).to_numpy(np.float64)
    rank = pd.Series(tenure).rank(pct=True).to_numpy()
    rng = np.random.default_rng(5)
    frame[LABEL] = (rng.uniform(size=len(frame)) < 0.1 + 0.8 * rank).astype(np.int64)
    return frame


HIDDEN = "user_days_since_first_seen"


@pytest.mark.slow
def test_a_real_signal_is_promotable(pipeline: Pipeline, tmp_path) -> None:
    c = shipped(pipeline)
    frame = hidden_signal(pipeline)
    fitted = fit_model(frame, pipeline.data.service_features, c.training, c.heuristic)
    assert fitted.signal is not None and fitted.signal.ok, fitted.signal.reasons
    assert fitted.signal.margin_lower > c.training.guards.min_auc_margin
    layout = with_store(pipeline.layout, tmp_path)
    data = dataclasses.replace(pipeline.data, frame=frame)
    record_training(layout, c.training, fitted, data, run_name="hidden-signal")
    result = promote(layout, c.training)
    assert result.promoted, result.reasons


@pytest.fixture(scope="module")
def noise(pipeline: Pipeline) -> FittedModel:
    return noise_labels(pipeline)


def test_a_noise_label_is_no_signal(noise: FittedModel) -> None:
    assert noise.signal is not None and noise.signal.status == NO_SIGNAL
    assert noise.signal.reasons


def test_a_feature_anti_correlated_in_validation_is_no_signal_and_never_inverted(
    pipeline: Pipeline,
) -> None:
    # the label follows the pause in training and its opposite afterwards
    c = shipped(pipeline)
    frame = pipeline.data.frame.copy()
    windows = assign_windows(frame, c.training.split)
    pause = frame["pause_s"].fillna(0).to_numpy()
    later = np.zeros(len(frame), dtype=bool)
    later[np.concatenate([windows.validation, windows.test])] = True
    cut = np.median(pause)
    high = pause > cut
    frame[LABEL] = np.where(later, ~high, high).astype(np.int64)
    fitted = fit_model(frame, pipeline.data.service_features, c.training, c.heuristic)
    assert fitted.signal is not None and fitted.signal.status == NO_SIGNAL
    assert fitted.best_iteration < c.training.guards.min_trees
    assert any("kept" in r for r in fitted.signal.reasons)
    # the scores rank backwards on test and are reported so: calibration did not flip them
    ev = fitted.evaluation
    raw_auc = roc_auc_score(ev.labels, ev.scores["model (raw)"])
    assert raw_auc < 0.5
    assert ev.metrics["test_roc_auc"] <= raw_auc + 1e-9


@pytest.mark.slow
def test_a_no_signal_run_is_tagged_and_promote_refuses_it_even_forced(
    pipeline: Pipeline, noise: FittedModel, tmp_path
) -> None:
    layout = with_store(pipeline.layout, tmp_path)
    cfg = pipeline.configs.training
    data = dataclasses.replace(pipeline.data, frame=noise.frames["train"])
    outcome = record_training(layout, cfg, noise, data, run_name="noise")
    uri = tracking_uri(layout, cfg.tracking)
    with session(uri) as client:
        tags = client.get_run(outcome.run_id).data.tags
    assert tags[SIGNAL_TAG] == NO_SIGNAL and tags[REASON_TAG] != "-"
    result = promote(layout, cfg, force=True)
    assert not result.promoted and not result.forced and result.champion_after is None
    assert "no_signal" in result.reasons[0] and "--force" in result.reasons[0]
    with session(uri) as client:
        assert aliases(client, cfg.registry.model_name) == {"challenger": outcome.version}
        decision = client.get_run(result.run_id).data.tags["intent.decision"]
    assert decision == "rejected"


def test_train_prints_a_no_signal_run_plainly(noise: FittedModel) -> None:
    from training.cli import signal_message
    from training.run import TrainOutcome

    outcome = TrainOutcome("run", "7", Path("models/7"), {}, None, noise)
    text = signal_message(outcome)
    assert text.startswith("NO SIGNAL: version 7") and "intent promote` will refuse it" in text
    assert all(f"  - {reason}" in text for reason in noise.signal.reasons)


def test_the_gate_wants_the_challenger_above_the_strongest_baseline_on_test() -> None:
    from training.config import PromotionConfig
    from training.promote import baseline_reason

    cfg = PromotionConfig(
        auc_tolerance=0.005,
        min_margin_over_best_baseline=0.0,
        segment_tolerance=0.03,
        min_segment_rows=100,
        segments=["step"],
    )
    tags = {"intent.best_baseline": "logistic"}
    assert baseline_reason(0.02, tags, cfg) is None
    why = baseline_reason(-0.01, tags, cfg)
    assert why is not None and "-0.0100 over logistic" in why
    assert baseline_reason(0.0, tags, cfg) is not None  # equal is not above
    assert baseline_reason(None, tags, cfg) is None  # a run from before baselines existed


def test_train_prints_a_signal_with_its_margin_and_bound() -> None:
    from training.cli import signal_message
    from training.run import TrainOutcome

    verdict = signal_verdict([comparison("logistic", 0.87, 0.84, 0.002)], 60, GUARDS)
    outcome = TrainOutcome("run", "7", Path("models/7"), {}, None, _Fitted(verdict))
    text = signal_message(outcome)
    assert text.startswith("signal: the model beats every baseline on validation (+0.0300 AUC")
    assert "DeLong standard error 0.0020" in text and "+0.0267" in text


@dataclasses.dataclass
class _Fitted:
    signal: object
