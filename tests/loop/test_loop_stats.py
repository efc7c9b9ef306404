"""The report's statistics against known answers (published examples, closed forms, scipy)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binomtest

from loop.stats import (
    bootstrap_lift,
    mean_interval,
    minimum_detectable_effect,
    newcombe_difference,
    two_proportion_ztest,
    wilson,
)


@pytest.mark.parametrize(
    ("k", "n", "lo", "hi"),
    [
        (5, 10, 0.2366, 0.7634),  # Newcombe (1998), table I
        (0, 10, 0.0, 0.2775),
        (81, 263, 0.2553, 0.3662),  # Agresti & Coull's example range
        (1, 29, 0.0061, 0.1718),
    ],
)
def test_wilson_matches_published_values(k: int, n: int, lo: float, hi: float) -> None:
    e = wilson(k, n, 0.95)
    assert e.value == pytest.approx(k / n)
    assert (e.lo, e.hi) == (pytest.approx(lo, abs=1e-4), pytest.approx(hi, abs=1e-4))


@given(st.integers(0, 500), st.integers(1, 500), st.floats(0.5, 0.999))
def test_wilson_agrees_with_scipy_and_stays_in_bounds(k: int, n: int, conf: float) -> None:
    k = min(k, n)
    e = wilson(k, n, conf)
    ref = binomtest(k, n).proportion_ci(conf, method="wilson")
    assert e.lo == pytest.approx(ref.low, abs=1e-9)
    assert e.hi == pytest.approx(ref.high, abs=1e-9)
    assert 0.0 <= e.lo <= e.value <= e.hi <= 1.0


def test_wilson_of_nothing_is_unknown_and_bad_counts_are_errors() -> None:
    assert math.isnan(wilson(0, 0, 0.95).value)
    with pytest.raises(ValueError, match="successes"):
        wilson(3, 2, 0.95)
    with pytest.raises(ValueError, match="confidence"):
        wilson(1, 2, 1.5)


def test_two_proportion_ztest_known_answer() -> None:
    # 60/100 vs 45/100: pooled p = 0.525, se = sqrt(.525 * .475 * .02) = 0.070622
    t = two_proportion_ztest(60, 100, 45, 100)
    assert t.diff == pytest.approx(0.15)
    assert t.z == pytest.approx(0.15 / math.sqrt(0.525 * 0.475 * 0.02))
    assert t.z == pytest.approx(2.1240, abs=1e-4)
    assert t.p_value == pytest.approx(0.03367, abs=1e-5)


@given(st.integers(1, 300), st.integers(1, 300), st.integers(0, 300), st.integers(0, 300))
def test_ztest_is_antisymmetric(n1: int, n2: int, k1: int, k2: int) -> None:
    k1, k2 = min(k1, n1), min(k2, n2)
    a, b = two_proportion_ztest(k1, n1, k2, n2), two_proportion_ztest(k2, n2, k1, n1)
    if math.isnan(a.z):  # pooled rate 0 or 1: nothing to test either way
        assert math.isnan(b.z) and a.diff == pytest.approx(-b.diff)
        return
    assert a.z == pytest.approx(-b.z)
    assert a.p_value == pytest.approx(b.p_value)
    assert 0.0 <= a.p_value <= 1.0


def test_newcombe_difference_published_example() -> None:
    # Newcombe (1998), example (a): 56/70 - 48/80 = 0.2, hybrid score CI 0.0524 to 0.3339
    e = newcombe_difference(56, 70, 48, 80, 0.95)
    assert e.value == pytest.approx(0.2)
    assert (e.lo, e.hi) == (pytest.approx(0.0524, abs=1e-4), pytest.approx(0.3339, abs=1e-4))


def test_minimum_detectable_effect_closed_form() -> None:
    # (1.95996 + 0.84162) * sqrt(0.25 * 2 / 1000) = 0.062645
    assert minimum_detectable_effect(1000, 1000, 0.5, 0.05, 0.8) == pytest.approx(
        0.062645, abs=1e-6
    )
    # four times the users, half the effect
    assert minimum_detectable_effect(4000, 4000, 0.5, 0.05, 0.8) == pytest.approx(
        0.062645 / 2, abs=1e-6
    )
    assert math.isnan(minimum_detectable_effect(0, 10, 0.5, 0.05, 0.8))


@given(st.integers(10, 5000), st.integers(10, 5000), st.floats(0.01, 0.99))
def test_mde_shrinks_with_sample_size(n1: int, n2: int, p: float) -> None:
    small = minimum_detectable_effect(n1, n2, p, 0.05, 0.8)
    large = minimum_detectable_effect(n1 * 2, n2 * 2, p, 0.05, 0.8)
    assert 0 < large < small


def test_mean_interval_student_t() -> None:
    e = mean_interval([0.40, 0.42, 0.41], 0.95)
    # mean 0.41, sd 0.01, t(0.975, 2) = 4.302653
    assert e.value == pytest.approx(0.41)
    assert e.hi - e.value == pytest.approx(4.302653 * 0.01 / math.sqrt(3), rel=1e-6)
    one = mean_interval([0.5], 0.95)
    assert one.value == 0.5 and math.isnan(one.lo)
    assert mean_interval([0.1, math.nan, 0.3], 0.95).n == 2


def test_bootstrap_lift_point_interval_and_seed() -> None:
    rng = np.random.default_rng(3)
    tn = rng.integers(1, 5, 400)
    tk = rng.binomial(tn, 0.7)
    cn = rng.integers(1, 5, 200)
    ck = rng.binomial(cn, 0.5)
    e = bootstrap_lift((tk, tn), (ck, cn), resamples=500, confidence=0.95, seed=1)
    assert e.value == pytest.approx(tk.sum() / tn.sum() - ck.sum() / cn.sum())
    assert e.lo < e.value < e.hi
    assert e.excludes(0.0)  # a 20-point difference over hundreds of users
    again = bootstrap_lift((tk, tn), (ck, cn), resamples=500, confidence=0.95, seed=1)
    assert (again.lo, again.hi) == (e.lo, e.hi)
    # ten times the users: a narrower interval
    big = bootstrap_lift(
        (np.tile(tk, 10), np.tile(tn, 10)),
        (np.tile(ck, 10), np.tile(cn, 10)),
        resamples=500,
        confidence=0.95,
        seed=1,
    )
    assert big.hi - big.lo < (e.hi - e.lo) / 2


def test_bootstrap_lift_without_a_group_is_unknown() -> None:
    e = bootstrap_lift(
        (np.array([1]), np.array([2])),
        (np.array([], dtype=int), np.array([], dtype=int)),
        resamples=100,
        confidence=0.95,
        seed=0,
    )
    assert math.isnan(e.value) and math.isnan(e.lo)


@settings(max_examples=30, deadline=None)
@given(st.integers(5, 60), st.floats(0.1, 0.9))
def test_bootstrap_interval_covers_its_point(users: int, p: float) -> None:
    rng = np.random.default_rng(users)
    n = rng.integers(1, 4, users)
    k = rng.binomial(n, p)
    e = bootstrap_lift((k, n), (n, n), resamples=200, confidence=0.9, seed=0)
    assert e.lo <= e.value + 1e-12 and e.value - 1e-12 <= e.hi
