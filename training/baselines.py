"""Baselines scored on the model's windows: what a model must beat to be worth serving.

- `rules`: `serving.rules.heuristic_score`, the very function the server falls back to,
  with the weights of `configs/policy.yaml` (the source document's heuristic).
- `step_prior`: the training window's abandonment rate of the row's step. On simulated
  data knowing the step is most of the gain over the rules, so it is the honest floor.
- `step_moment`: the training rate of the row's (step, micro-moment) pair, shrunk towards
  the step's rate by `baselines.prior_rows` pseudo-rows (small cells do not overfit).
- `logistic`: a scikit-learn logistic regression on the rules' signals plus the step.
- `oracle`: the simulator's true abandonment probability (simulated data only), the ceiling.

Every fitted baseline learns from the training split only, like the model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.heuristic import (
    DELAY_SIGNAL,
    SCROLL_SIGNAL,
    SECONDARY_SIGNAL,
    HeuristicConfig,
    heuristic_score,
)
from training.config import BaselineConfig
from training.frame import LABEL, ORACLE, TrainingError

RULE_SIGNALS: tuple[str, ...] = (SCROLL_SIGNAL, DELAY_SIGNAL, SECONDARY_SIGNAL)
RULES = "rules"
STEP_PRIOR = "step_prior"
STEP_MOMENT = "step_moment"
LOGISTIC = "logistic"
BASELINES: tuple[str, ...] = (RULES, STEP_PRIOR, STEP_MOMENT, LOGISTIC)
STEP, MOMENT = "step", "moment"


def rules_scores(frame: pd.DataFrame, cfg: HeuristicConfig) -> np.ndarray:
    """The heuristic score of every row (missing signals add nothing, as in serving)."""
    missing = [s for s in RULE_SIGNALS if s not in frame.columns]
    if missing:
        raise TrainingError(f"the rules baseline needs columns {missing}")
    columns = [pd.to_numeric(frame[s]).to_numpy(np.float64) for s in RULE_SIGNALS]
    return np.asarray(heuristic_score(*columns, cfg), dtype=np.float64)


def oracle_scores(frame: pd.DataFrame) -> np.ndarray | None:
    """The oracle probability when every row has one (simulated data), else None."""
    if ORACLE not in frame.columns:
        return None
    values = pd.to_numeric(frame[ORACLE]).to_numpy(np.float64)
    if len(values) == 0 or np.isnan(values).any():
        return None
    return values


@dataclass(frozen=True)
class Lookup:
    """Shrunk abandonment rates: per key, falling back to the parent rate, then the global."""

    rates: Mapping[tuple, float]
    parent: Mapping[str, float]  # step -> rate (empty for the step prior itself)
    overall: float

    def score(self, steps: pd.Series, moments: pd.Series | None) -> np.ndarray:
        out = np.empty(len(steps), dtype=np.float64)
        keys = steps.astype(str).to_numpy()
        subs = moments.astype(str).to_numpy() if moments is not None else None
        for i, step in enumerate(keys):
            key = (step,) if subs is None else (step, subs[i])
            fallback = self.parent.get(step, self.overall)
            out[i] = self.rates.get(key, fallback)
        return out


def fit_lookup(train: pd.DataFrame, by: list[str], prior_rows: float) -> Lookup:
    """Rates per `by` group, each shrunk towards its parent (the step, or the overall rate)."""
    y = train[LABEL].astype(np.float64)
    overall = float(y.mean())
    steps = train[STEP].astype(str)
    step_stats = y.groupby(steps).agg(["sum", "count"])
    step_rate = (step_stats["sum"] + prior_rows * overall) / (step_stats["count"] + prior_rows)
    if by == [STEP]:
        return Lookup({(k,): float(v) for k, v in step_rate.items()}, {}, overall)
    keys = [train[c].astype(str) for c in by]
    stats = y.groupby(keys).agg(["sum", "count"])
    rates = {}
    for key, row in stats.iterrows():
        parent = float(step_rate[key[0]])
        rates[tuple(key)] = float((row["sum"] + prior_rows * parent) / (row["count"] + prior_rows))
    return Lookup(rates, {k: float(v) for k, v in step_rate.items()}, overall)


def fit_logistic(train: pd.DataFrame, cfg: BaselineConfig):
    """Logistic regression on the rules' signals (median-imputed, scaled) plus the step."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric = make_pipeline(
        SimpleImputer(strategy="median", keep_empty_features=True), StandardScaler()
    )
    columns = ColumnTransformer(
        [
            ("signals", numeric, list(RULE_SIGNALS)),
            ("step", OneHotEncoder(handle_unknown="ignore"), [STEP]),
        ]
    )
    model = make_pipeline(columns, LogisticRegression(C=cfg.logistic_c, max_iter=cfg.max_iter))
    return model.fit(_logistic_input(train), train[LABEL].to_numpy(np.int64))


def _logistic_input(frame: pd.DataFrame) -> pd.DataFrame:
    data = {s: pd.to_numeric(frame[s], errors="coerce").astype(np.float64) for s in RULE_SIGNALS}
    data[STEP] = frame[STEP].astype(str)
    return pd.DataFrame(data)


def baseline_scores(
    train: pd.DataFrame,
    windows: Mapping[str, pd.DataFrame],
    heuristic: HeuristicConfig,
    cfg: BaselineConfig,
) -> dict[str, dict[str, np.ndarray]]:
    """{window: {baseline: score per row}} for every window (validation, test, ...), each
    fitted baseline learnt on `train`."""
    missing = [c for c in (STEP, MOMENT, LABEL, *RULE_SIGNALS) if c not in train.columns]
    if missing:
        raise TrainingError(f"the baselines need columns {missing} in the training frame")
    step_prior = fit_lookup(train, [STEP], cfg.prior_rows)
    step_moment = fit_lookup(train, [STEP, MOMENT], cfg.prior_rows)
    logistic = fit_logistic(train, cfg)
    out = {}
    for name, frame in windows.items():
        out[name] = {
            RULES: rules_scores(frame, heuristic),
            STEP_PRIOR: step_prior.score(frame[STEP], None),
            STEP_MOMENT: step_moment.score(frame[STEP], frame[MOMENT]),
            LOGISTIC: logistic.predict_proba(_logistic_input(frame))[:, 1],
        }
    return out
