"""Calibration guards on hand-made scores: no calibrator inverts or flattens the ranking."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import log_loss, roc_auc_score

from core.bundle import IsotonicCalibration, PlattCalibration
from training.calibration import auc_guard, calibrate, choose_calibration, fit_calibration
from training.config import CalibrationConfig


def cfg(**changes) -> CalibrationConfig:
    base = {
        "method": "auto",
        "fit_rows": "window",
        "min_rows_isotonic": 100,
        "cv_folds": 5,
        "cv_seed": 0,
        "auc_tolerance": 1e-4,
        "max_isotonic_slope": 1e6,
    }
    return CalibrationConfig(**(base | changes))


def shifted(n: int, seed: int, shift: float = 1.5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True log-odds z; the raw score is shifted by `shift` (what class weights do)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 2, n)
    labels = (rng.uniform(size=n) < 1 / (1 + np.exp(-z))).astype(int)
    return 1 / (1 + np.exp(-(z + shift))), labels, 1 / (1 + np.exp(-z))


def test_platt_undoes_a_prior_shift_of_the_log_odds() -> None:
    raw, labels, truth = shifted(20_000, 1)
    cal = fit_calibration(raw, labels, cfg(method="platt"))
    assert isinstance(cal, PlattCalibration) and cal.input == "logit"
    assert cal.a == pytest.approx(-1.0, abs=0.05)
    assert cal.b == pytest.approx(1.5, abs=0.1)
    assert np.abs(calibrate(cal, raw) - truth).max() < 0.03


def test_platt_never_inverts_an_anti_correlated_score() -> None:
    # the raw score ranks backwards (what one noisy tree did on Diginetica): an unconstrained
    # Platt fit flips it; the constrained one keeps the order and only flattens it
    raw, labels, _ = shifted(5000, 2)
    backwards = 1 - raw
    cal = fit_calibration(backwards, labels, cfg(method="platt"))
    assert isinstance(cal, PlattCalibration) and cal.a < 0  # increasing in the raw score
    out = calibrate(cal, backwards)
    assert roc_auc_score(labels, out) == pytest.approx(roc_auc_score(labels, backwards), abs=1e-9)


def test_isotonic_is_a_strictly_increasing_interpolation_of_sklearns_fit() -> None:
    rng = np.random.default_rng(0)
    raw = rng.uniform(size=3000)
    labels = (rng.uniform(size=3000) < raw**2).astype(int)
    cal = fit_calibration(raw, labels, cfg(method="isotonic"))
    assert isinstance(cal, IsotonicCalibration)
    assert np.all(np.diff(cal.x) > 0) and np.all(np.diff(cal.y) > 0)
    reference = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(raw, labels)
    # the knots carry sklearn's block levels; in between, close to its step function
    assert set(np.round(cal.y, 12)) <= set(np.round(reference.predict(raw), 12))
    assert np.abs(calibrate(cal, raw) - reference.predict(raw)).mean() < 0.03
    # no ties inside the fitted range, so the ranking of the rows is kept
    assert roc_auc_score(labels, calibrate(cal, raw)) == pytest.approx(
        roc_auc_score(labels, raw), abs=1e-9
    )


def test_auto_picks_the_lowest_cross_validated_log_loss() -> None:
    raw, labels, _ = shifted(4000, 3)
    choice = choose_calibration(raw, labels, cfg())
    assert set(choice.cv_log_loss) == {"platt", "isotonic", "none"}
    assert choice.calibration.kind == min(choice.cv_log_loss, key=choice.cv_log_loss.get)
    # a shifted score is miscalibrated: calibrating beats the raw score out of sample
    assert choice.cv_log_loss["none"] > choice.cv_log_loss["platt"]
    raw_loss = log_loss(labels, raw)
    assert log_loss(labels, calibrate(choice.calibration, raw)) < raw_loss


def test_isotonic_is_no_candidate_on_few_rows_and_one_class_is_an_error() -> None:
    raw, labels, _ = shifted(60, 4)
    choice = choose_calibration(raw, labels, cfg())
    assert (
        "isotonic" not in choice.cv_log_loss and "min_rows_isotonic" in choice.refused["isotonic"]
    )
    assert fit_calibration(raw, labels, cfg(method="isotonic")).kind == "platt"
    with pytest.raises(ValueError, match="both classes"):
        fit_calibration(raw, np.zeros(60), cfg())


def test_a_too_steep_isotonic_falls_back_to_platt() -> None:
    raw, labels, _ = shifted(3000, 5)
    choice = choose_calibration(raw, labels, cfg(method="isotonic", max_isotonic_slope=1e-3))
    assert choice.calibration.kind == "platt" and "slope" in choice.refused["isotonic"]


def test_the_auc_guard_refuses_an_inverting_calibration() -> None:
    raw, labels, _ = shifted(2000, 6)
    inverting = PlattCalibration(kind="platt", a=1.0, b=0.0, input="logit")  # decreasing
    kept, why = auc_guard(inverting, raw, labels, 1e-4)
    assert kept.kind == "none" and why is not None and why[0] == "platt"
    assert "lowers validation AUC" in why[1]
    increasing = PlattCalibration(kind="platt", a=-0.5, b=0.3, input="logit")
    assert auc_guard(increasing, raw, labels, 1e-4) == (increasing, None)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    direction=st.sampled_from([1.0, -1.0, 0.0]),
    method=st.sampled_from(["auto", "platt", "isotonic"]),
)
def test_property_no_calibration_lowers_the_validation_auc(seed, direction, method) -> None:
    rng = np.random.default_rng(seed)
    n = 400
    labels = rng.integers(0, 2, n)
    labels[:2] = [0, 1]
    raw = 1 / (1 + np.exp(-(direction * (labels - 0.5) * 2 + rng.normal(0, 1, n))))
    choice = choose_calibration(raw, labels, cfg(method=method))
    out = calibrate(choice.calibration, raw)
    assert roc_auc_score(labels, out) >= roc_auc_score(labels, raw) - 1e-4
    if isinstance(choice.calibration, PlattCalibration):
        assert choice.calibration.a < 0
