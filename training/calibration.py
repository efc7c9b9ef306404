"""Probability calibration fitted on the validation window, expressed as the bundle's
post-step (`serving.bundle` calibration models), so training and serving apply one formula.

Isotonic regression is stored as its step function (`X_thresholds_`, `y_thresholds_`), which
`np.interp` reproduces exactly; Platt scaling is a logistic regression on the logit of the
raw probability, stored in sklearn's sign convention `1 / (1 + exp(a * logit + b))`.
"""

from __future__ import annotations

import numpy as np

from serving.bundle import (
    IsotonicCalibration,
    NoCalibration,
    PlattCalibration,
    apply_calibration,
)
from training.config import CalibrationConfig

Calibration = IsotonicCalibration | PlattCalibration | NoCalibration


def fit_calibration(raw: np.ndarray, labels: np.ndarray, cfg: CalibrationConfig) -> Calibration:
    """The configured calibration; Platt when isotonic has too few rows (or collapses)."""
    raw = np.asarray(raw, dtype=np.float64)
    labels = np.asarray(labels)
    if len(np.unique(labels)) < 2:
        raise ValueError("calibration needs both classes in the validation rows")
    if cfg.method == "none":
        return NoCalibration(kind="none")
    if cfg.method == "isotonic" and len(raw) >= cfg.min_rows_isotonic:
        isotonic = _isotonic(raw, labels)
        if isotonic is not None:
            return isotonic
    return _platt(raw, labels)


def _isotonic(raw: np.ndarray, labels: np.ndarray) -> IsotonicCalibration | None:
    from sklearn.isotonic import IsotonicRegression

    model = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(raw, labels)
    x, y = model.X_thresholds_, model.y_thresholds_
    if len(x) < 2:
        return None  # all validation scores equal: nothing to map
    return IsotonicCalibration(kind="isotonic", x=x.tolist(), y=y.tolist())


def _platt(raw: np.ndarray, labels: np.ndarray) -> PlattCalibration:
    from sklearn.linear_model import LogisticRegression

    clipped = np.clip(raw, 1e-15, 1 - 1e-15)
    logit = np.log(clipped / (1 - clipped)).reshape(-1, 1)
    model = LogisticRegression(C=1e6, max_iter=1000).fit(logit, labels)
    return PlattCalibration(
        kind="platt", a=-float(model.coef_[0, 0]), b=-float(model.intercept_[0]), input="logit"
    )


def calibrate(calibration: Calibration, raw: np.ndarray) -> np.ndarray:
    """Calibrated probabilities: the exact function the server applies."""
    return apply_calibration(calibration, raw)
