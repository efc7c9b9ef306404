"""Probability calibration fitted on the validation window, expressed as the bundle's
post-step (`core.bundle` calibration models), so training and serving apply one formula.

A calibrator must never invert or flatten the ranking the model learned (a negative Platt
slope once turned a test AUC of 0.466 into a reported 0.534). So every candidate is
increasing by construction:

- `platt`: a logistic regression on the logit of the raw probability whose slope is
  constrained to be positive (bounded fit), stored in sklearn's sign convention
  `1 / (1 + exp(a * logit + b))`, i.e. `a < 0`;
- `isotonic`: sklearn's isotonic regression, stored as a strictly increasing piecewise
  linear function through its blocks (first block's lowest score, each block's mean score,
  last block's highest score), which `np.interp` reproduces; unlike the raw step function it
  creates no ties inside the fitted range, and its steepest slope is checked so the float32
  ONNX graph's tiny differences stay within the parity tolerance;
- `none`: the raw probability.

`auto` picks the candidate with the lowest cross-validated log loss over the calibration
rows. Whatever is chosen is then refused (replaced by `none`, with the reason recorded) if it
lowers the validation AUC of the raw scores by more than `auc_tolerance`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from core.bundle import (
    IsotonicCalibration,
    NoCalibration,
    PlattCalibration,
    apply_calibration,
)
from training.config import CalibrationConfig

Calibration = IsotonicCalibration | PlattCalibration | NoCalibration
CANDIDATES: tuple[str, ...] = ("platt", "isotonic", "none")
_EPS = 1e-15


@dataclass(frozen=True)
class CalibrationChoice:
    """The calibration kept, and why: CV log loss per candidate, refusals with reasons."""

    calibration: Calibration
    requested: str  # the configured method
    cv_log_loss: dict[str, float] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)  # candidate -> reason
    raw_auc: float = float("nan")
    calibrated_auc: float = float("nan")

    @property
    def note(self) -> str:
        """One line for the run's tags and the CLI."""
        parts = [f"{self.calibration.kind} (requested {self.requested})"]
        parts += [f"{k} refused: {why}" for k, why in self.refused.items()]
        return "; ".join(parts)


def fit_calibration(raw: np.ndarray, labels: np.ndarray, cfg: CalibrationConfig) -> Calibration:
    """The calibration `choose_calibration` keeps (see the module doc)."""
    return choose_calibration(raw, labels, cfg).calibration


def choose_calibration(
    raw: np.ndarray, labels: np.ndarray, cfg: CalibrationConfig
) -> CalibrationChoice:
    """Fit the configured calibration (or, for `auto`, the best by CV log loss) on
    (raw, labels), then refuse it when it lowers the AUC of the raw scores."""
    raw = np.asarray(raw, dtype=np.float64)
    labels = np.asarray(labels).astype(np.int64)
    if len(np.unique(labels)) < 2:
        raise ValueError(
            "calibration needs both classes in the validation rows; more data (or a longer "
            "validation window, split.validation_fraction) is needed"
        )
    refused: dict[str, str] = {}
    cv: dict[str, float] = {}
    if cfg.method == "auto":
        for kind in CANDIDATES:
            why = _unusable(kind, raw, cfg)
            if why:
                refused[kind] = why
                continue
            cv[kind] = _cv_log_loss(kind, raw, labels, cfg)
        kind = min(cv, key=cv.__getitem__)
    else:
        kind = cfg.method
        why = _unusable(kind, raw, cfg)
        if why:
            refused[kind] = why
            kind = "platt" if kind == "isotonic" else "none"
    calibration = _fit(kind, raw, labels)
    if isinstance(calibration, IsotonicCalibration):
        slope = max_slope(calibration)
        if slope > cfg.max_isotonic_slope:
            refused["isotonic"] = (
                f"steepest slope {slope:.3g} > max_isotonic_slope={cfg.max_isotonic_slope:g} "
                "(float32 ONNX differences would break the parity check)"
            )
            calibration = _fit("platt", raw, labels)
    calibration, why = auc_guard(calibration, raw, labels, cfg.auc_tolerance)
    if why:
        refused[why[0]] = why[1]
    raw_auc = _auc(labels, raw)
    calibrated_auc = _auc(labels, apply_calibration(calibration, raw))
    return CalibrationChoice(calibration, cfg.method, cv, refused, raw_auc, calibrated_auc)


def auc_guard(
    calibration: Calibration, raw: np.ndarray, labels: np.ndarray, tolerance: float
) -> tuple[Calibration, tuple[str, str] | None]:
    """`calibration`, or `none` with (kind, reason) when it lowers the AUC of the raw scores
    on these rows by more than `tolerance` (inverted or flattened ranking)."""
    if calibration.kind == "none":
        return calibration, None
    before = _auc(labels, raw)
    after = _auc(labels, apply_calibration(calibration, raw))
    if after >= before - tolerance:
        return calibration, None
    reason = (
        f"lowers validation AUC from {before:.4f} to {after:.4f} "
        f"(calibration.auc_tolerance {tolerance:g})"
    )
    return NoCalibration(kind="none"), (calibration.kind, reason)


def _unusable(kind: str, raw: np.ndarray, cfg: CalibrationConfig) -> str:
    if kind == "isotonic" and len(raw) < cfg.min_rows_isotonic:
        return f"{len(raw)} rows < min_rows_isotonic={cfg.min_rows_isotonic}"
    if kind != "none" and np.ptp(raw) == 0:
        return "every validation score is equal: nothing to map"
    return ""


def _cv_log_loss(kind: str, raw: np.ndarray, labels: np.ndarray, cfg: CalibrationConfig) -> float:
    """Mean held-out log loss over stratified folds of the calibration rows."""
    from sklearn.metrics import log_loss
    from sklearn.model_selection import StratifiedKFold

    folds = min(cfg.cv_folds, int(np.bincount(labels).min()))
    if folds < 2:
        return _log_loss(labels, apply_calibration(_fit(kind, raw, labels), raw))
    losses = []
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=cfg.cv_seed)
    for fit_rows, held_out in splitter.split(raw.reshape(-1, 1), labels):
        if np.ptp(raw[fit_rows]) == 0 or len(np.unique(labels[fit_rows])) < 2:
            fitted: Calibration = NoCalibration(kind="none")
        else:
            fitted = _fit(kind, raw[fit_rows], labels[fit_rows])
        p = np.clip(apply_calibration(fitted, raw[held_out]), _EPS, 1 - _EPS)
        losses.append(log_loss(labels[held_out], p, labels=[0, 1]))
    return float(np.mean(losses))


def _log_loss(labels: np.ndarray, p: np.ndarray) -> float:
    from sklearn.metrics import log_loss

    return float(log_loss(labels, np.clip(p, _EPS, 1 - _EPS), labels=[0, 1]))


def _fit(kind: str, raw: np.ndarray, labels: np.ndarray) -> Calibration:
    if kind == "platt":
        return _platt(raw, labels)
    if kind == "isotonic":
        return _isotonic(raw, labels) or _platt(raw, labels)
    return NoCalibration(kind="none")


def _isotonic(raw: np.ndarray, labels: np.ndarray) -> IsotonicCalibration | None:
    """Strictly increasing interpolation through the isotonic blocks (see the module doc)."""
    import pandas as pd
    from sklearn.isotonic import IsotonicRegression

    fitted = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(raw, labels)
    level = fitted.predict(raw)
    blocks = (
        pd.DataFrame({"x": raw, "y": level})
        .groupby("y", sort=True)["x"]
        .agg(["min", "mean", "max"])
        .reset_index()
    )
    if len(blocks) < 2:
        return None  # one block: a constant, which would flatten the ranking
    x = blocks["mean"].to_numpy().copy()
    y = blocks["y"].to_numpy()
    x[0], x[-1] = blocks["min"].iloc[0], blocks["max"].iloc[-1]
    if np.any(np.diff(x) <= 0):
        return None  # blocks' means not strictly ordered (cannot happen for PAV blocks)
    return IsotonicCalibration(kind="isotonic", x=x.tolist(), y=y.tolist())


def max_slope(calibration: IsotonicCalibration) -> float:
    """The steepest segment of an isotonic interpolation."""
    x, y = np.asarray(calibration.x), np.asarray(calibration.y)
    return float(np.max(np.diff(y) / np.diff(x)))


def _platt(raw: np.ndarray, labels: np.ndarray) -> PlattCalibration:
    """Logistic regression on the logit, slope bounded away from zero (never inverting)."""
    from scipy.optimize import minimize
    from scipy.special import expit, log_expit

    clipped = np.clip(raw, _EPS, 1 - _EPS)
    logit = np.log(clipped / (1 - clipped))
    scale = float(np.std(logit)) or 1.0
    z = logit / scale  # standardised for a well-conditioned fit
    y = labels.astype(np.float64)

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        slope, intercept = theta
        t = slope * z + intercept
        value = -np.mean(y * log_expit(t) + (1 - y) * log_expit(-t))
        residual = expit(t) - y
        return float(value), np.array([np.mean(residual * z), np.mean(residual)])

    base = float(np.clip(y.mean(), _EPS, 1 - _EPS))
    start = np.array([1.0, np.log(base / (1 - base))])
    result = minimize(
        loss, start, jac=True, method="L-BFGS-B", bounds=[(_MIN_SLOPE, None), (None, None)]
    )
    slope, intercept = result.x
    return PlattCalibration(
        kind="platt", a=-float(slope / scale), b=-float(intercept), input="logit"
    )


# Smallest Platt slope on standardised logits: positive, so the map is strictly increasing.
_MIN_SLOPE = 1e-3


def calibrate(calibration: Calibration, raw: np.ndarray) -> np.ndarray:
    """Calibrated probabilities: the exact function the server applies."""
    return apply_calibration(calibration, raw)


def _auc(labels: np.ndarray, scores: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores))
