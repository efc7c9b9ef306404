"""The statistics of the loop: rates with Wilson intervals, two-proportion tests, minimum
detectable effects, intervals over repeated seeds and user-level bootstrap of lifts.

Closed forms where they exist (scipy for the normal and t quantiles); the bootstrap only
where decisions are not independent: one user's decisions share that user, so a lift's
interval resamples users, not decisions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

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


def _z(confidence: float) -> float:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be within (0, 1), got {confidence}")
    return float(stats.norm.ppf(0.5 + confidence / 2))


def _counts(successes: int, n: int) -> None:
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f"need 0 <= successes <= n, got {successes} of {n}")


def wilson(successes: int, n: int, confidence: float) -> Estimate:
    """The rate `successes / n` with its Wilson score interval.

    Unlike the Wald interval it stays inside [0, 1] and keeps its coverage near 0 and 1,
    where trigger acceptance and small segments live. n = 0 gives NaN.
    """
    _counts(successes, n)
    if n == 0:
        return Estimate(NAN, NAN, NAN, 0)
    z = _z(confidence)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # at k = 0 and k = n the bound is exactly 0 or 1 (keep float rounding off it)
    lo = 0.0 if successes == 0 else max(0.0, centre - half)
    hi = 1.0 if successes == n else min(1.0, centre + half)
    return Estimate(p, lo, hi, n)


def newcombe_difference(k1: int, n1: int, k2: int, n2: int, confidence: float) -> Estimate:
    """`k1/n1 - k2/n2` with Newcombe's hybrid score interval (method 10, 1998): built from
    the two Wilson intervals, so it inherits their behaviour at small counts."""
    a, b = wilson(k1, n1, confidence), wilson(k2, n2, confidence)
    if n1 == 0 or n2 == 0:
        return Estimate(NAN, NAN, NAN, n1 + n2)
    d = a.value - b.value
    lo = d - math.sqrt((a.value - a.lo) ** 2 + (b.hi - b.value) ** 2)
    hi = d + math.sqrt((a.hi - a.value) ** 2 + (b.value - b.lo) ** 2)
    return Estimate(d, lo, hi, n1 + n2)


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
    pooled = (k1 + k2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return ZTest(p1, p2, p1 - p2, NAN, NAN)
    z = (p1 - p2) / se
    return ZTest(p1, p2, p1 - p2, z, float(2 * stats.norm.sf(abs(z))))


def minimum_detectable_effect(
    n1: int, n2: int, base_rate: float, alpha: float, power: float
) -> float:
    """The smallest absolute difference a two-sided test at `alpha` detects with `power`,
    with n1 and n2 units and both groups at `base_rate`:
    `(z[1 - alpha/2] + z[power]) * sqrt(p (1 - p) (1/n1 + 1/n2))`. NaN without data."""
    if not (0 < alpha < 1 and 0 < power < 1):
        raise ValueError("alpha and power must be within (0, 1)")
    if n1 <= 0 or n2 <= 0 or not 0 <= base_rate <= 1:
        return NAN
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    return float(z * math.sqrt(base_rate * (1 - base_rate) * (1 / n1 + 1 / n2)))


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
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * arr.std(ddof=1) / math.sqrt(n))
    return Estimate(mean, mean - half, mean + half, n)


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
    rng = np.random.default_rng(seed)

    def rates(k: np.ndarray, n: np.ndarray) -> np.ndarray:
        return _resampled_rates(k, n, resamples, rng)

    diffs = rates(tk, tn) - rates(ck, cn)
    diffs = diffs[~np.isnan(diffs)]
    tail = (1 - confidence) / 2 * 100
    lo, hi = np.percentile(diffs, [tail, 100 - tail])
    return Estimate(float(point), float(lo), float(hi), n_rows)


_CHUNK_CELLS = 2_000_000  # resamples x users drawn at once (bounds memory at ~16 MB)


def _resampled_rates(
    k: np.ndarray, n: np.ndarray, resamples: int, rng: np.random.Generator
) -> np.ndarray:
    """`sum(k)/sum(n)` over `resamples` draws of the users with replacement.

    Each draw is a vector of user multiplicities (a bincount of drawn indices), so a chunk
    of draws is one matrix product with the per-user counts.
    """
    users = len(k)
    chunk = max(1, _CHUNK_CELLS // max(users, 1))
    out = np.empty(resamples, dtype=np.float64)
    done = 0
    while done < resamples:
        m = min(chunk, resamples - done)
        idx = rng.integers(0, users, size=(m, users))
        idx += np.arange(m)[:, None] * users
        weights = np.bincount(idx.ravel(), minlength=m * users).reshape(m, users)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[done : done + m] = (weights @ k) / (weights @ n)
        done += m
    return out
