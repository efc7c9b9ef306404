"""DeLong's paired AUC difference against scikit-learn's AUCs and a paired bootstrap."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from training.delong import paired_auc_difference


def two_scorers(seed: int, rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    risk = rng.normal(size=rows)
    labels = (rng.uniform(size=rows) < 1 / (1 + np.exp(-risk))).astype(np.int64)
    a = np.round(risk + rng.normal(scale=0.8, size=rows), 1)  # rounded: ties count one half
    b = risk + rng.normal(scale=1.2, size=rows)
    return labels, a, b


def test_aucs_match_scikit_learn_with_ties() -> None:
    labels, a, b = two_scorers(0, 500)
    d = paired_auc_difference(labels, a, b, 0.95)
    assert d.auc_a == pytest.approx(roc_auc_score(labels, a))
    assert d.auc_b == pytest.approx(roc_auc_score(labels, b))
    assert d.difference == pytest.approx(d.auc_a - d.auc_b)
    assert d.lower == pytest.approx(d.difference - 1.6448536 * d.standard_error)


def test_standard_error_matches_a_paired_bootstrap() -> None:
    labels, a, b = two_scorers(1, 2000)
    d = paired_auc_difference(labels, a, b, 0.95)
    rng = np.random.default_rng(2)
    draws = []
    for _ in range(400):
        i = rng.integers(0, len(labels), len(labels))
        draws.append(roc_auc_score(labels[i], a[i]) - roc_auc_score(labels[i], b[i]))
    assert d.standard_error == pytest.approx(np.std(draws), rel=0.15)


def test_paired_error_is_smaller_than_the_unpaired_sum() -> None:
    # correlated scorers: the paired difference is far less noisy than each AUC alone
    labels, a, b = two_scorers(3, 2000)
    paired = paired_auc_difference(labels, a, b, 0.95).standard_error
    alone_a = paired_auc_difference(labels, a, np.zeros(len(a)), 0.95).standard_error
    alone_b = paired_auc_difference(labels, b, np.zeros(len(b)), 0.95).standard_error
    assert paired < np.hypot(alone_a, alone_b)


def test_identical_scores_differ_by_nothing_and_one_class_has_no_auc() -> None:
    labels, a, _ = two_scorers(4, 300)
    same = paired_auc_difference(labels, a, a, 0.95)
    assert same.difference == 0.0 and same.standard_error == 0.0 and same.lower == 0.0
    with pytest.raises(ValueError, match="both classes"):
        paired_auc_difference(np.ones(10), a[:10], a[:10], 0.95)
