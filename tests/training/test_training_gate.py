"""The promotion gate on hand-made scores: it passes and it rejects, overall and per segment."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from training.config import PromotionConfig
from training.frame import TrainingError
from training.promote import gate

CFG = PromotionConfig(
    auc_tolerance=0.01,
    min_margin_over_best_baseline=0.0,
    segment_tolerance=0.03,
    min_segment_rows=20,
    segments=["device"],
)


def window(n: int = 400, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Two devices; `score` ranks abandonment well on both."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    score = np.clip(labels * 0.4 + rng.uniform(0, 0.6, n), 0, 1)
    frame = pd.DataFrame({"device": np.where(np.arange(n) % 2 == 0, "mobile", "desktop")})
    return frame, labels, score


def test_an_equal_challenger_passes() -> None:
    frame, labels, score = window()
    decision = gate(frame, labels, score, score, CFG)
    assert decision.passed and decision.auc_delta == 0 and not decision.reasons
    assert {d.value for d in decision.segments} == {"mobile", "desktop"}


def test_a_challenger_worse_overall_is_rejected() -> None:
    frame, labels, score = window()
    noisy = score + np.random.default_rng(1).normal(0, 0.5, len(score))
    decision = gate(frame, labels, noisy, score, CFG)
    assert not decision.passed and decision.auc_delta < -CFG.auc_tolerance
    assert "below the champion" in decision.reasons[0]
    # ... and accepted the other way round
    assert gate(frame, labels, score, noisy, CFG).passed


def test_a_regression_in_one_segment_is_rejected_even_when_overall_is_fine() -> None:
    frame, labels, score = window(2000)
    challenger = score.copy()
    mobile = (frame["device"] == "mobile").to_numpy()
    rng = np.random.default_rng(2)
    challenger[mobile] = np.clip(score[mobile] + rng.normal(0, 0.25, mobile.sum()), 0, 1)
    loose = CFG.model_copy(update={"auc_tolerance": 0.5})
    decision = gate(frame, labels, challenger, score, loose)
    assert not decision.passed
    assert len(decision.reasons) == 1 and decision.reasons[0].startswith("device=mobile")
    small = loose.model_copy(update={"min_segment_rows": 5000})  # segments too small to judge
    assert gate(frame, labels, challenger, score, small).passed


def test_a_one_class_window_is_an_error() -> None:
    frame, _, score = window()
    with pytest.raises(TrainingError, match="both classes"):
        gate(frame, np.ones(len(score), dtype=int), score, score, CFG)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), noise=st.floats(0, 1))
def test_gate_property_identity_passes_and_verdict_matches_the_deltas(seed, noise) -> None:
    frame, labels, score = window(300, seed)
    assert gate(frame, labels, score, score, CFG).passed
    challenger = score + np.random.default_rng(seed + 1).normal(0, noise, len(score))
    d = gate(frame, labels, challenger, score, CFG)
    worse = d.auc_delta < -CFG.auc_tolerance or any(
        s.delta < -CFG.segment_tolerance for s in d.segments
    )
    assert d.passed is (not worse)
    assert len(d.reasons) == int(d.auc_delta < -CFG.auc_tolerance) + sum(
        s.delta < -CFG.segment_tolerance for s in d.segments
    )
