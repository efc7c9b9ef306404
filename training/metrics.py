"""Evaluation metrics with one naming scheme, so MLflow's compare view lines runs up.

Names are `<scorer prefix><split>_<metric>`: `test_roc_auc` (the model), `rules_test_roc_auc`
(the rules heuristic), `oracle_test_roc_auc` (the simulator's true probability); segment
AUCs add `.<segment>.<value>`, e.g. `test_roc_auc.step.identity_verification`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from training.frame import segment_labels

_EPS = 1e-15


def has_both_classes(labels: np.ndarray) -> bool:
    labels = np.asarray(labels)
    return len(labels) > 0 and 0 < labels.sum() < len(labels)


def expected_calibration_error(
    labels: np.ndarray, scores: np.ndarray, bins: int, binning: str = "equal_width"
) -> float:
    """Row-weighted mean |observed rate - mean score| over score bins (`calibration_bins`)."""
    labels = np.asarray(labels, dtype=np.float64)
    scores = np.clip(np.asarray(scores, dtype=np.float64), 0.0, 1.0)
    order, starts = calibration_bins(scores, bins, binning)
    return float(_binned_gaps(labels[order], scores[order], starts, np.ones((1, len(order))))[0])


def calibration_bins(scores: np.ndarray, bins: int, binning: str) -> tuple[np.ndarray, np.ndarray]:
    """Rows sorted by score and the start of each non-empty bin in that order.

    `equal_mass`: `bins` runs of (nearly) equal row counts, so every bin's observed rate
    has about the same noise; `equal_width`: [0, 1/bins), [1/bins, 2/bins), ..., which
    leaves the tails to a handful of rows and the middle to most of them."""
    order = np.argsort(scores, kind="stable")
    n = len(order)
    if binning == "equal_mass":
        starts = np.unique(np.linspace(0, n, bins + 1).astype(int)[:-1])
    elif binning == "equal_width":
        which = np.minimum((scores[order] * bins).astype(int), bins - 1)
        starts = np.flatnonzero(np.r_[True, np.diff(which) != 0])
    else:
        raise ValueError(f"unknown binning {binning!r}: equal_mass or equal_width")
    return order, starts[starts < n]


def _binned_gaps(
    labels: np.ndarray, scores: np.ndarray, starts: np.ndarray, weights: np.ndarray
) -> np.ndarray:
    """ECE per row of `weights` (resample counts of the sorted rows; one row of ones is the
    plain estimate), bins fixed at `starts`."""
    count = np.add.reduceat(weights, starts, axis=1)
    hits = np.add.reduceat(weights * labels, starts, axis=1)
    mass = np.add.reduceat(weights * scores, starts, axis=1)
    gap = np.abs(hits - mass)  # = count * |observed rate - mean score|
    total = count.sum(axis=1)
    return gap.sum(axis=1) / np.where(total > 0, total, 1)


@dataclass(frozen=True)
class EceEstimate:
    """ECE with its bootstrap interval and the noise floor of these rows.

    `floor`: the mean ECE when the labels are drawn from the scores themselves (consistency
    resampling, Broecker & Smith 2007), i.e. what a perfectly calibrated model with these
    scores would measure on this many rows: the estimator's bias, not the model's error.
    `p_calibrated`: the share of those draws whose ECE is at least the observed one."""

    ece: float
    low: float
    high: float
    floor: float
    p_calibrated: float


def ece_estimate(
    labels: np.ndarray,
    scores: np.ndarray,
    *,
    bins: int,
    binning: str,
    resamples: int,
    confidence: float,
    seed: int,
) -> EceEstimate:
    """ECE over fixed bins, a percentile bootstrap interval over rows and the noise floor."""
    labels = np.asarray(labels, dtype=np.float64)
    scores = np.clip(np.asarray(scores, dtype=np.float64), 0.0, 1.0)
    order, starts = calibration_bins(scores, bins, binning)
    y, p = labels[order], scores[order]
    n = len(y)
    ece = float(_binned_gaps(y, p, starts, np.ones((1, n)))[0])
    rng = np.random.default_rng(seed)
    counts = rng.poisson(1.0, size=(resamples, n)).astype(np.float64)  # Poisson bootstrap
    boot = _binned_gaps(y, p, starts, counts)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(boot, [tail, 100 - tail])
    drawn = (rng.uniform(size=(resamples, n)) < p).astype(np.float64)
    floor = _binned_gaps(drawn, p, starts, np.ones((1, n)))
    return EceEstimate(
        ece, float(low), float(high), float(floor.mean()), float(np.mean(floor >= ece))
    )


@dataclass(frozen=True)
class TopSlice:
    threshold: float  # lowest score inside the top slice
    lift: float  # precision in the slice / base rate
    recall: float  # share of all positives inside the slice


def top_slice(labels: np.ndarray, scores: np.ndarray, fraction: float) -> TopSlice:
    """Lift and recall of the `fraction` highest scores (ties broken by row order)."""
    labels = np.asarray(labels, dtype=np.float64)
    k = max(1, math.ceil(len(labels) * fraction))
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")[:k]
    base = labels.mean()
    hits = labels[order].sum()
    return TopSlice(
        threshold=float(np.asarray(scores)[order].min()),
        lift=float(hits / k / base) if base > 0 else math.nan,
        recall=float(hits / labels.sum()) if labels.sum() > 0 else math.nan,
    )


def binary_metrics(
    labels: np.ndarray,
    scores: np.ndarray,
    *,
    ece_bins: int,
    top_fraction: float,
    ece_binning: str = "equal_width",
) -> dict[str, float]:
    """ROC-AUC, PR-AUC, log loss, Brier, ECE, lift / recall at the top slice."""
    from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

    labels = np.asarray(labels)
    scores = np.asarray(scores, dtype=np.float64)
    if np.isnan(scores).any():
        raise ValueError(f"{int(np.isnan(scores).sum())} scores are NaN")
    clipped = np.clip(scores, _EPS, 1 - _EPS)
    top = top_slice(labels, scores, top_fraction)
    both = has_both_classes(labels)
    return {
        "roc_auc": float(roc_auc_score(labels, scores)) if both else math.nan,
        "pr_auc": float(average_precision_score(labels, scores)) if both else math.nan,
        "log_loss": float(log_loss(labels, clipped, labels=[0, 1])),
        "brier": float(brier_score_loss(labels, np.clip(scores, 0, 1))),
        "ece": expected_calibration_error(labels, scores, ece_bins, ece_binning),
        "lift_top_decile": top.lift,
        "recall_top_decile": top.recall,
    }


def clean(value: str) -> str:
    """A segment value as a metric-name part (MLflow allows [A-Za-z0-9_-. /:])."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", value) or "_"


def segment_aucs(
    frame: pd.DataFrame,
    labels: np.ndarray,
    scores: np.ndarray,
    segments: Sequence[str],
    min_rows: int,
) -> pd.DataFrame:
    """AUC per segment value: columns segment, value, rows, positives, roc_auc (NaN when the
    segment is smaller than `min_rows` or has one class only)."""
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(labels)
    rows = []
    for segment in segments:
        values = segment_labels(frame, segment).to_numpy()
        for value in sorted(set(values)):
            mask = values == value
            y = labels[mask]
            ok = mask.sum() >= min_rows and has_both_classes(y)
            rows.append(
                {
                    "segment": segment,
                    "value": value,
                    "rows": int(mask.sum()),
                    "positives": int(y.sum()),
                    "roc_auc": float(roc_auc_score(y, scores[mask])) if ok else math.nan,
                }
            )
    return pd.DataFrame(rows, columns=["segment", "value", "rows", "positives", "roc_auc"])


def named(metrics: Mapping[str, float], split: str, prefix: str = "") -> dict[str, float]:
    """`{"roc_auc": x}` -> `{"<prefix>test_roc_auc": x}`."""
    return {f"{prefix}{split}_{name}": value for name, value in metrics.items()}


def named_segments(table: pd.DataFrame, split: str, prefix: str = "") -> dict[str, float]:
    """Segment AUCs as metric names, NaN ones left out (too small / one class)."""
    out = {}
    for row in table.itertuples(index=False):
        if not math.isnan(row.roc_auc):
            out[f"{prefix}{split}_roc_auc.{row.segment}.{clean(str(row.value))}"] = row.roc_auc
    return out
