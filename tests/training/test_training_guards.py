"""Training guards on data built to trigger them: a label that is noise, a feature whose
relation to the label flips in validation. Such a run is recorded as `no_signal`, reported
honestly (never inverted by calibration) and refused by `intent promote`, even with --force."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score
from training_pipeline import Pipeline, with_store

from training.config import GuardConfig
from training.fit import FittedModel, fit_model
from training.frame import LABEL
from training.guards import NO_SIGNAL, REASON_TAG, SIGNAL, SIGNAL_TAG, signal_verdict
from training.promote import promote
from training.run import record_training
from training.split import assign_windows
from training.tracking import aliases, session, tracking_uri

GUARDS = GuardConfig(min_auc_margin=0.005, min_trees=5)


def test_a_model_above_every_baseline_with_enough_trees_has_signal() -> None:
    verdict = signal_verdict(0.86, {"rules": 0.5, "step_prior": 0.82, "logistic": 0.84}, 60, GUARDS)
    assert verdict.ok and verdict.best_baseline == "logistic"
    assert verdict.margin == pytest.approx(0.02) and verdict.tags[SIGNAL_TAG] == SIGNAL


def test_each_guard_alone_makes_a_run_no_signal() -> None:
    close = signal_verdict(0.843, {"step_prior": 0.82, "logistic": 0.84}, 60, GUARDS)
    assert close.status == NO_SIGNAL and "strongest baseline (logistic" in close.reasons[0]
    stump = signal_verdict(0.95, {"logistic": 0.84}, 1, GUARDS)
    assert stump.status == NO_SIGNAL and "kept 1 tree" in stump.reasons[0]
    assert "guards.min_trees=5" in stump.tags[REASON_TAG]


@settings(max_examples=60, deadline=None)
@given(
    model=st.floats(0, 1),
    baselines=st.dictionaries(
        st.sampled_from(["rules", "step_prior", "logistic"]), st.floats(0, 1)
    ),
    trees=st.integers(1, 200),
)
def test_property_no_signal_exactly_when_a_guard_fails(model, baselines, trees) -> None:
    verdict = signal_verdict(model, baselines, trees, GUARDS)
    best = max(baselines.values(), default=-math.inf)
    fails = not model - best > GUARDS.min_auc_margin or trees < GUARDS.min_trees
    assert (verdict.status == NO_SIGNAL) is fails
    assert len(verdict.reasons) == int(not model - best > GUARDS.min_auc_margin) + int(
        trees < GUARDS.min_trees
    )


def noise_labels(pipeline: Pipeline) -> FittedModel:
    """The shared frame with a label that is a coin flip at the real base rate."""
    frame = pipeline.data.frame.copy()
    rng = np.random.default_rng(11)
    frame[LABEL] = (rng.uniform(size=len(frame)) < frame[LABEL].mean()).astype(np.int64)
    c = pipeline.configs
    return fit_model(frame, pipeline.data.service_features, c.training, c.heuristic)


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
    c = pipeline.configs
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
