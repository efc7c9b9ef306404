"""The statistics of the loop: rates with Wilson intervals, two-proportion tests, minimum
detectable effects, intervals over repeated seeds and user-level bootstrap of lifts.

Every formula comes from statsmodels or scipy (`proportion_confint`, `confint_proportions_2indep`,
`proportions_ztest`, `NormalIndPower`, `scipy.stats.t`, `scipy.stats.bootstrap`); this module
only fixes their conventions for the report: NaN where there is too little data, and the
bootstrap over users, not decisions (one user's decisions share that user).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import (
    confint_proportions_2indep,
    proportion_confint,
    proportions_ztest,
)

NAN = math.nan


@dataclass(frozen=True, slots=True)
class Estimate:
    """A point estimate with its interval (NaN bounds when there is too little data)."""

    value: float
    lo: float
    hi: float
    n: int

    def excludes(self, x: float) -> bool:
        """The interval lies entirely on one side of `x` (NaN bounds never exclude)."""
        return (self.lo > x) or (self.hi < x)


def _check_confidence(confidence: float) -> None:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be within (0, 1), got {confidence}")


def _counts(successes: int, n: int) -> None:
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f"need 0 <= successes <= n, got {successes} of {n}")


def wilson(successes: int, n: int, confidence: float) -> Estimate:
    """The rate `successes / n` with its Wilson score interval.

    Unlike the Wald interval it stays inside [0, 1] and keeps its coverage near 0 and 1,
    where trigger acceptance and small segments live. n = 0 gives NaN.
    """
    _check_confidence(confidence)
    _counts(successes, n)
    if n == 0:
        return Estimate(NAN, NAN, NAN, 0)
    lo, hi = proportion_confint(successes, n, alpha=1 - confidence, method="wilson")
    # at k = 0 and k = n the bound is exactly 0 or 1 (keep float rounding off it)
    lo = 0.0 if successes == 0 else max(0.0, float(lo))
    hi = 1.0 if successes == n else min(1.0, float(hi))
    return Estimate(successes / n, lo, hi, n)


def newcombe_difference(k1: int, n1: int, k2: int, n2: int, confidence: float) -> Estimate:
    """`k1/n1 - k2/n2` with Newcombe's hybrid score interval (method 10, 1998): built from
    the two Wilson intervals, so it inherits their behaviour at small counts."""
    _check_confidence(confidence)
    _counts(k1, n1)
    _counts(k2, n2)
    if n1 == 0 or n2 == 0:
        return Estimate(NAN, NAN, NAN, n1 + n2)
    lo, hi = confint_proportions_2indep(
        k1, n1, k2, n2, method="newcomb", compare="diff", alpha=1 - confidence
    )
    return Estimate(k1 / n1 - k2 / n2, float(lo), float(hi), n1 + n2)


@dataclass(frozen=True, slots=True)
class ZTest:
    """Two-proportion z-test of `p1 - p2` (pooled variance under H0: p1 = p2)."""

    p1: float
    p2: float
    diff: float
    z: float
    p_value: float  # two-sided


def two_proportion_ztest(k1: int, n1: int, k2: int, n2: int) -> ZTest:
    """Pooled two-proportion z-test; NaN statistics when a group is empty or the pooled
    rate is 0 or 1 (no variance: nothing to test)."""
    _counts(k1, n1)
    _counts(k2, n2)
    if n1 == 0 or n2 == 0:
        return ZTest(NAN, NAN, NAN, NAN, NAN)
    p1, p2 = k1 / n1, k2 / n2
    if k1 + k2 in (0, n1 + n2):
        return ZTest(p1, p2, p1 - p2, NAN, NAN)
    z, p_value = proportions_ztest([k1, k2], [n1, n2], alternative="two-sided", prop_var=False)
    return ZTest(p1, p2, p1 - p2, float(z), float(p_value))


def minimum_detectable_effect(
    n1: int, n2: int, base_rate: float, alpha: float, power: float
) -> float:
    """The smallest absolute difference a two-sided test at `alpha` detects with `power`,
    with n1 and n2 units and both groups at `base_rate`: statsmodels' standardised effect
    (`NormalIndPower`) times the rate's standard deviation `sqrt(p (1 - p))`. NaN without
    data."""
    if not (0 < alpha < 1 and 0 < power < 1):
        raise ValueError("alpha and power must be within (0, 1)")
    if n1 <= 0 or n2 <= 0 or not 0 <= base_rate <= 1:
        return NAN
    effect = _power_analysis().solve_power(
        effect_size=None, nobs1=n1, alpha=alpha, power=power, ratio=n2 / n1
    )
    return float(effect * math.sqrt(base_rate * (1 - base_rate)))


def _power_analysis() -> NormalIndPower:
    """statsmodels' two-sample z-test power, its root finder tightened from xtol 1e-5 (a
    relative error of ~1e-4 in the effect) to float precision."""
    analysis = NormalIndPower()
    analysis.start_bqexp["effect_size"] = {**analysis.start_bqexp["effect_size"], "xtol": 1e-14}
    return analysis


def mean_interval(values: Sequence[float], confidence: float) -> Estimate:
    """Mean of repeated measurements (one per seed) with a Student t interval.

    NaN values (a metric undefined on a seed) are left out; one value gives NaN bounds.
    """
    arr = np.asarray([v for v in values if not math.isnan(v)], dtype=np.float64)
    n = int(arr.size)
    if n == 0:
        return Estimate(NAN, NAN, NAN, 0)
    mean = float(arr.mean())
    if n == 1:
        return Estimate(mean, NAN, NAN, 1)
    lo, hi = stats.t.interval(confidence, n - 1, loc=mean, scale=stats.sem(arr))
    return Estimate(mean, float(lo), float(hi), n)


def bootstrap_lift(
    treated: tuple[np.ndarray, np.ndarray],
    control: tuple[np.ndarray, np.ndarray],
    *,
    resamples: int,
    confidence: float,
    seed: int,
) -> Estimate:
    """Difference of rates `sum(k)/sum(n)` between two groups of users, with a percentile
    interval from resampling users within each group (the groups are independent samples:
    a randomised holdout and the rest).

    Each group is `(successes per user, decisions per user)`. NaN when a group is empty.
    """
    (tk, tn), (ck, cn) = (
        (np.asarray(k, np.float64), np.asarray(n, np.float64)) for k, n in (treated, control)
    )
    if tk.shape != tn.shape or ck.shape != cn.shape:
        raise ValueError("successes and decisions per user must have the same length")
    t_total, c_total = tn.sum(), cn.sum()
    n_rows = int(t_total + c_total)
    if t_total == 0 or c_total == 0:
        return Estimate(NAN, NAN, NAN, n_rows)
    point = tk.sum() / t_total - ck.sum() / c_total

    def lift(t_users: np.ndarray, c_users: np.ndarray, axis: int = -1) -> np.ndarray:
        t_users, c_users = t_users.astype(np.intp), c_users.astype(np.intp)
        with np.errstate(invalid="ignore", divide="ignore"):
            treated_rate = tk[t_users].sum(axis) / tn[t_users].sum(axis)
            control_rate = ck[c_users].sum(axis) / cn[c_users].sum(axis)
        return treated_rate - control_rate

    result = stats.bootstrap(
        (np.arange(len(tk)), np.arange(len(ck))),
        lift,
        n_resamples=resamples,
        confidence_level=confidence,
        method="percentile",
        vectorized=True,
        batch=_batch(len(tk) + len(ck)),
        rng=np.random.default_rng(seed),
    )
    interval = result.confidence_interval
    return Estimate(float(point), float(interval.low), float(interval.high), n_rows)


_CHUNK_CELLS = 2_000_000  # resamples x users drawn at once (bounds memory at ~16 MB)


def _batch(users: int) -> int:
    """Resamples scipy draws at once, so memory stays bounded however many users."""
    return max(1, _CHUNK_CELLS // max(users, 1))
