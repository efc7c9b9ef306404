"""Behavioural checks of a trained model on real test rows (directional and invariance).

Each check perturbs one column of a sample of test rows, everything else equal, and
compares the mean calibrated score before and after: more failed CTA clicks or a longer
pause must not lower it; an id or the oracle must not change it at all. Training logs the
results beside the metrics; the tests assert them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from training.config import EvaluationConfig
from training.frame import ORACLE

Scorer = Callable[[pd.DataFrame], np.ndarray]
# Columns that must not move the score (ids, bookkeeping, the evaluation-only oracle).
IRRELEVANT: tuple[str, ...] = ("user_id", "session_id", "decision_key", "episode", ORACLE)


@dataclass(frozen=True)
class BehaviourCheck:
    name: str
    kind: Literal["directional", "invariance"]
    rows: int
    mean_before: float
    mean_after: float
    max_abs_change: float
    passed: bool

    @property
    def mean_change(self) -> float:
        return self.mean_after - self.mean_before


def directional(
    score: Scorer, sample: pd.DataFrame, column: str, step: float, name: str
) -> BehaviourCheck:
    """`column + step` must not lower the mean score (rows where it is missing stay so)."""
    changed = sample.copy()
    changed[column] = pd.to_numeric(changed[column]) + step
    return _compare(score, sample, changed, name, "directional")


def invariance(score: Scorer, sample: pd.DataFrame, column: str, name: str) -> BehaviourCheck:
    """Replacing `column` with other values must not change any score."""
    changed = sample.copy()
    if pd.api.types.is_numeric_dtype(changed[column]):
        changed[column] = np.random.default_rng(0).uniform(0, 1, len(changed))
    else:
        changed[column] = [f"other-{i}" for i in range(len(changed))]
    return _compare(score, sample, changed, name, "invariance")


def _compare(
    score: Scorer,
    before: pd.DataFrame,
    after: pd.DataFrame,
    name: str,
    kind: Literal["directional", "invariance"],
) -> BehaviourCheck:
    a, b = score(before), score(after)
    mean_a, mean_b = float(a.mean()), float(b.mean())
    max_change = float(np.abs(b - a).max()) if len(a) else 0.0
    passed = mean_b >= mean_a - 1e-12 if kind == "directional" else max_change == 0.0
    return BehaviourCheck(name, kind, len(a), mean_a, mean_b, max_change, passed)


def behaviour_checks(
    score: Scorer, test: pd.DataFrame, cfg: EvaluationConfig
) -> list[BehaviourCheck]:
    """The standard checks on a fixed sample of test rows (same rows for the same data)."""
    sample = test.sample(n=min(cfg.behaviour_rows, len(test)), random_state=0)
    checks = [
        directional(score, sample, "cta_fails", cfg.behaviour_cta_fails_step, "more_cta_fails"),
        directional(score, sample, "pause_s", cfg.behaviour_pause_step_s, "longer_pause"),
    ]
    checks += [
        invariance(score, sample, column, f"ignores_{column}")
        for column in IRRELEVANT
        if column in sample.columns
    ]
    return checks
