"""Off-policy evaluation of a candidate policy from a logged decision log.

No light maintained library fits (Open Bandit Pipeline pulls torch; VW's own estimators work
on its text format without user-clustered intervals), so the three standard estimators are
written here, compactly, and tested on a synthetic log with a known answer:

- IPS: mean of w * y, w = pi(a | x) / p(a | x) (clipped at `max_weight`, reported);
- SNIPS: sum(w * y) / sum(w), self-normalised (lower variance, slightly biased);
- DR: mean of sum_a pi(a | x) q(x, a) + w * (y - q(x, a_logged)), with the reward model q a
  logistic regression of the outcome on context, action and context x action, cross-fitted
  over users (two folds), so a row is never scored by a model that saw it.

Each is a ratio of per-user sums, and its interval is a bootstrap over users (scipy): one
user's decisions are not independent. Outcomes: `completed` (completion within the label
horizon), `shown` (a trigger was shown, i.e. the trigger rate per decision) and `reward`
(completed - trigger_cost x shown).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.bandit import OpeConfig
from training.policy.data import BanditLog

OUTCOMES = ("completed", "shown", "reward")
ESTIMATORS = ("ips", "snips", "dr")


@dataclass(frozen=True)
class RewardModel:
    """q(x, a) for every eligible action of every row, per outcome (cross-fitted)."""

    q: dict[str, list[dict[str, float]]]  # outcome -> row -> action -> prediction


def _crossed(ctx: dict, action: str) -> dict:
    """Context, action, and every context feature crossed with the action (so a linear
    model can say "the tooltip helps at CTA failures")."""
    out = dict(ctx)
    out["action"] = action
    for key, value in ctx.items():
        if isinstance(value, str):
            out[f"{action}^{key}={value}"] = 1.0
        else:
            out[f"{action}^{key}"] = value
    return out


def fit_reward_model(log: BanditLog, trigger_cost: float, seed: int = 0) -> RewardModel:
    """Cross-fitted (two folds over users) logistic outcome models on context x action."""
    from sklearn.feature_extraction import DictVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold

    frame = log.frame
    dicts = [ctx.as_dict() for ctx in log.contexts]
    logged = [_crossed(d, a) for d, a in zip(dicts, frame["chosen"], strict=True)]
    pair_rows, pair_actions, feats = [], [], []
    for i, (d, eligible) in enumerate(zip(dicts, frame["eligible"], strict=True)):
        for a in eligible:
            pair_rows.append(i)
            pair_actions.append(a)
            feats.append(_crossed(d, a))
    rows_of_pairs = np.asarray(pair_rows)
    vec = DictVectorizer(sparse=True).fit(logged + feats)
    x_logged, x_pairs = vec.transform(logged), vec.transform(feats)
    users = frame["user_id"].to_numpy()
    preds: dict[str, np.ndarray] = {}
    for outcome in ("completed", "shown"):
        y = frame[outcome].to_numpy().astype(int)
        out = np.empty(len(pair_rows))
        if len(set(users)) >= 2:
            splits = list(GroupKFold(n_splits=2).split(x_logged, y, users))
        else:
            splits = [(np.arange(len(y)), np.arange(len(y)))]
        for train, test in splits:
            target = np.isin(rows_of_pairs, test)
            if len(set(y[train])) < 2:
                out[target] = float(y[train].mean()) if len(train) else 0.0
                continue
            model = LogisticRegression(C=1.0, max_iter=1000)
            model.fit(x_logged[train], y[train])
            out[target] = model.predict_proba(x_pairs[target])[:, 1]
        preds[outcome] = out
    preds["shown"] = np.where(np.asarray(pair_actions) == "none", 0.0, preds["shown"])  # by design
    preds["reward"] = preds["completed"] - trigger_cost * preds["shown"]
    q: dict[str, list[dict[str, float]]] = {}
    for outcome, values in preds.items():
        per_row: list[dict[str, float]] = [{} for _ in range(len(frame))]
        for r, a, v in zip(pair_rows, pair_actions, values, strict=True):
            per_row[r][a] = float(v)
        q[outcome] = per_row
    return RewardModel(q)


@dataclass(frozen=True)
class Estimate:
    candidate: str
    estimator: str
    outcome: str
    value: float
    low: float
    high: float


def _ratio_ci(
    num: np.ndarray, den: np.ndarray, cfg: OpeConfig, seed_offset: int
) -> tuple[float, float, float]:
    """sum(num) / sum(den) over users, with a percentile bootstrap over users."""
    from scipy.stats import bootstrap

    value = float(num.sum() / den.sum())
    if len(num) < 2:
        return value, float("nan"), float("nan")

    def stat(n, d, axis=-1):
        return n.sum(axis=axis) / d.sum(axis=axis)

    res = bootstrap(
        (num, den),
        stat,
        paired=True,
        vectorized=True,
        n_resamples=cfg.bootstrap_resamples,
        confidence_level=cfg.confidence,
        method="percentile",
        random_state=np.random.default_rng(cfg.bootstrap_seed + seed_offset),
    )
    return value, float(res.confidence_interval.low), float(res.confidence_interval.high)


def weights(
    log: BanditLog, target: Sequence[Mapping[str, float]], max_weight: float
) -> tuple[np.ndarray, int]:
    """Clipped importance weights pi(a_logged | x) / p_logged, and how many were clipped."""
    frame = log.frame
    pi = np.array([t.get(a, 0.0) for t, a in zip(target, frame["chosen"], strict=True)])
    w = pi / frame["propensity"].to_numpy()
    clipped = int((w > max_weight).sum())
    return np.minimum(w, max_weight), clipped


def deterministic(actions: Sequence[str]) -> list[dict[str, float]]:
    return [{a: 1.0} for a in actions]


def evaluate(
    name: str,
    log: BanditLog,
    target: Sequence[Mapping[str, float]],
    model: RewardModel,
    cfg: OpeConfig,
) -> tuple[list[Estimate], dict[str, float]]:
    """IPS, SNIPS and DR estimates of `target` (per row: action -> probability) with
    bootstrap intervals over users; plus diagnostics (matches, clipped, effective size)."""
    frame = log.frame
    w, clipped = weights(log, target, cfg.max_weight)
    users = pd.factorize(frame["user_id"])[0]
    count = np.bincount(users).astype(float)
    out: list[Estimate] = []
    for k, outcome in enumerate(OUTCOMES):
        y = frame[outcome].to_numpy().astype(float)
        q = model.q[outcome]
        q_logged = np.array([q[i][a] for i, a in enumerate(frame["chosen"])])
        dm = np.array([sum(p * q[i][a] for a, p in t.items()) for i, t in enumerate(target)])
        dr = dm + w * (y - q_logged)
        sums = {
            "ips": (np.bincount(users, w * y), count),
            "snips": (np.bincount(users, w * y), np.bincount(users, w)),
            "dr": (np.bincount(users, dr), count),
        }
        for j, est in enumerate(ESTIMATORS):
            num, den = sums[est]
            if den.sum() <= 0:
                out.append(Estimate(name, est, outcome, float("nan"), float("nan"), float("nan")))
                continue
            value, low, high = _ratio_ci(num, den, cfg, 10 * k + j)
            out.append(Estimate(name, est, outcome, value, low, high))
    ess = float(w.sum() ** 2 / (w**2).sum()) if (w > 0).any() else 0.0
    diagnostics = {
        "rows": float(len(frame)),
        "matches": float((w > 0).sum()),
        "clipped": float(clipped),
        "effective_sample_size": ess,
    }
    return out, diagnostics


def on_policy(log: BanditLog, cfg: OpeConfig) -> list[Estimate]:
    """The logging policy's own averages (what it achieved), with the same intervals."""
    frame = log.frame
    users = pd.factorize(frame["user_id"])[0]
    count = np.bincount(users).astype(float)
    out = []
    for k, outcome in enumerate(OUTCOMES):
        num = np.bincount(users, frame[outcome].to_numpy().astype(float))
        value, low, high = _ratio_ci(num, count, cfg, 100 + k)
        out.append(Estimate("logged", "on_policy", outcome, value, low, high))
    return out


def estimates_frame(estimates: Sequence[Estimate]) -> pd.DataFrame:
    return pd.DataFrame([e.__dict__ for e in estimates])
