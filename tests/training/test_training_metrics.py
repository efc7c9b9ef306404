"""Metrics, calibration and class weights on hand-made numbers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from training.config import ImbalanceConfig
from training.frame import TrainingError
from training.metrics import (
    binary_metrics,
    ece_estimate,
    expected_calibration_error,
    named_segments,
    segment_aucs,
    top_slice,
)
from training.model import class_weights


def test_ece_by_hand() -> None:
    # bin [0.1, 0.2): scores 0.1, 0.1, observed 1 of 2 -> |0.5 - 0.1| = 0.4 over 2 rows
    # bin [0.9, 1.0]: scores 0.9, 0.9, observed 2 of 2 -> |1.0 - 0.9| = 0.1 over 2 rows
    labels = np.array([0, 1, 1, 1])
    scores = np.array([0.1, 0.1, 0.9, 0.9])
    assert expected_calibration_error(labels, scores, bins=10) == pytest.approx(0.25)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.tuples(st.floats(0, 1), st.integers(0, 1)), min_size=1, max_size=200),
    st.integers(2, 20),
)
def test_ece_is_between_zero_and_one(pairs, bins) -> None:
    scores, labels = (np.array(x) for x in zip(*pairs, strict=True))
    assert 0.0 <= expected_calibration_error(labels, scores, bins) <= 1.0


def test_top_slice_lift_and_recall() -> None:
    labels = np.array([1, 0, 1, 0, 0, 0, 0, 0, 0, 1])
    scores = np.linspace(1.0, 0.1, 10)  # row 0 highest
    top = top_slice(labels, scores, 0.2)  # rows 0 and 1: one hit of 2
    assert top.lift == pytest.approx(0.5 / 0.3)
    assert top.recall == pytest.approx(1 / 3)
    assert top.threshold == pytest.approx(0.9)


def test_binary_metrics_perfect_and_reversed_scores() -> None:
    labels = np.array([0, 0, 1, 1])
    good = binary_metrics(labels, np.array([0.1, 0.2, 0.8, 0.9]), ece_bins=10, top_fraction=0.5)
    bad = binary_metrics(labels, np.array([0.9, 0.8, 0.2, 0.1]), ece_bins=10, top_fraction=0.5)
    assert good["roc_auc"] == 1.0 and bad["roc_auc"] == 0.0
    assert good["log_loss"] < bad["log_loss"] and good["brier"] < bad["brier"]
    assert good["recall_top_decile"] == 1.0 and bad["recall_top_decile"] == 0.0
    with pytest.raises(ValueError, match="NaN"):
        binary_metrics(labels, np.array([0.1, np.nan, 0.8, 0.9]), ece_bins=10, top_fraction=0.5)


def test_segment_aucs_skip_small_and_one_class_segments() -> None:
    frame = pd.DataFrame({"device": ["a"] * 6 + ["b"] * 3 + ["c"] * 6})
    labels = np.array([0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 1, 1, 1, 1, 1])
    scores = np.array([0.1, 0.9, 0.2, 0.8, 0.3, 0.7, 0.5, 0.5, 0.5, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    table = segment_aucs(frame, labels, scores, ["device"], min_rows=4)
    by_value = table.set_index("value")["roc_auc"]
    assert by_value["a"] == 1.0
    assert math.isnan(by_value["b"])  # 3 rows < 4
    assert math.isnan(by_value["c"])  # one class only
    assert named_segments(table, "test") == {"test_roc_auc.device.a": 1.0}


def test_balanced_class_weights_are_capped() -> None:
    labels = np.array([1] * 10 + [0] * 90)
    w = class_weights(labels, ImbalanceConfig(strategy="balanced", max_weight=100))
    assert w.positive == pytest.approx(5.0) and w.negative == pytest.approx(100 / 180)
    assert (w.of(labels) * (labels == 1)).sum() == pytest.approx(
        (w.of(labels) * (labels == 0)).sum()
    )
    capped = class_weights(labels, ImbalanceConfig(strategy="balanced", max_weight=3))
    assert capped.positive == pytest.approx(3 * capped.negative)
    none = class_weights(labels, ImbalanceConfig(strategy="none", max_weight=3))
    assert (none.negative, none.positive) == (1.0, 1.0)
    with pytest.raises(TrainingError, match="both classes"):
        class_weights(np.ones(5), ImbalanceConfig(strategy="balanced", max_weight=3))


def test_equal_mass_bins_split_rows_evenly_by_score() -> None:
    # 4 bins of 2 rows in score order: gaps |0-0.15|, |0.5-0.35|, |0.5-0.55|, |1-0.85|
    scores = np.array([0.9, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8])
    labels = np.array([1, 0, 0, 1, 0, 0, 1, 1])
    expected = (0.15 + 0.15 + 0.05 + 0.15) * 2 / 8
    assert expected_calibration_error(labels, scores, 4, "equal_mass") == pytest.approx(expected)
    with pytest.raises(ValueError, match="binning"):
        expected_calibration_error(labels, scores, 4, "quantile")


def test_ece_estimate_tells_a_calibrated_model_from_a_shifted_one() -> None:
    rng = np.random.default_rng(0)
    p = rng.beta(2, 2, 8000)
    labels = (rng.uniform(size=len(p)) < p).astype(np.int64)
    kwargs = {"bins": 10, "binning": "equal_mass", "resamples": 200, "confidence": 0.95}
    calibrated = ece_estimate(labels, p, seed=1, **kwargs)
    shifted = ece_estimate(labels, np.clip(p + 0.03, 0, 1), seed=1, **kwargs)
    # a calibrated model measures about its noise floor; the floor is far from zero
    assert calibrated.low <= calibrated.ece <= calibrated.high
    assert calibrated.floor > 0.005 and abs(calibrated.ece - calibrated.floor) < 0.005
    assert calibrated.p_calibrated > 0.05
    assert shifted.low > 0.02
    assert shifted.p_calibrated < 0.01
    assert calibrated.ece == pytest.approx(expected_calibration_error(labels, p, 10, "equal_mass"))


def test_train_prints_the_ece_with_its_interval_and_floor() -> None:
    from training.cli import ece_line
    from training.config import EvaluationConfig

    cfg = EvaluationConfig(
        ece_bins=10,
        ece_binning="equal_mass",
        ece_resamples=200,
        ece_confidence=0.95,
        ece_seed=0,
        top_fraction=0.1,
        min_segment_rows=50,
        segments=["step"],
        shap_rows=100,
        plot_top_features=5,
        behaviour_rows=100,
        behaviour_pause_step_s=20,
        behaviour_cta_fails_step=2,
    )
    metrics = {"test_ece": 0.0137, "test_ece_ci_low": 0.0103, "test_ece_ci_high": 0.0194}
    metrics["test_ece_floor"] = 0.0068
    line = ece_line(metrics, "", cfg)
    assert line.startswith("0.0137 [0.0103, 0.0194] (95% bootstrap, 10 equal-mass bins)")
    assert line.endswith("noise floor 0.0068")
