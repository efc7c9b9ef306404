"""DeLong's paired test of two ROC-AUCs scored on the same rows.

The guard "the model beats the strongest baseline" needs the noise of the AUC difference,
not a fixed margin: on a few thousand rows a label that is pure noise can beat a baseline by
0.02. Both AUCs come from the same rows, so their errors are correlated and the difference's
variance is far smaller than the sum of the two; DeLong (1988) estimates it from the
per-row structural components, here in the midrank form of Sun & Xu (2014), O(n log n).
scipy has no paired AUC test and no maintained package ships one with a stable API.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class AucDifference:
    """AUC(a) - AUC(b) on the same rows, its standard error and one-sided lower bound."""

    auc_a: float
    auc_b: float
    difference: float
    standard_error: float
    lower: float  # difference - z(confidence) * standard_error
    confidence: float


def paired_auc_difference(
    labels: np.ndarray, a: np.ndarray, b: np.ndarray, confidence: float
) -> AucDifference:
    """DeLong's estimate of AUC(a) - AUC(b) and its one-sided `confidence` lower bound.

    Raises ValueError when the labels hold one class only (no AUC exists).
    """
    from scipy.stats import norm

    labels = np.asarray(labels).astype(bool)
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if positives == 0 or negatives == 0:
        raise ValueError("an AUC needs both classes")
    scores = np.vstack([np.asarray(a, np.float64), np.asarray(b, np.float64)])
    aucs, v_pos, v_neg = _structural_components(scores[:, labels], scores[:, ~labels])
    s_pos = np.atleast_2d(np.cov(v_pos)) if positives > 1 else np.zeros((2, 2))
    s_neg = np.atleast_2d(np.cov(v_neg)) if negatives > 1 else np.zeros((2, 2))
    contrast = np.array([1.0, -1.0])
    variance = contrast @ s_pos @ contrast / positives + contrast @ s_neg @ contrast / negatives
    se = float(np.sqrt(max(variance, 0.0)))
    difference = float(aucs[0] - aucs[1])
    lower = difference - float(norm.ppf(confidence)) * se
    return AucDifference(float(aucs[0]), float(aucs[1]), difference, se, lower, confidence)


def _structural_components(
    pos: np.ndarray, neg: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per scorer (rows): the AUC, each positive's share of negatives it outranks (V10) and
    each negative's share of positives that outrank it (V01), ties counting one half."""
    from scipy.stats import rankdata

    m, n = pos.shape[1], neg.shape[1]
    rank_pos = rankdata(pos, axis=1)
    rank_neg = rankdata(neg, axis=1)
    rank_all = rankdata(np.hstack([pos, neg]), axis=1)
    v_pos = (rank_all[:, :m] - rank_pos) / n
    v_neg = 1.0 - (rank_all[:, m:] - rank_neg) / m
    aucs = (rank_all[:, :m].sum(axis=1) - m * (m + 1) / 2) / (m * n)
    return aucs, v_pos, v_neg
