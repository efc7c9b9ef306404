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


def expected_calibration_error(labels: np.ndarray, scores: np.ndarray, bins: int) -> float:
    """Row-weighted mean |observed rate - mean score| over equal-width score bins."""
    labels = np.asarray(labels, dtype=np.float64)
    scores = np.clip(np.asarray(scores, dtype=np.float64), 0.0, 1.0)
    which = np.minimum((scores * bins).astype(int), bins - 1)
    total = 0.0
    for b in np.unique(which):
        in_bin = which == b
        total += in_bin.sum() * abs(labels[in_bin].mean() - scores[in_bin].mean())
    return float(total / len(labels))


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
    labels: np.ndarray, scores: np.ndarray, *, ece_bins: int, top_fraction: float
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
        "ece": expected_calibration_error(labels, scores, ece_bins),
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
