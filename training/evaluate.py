"""The model and its baselines on one test window: every metric, overall and per segment."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from training.baselines import BASELINES, LOGISTIC, STEP_MOMENT, STEP_PRIOR, oracle_scores
from training.config import EvaluationConfig
from training.frame import ORACLE
from training.metrics import (
    binary_metrics,
    clean,
    ece_estimate,
    named,
    named_segments,
    segment_aucs,
)

MODEL = "model"
MODEL_RAW = "model (raw)"
RULES = "rules"
ORACLE_SCORER = "oracle"
BEST_BASELINE = "best_baseline"
# Scorers whose test ECE gets a bootstrap interval and a noise floor (~0.5 s each on 18k rows).
ECE_INTERVALS: frozenset[str] = frozenset({MODEL, MODEL_RAW, ORACLE_SCORER})
# Metric-name prefix of each scorer (the model's metrics have none).
PREFIXES: dict[str, str] = {
    MODEL: "",
    MODEL_RAW: "raw_",
    RULES: "rules_",
    STEP_PRIOR: "step_prior_",
    STEP_MOMENT: "step_moment_",
    LOGISTIC: "logistic_",
    ORACLE_SCORER: "oracle_",
}


@dataclass(frozen=True)
class Evaluation:
    """Scores, metrics and segment table of one window."""

    labels: np.ndarray
    scores: dict[str, np.ndarray]  # scorer -> score per row
    metrics: dict[str, float]
    segments: pd.DataFrame  # scorer, segment, value, rows, positives, roc_auc
    oracle_note: str  # "used", "absent" or why it was left out
    best_baseline: str = RULES  # the baseline with the highest ROC-AUC on this window

    def metric(self, name: str) -> float:
        return self.metrics.get(name, math.nan)


def strongest(metrics: Mapping[str, float], split: str, names: Iterable[str]) -> str:
    """The baseline with the highest ROC-AUC on `split` (NaN counts as lowest)."""

    def auc(name: str) -> float:
        value = metrics.get(f"{PREFIXES[name]}{split}_roc_auc", math.nan)
        return -math.inf if math.isnan(value) else value

    return max(names, key=auc)


def evaluate(
    frame: pd.DataFrame,
    labels: np.ndarray,
    model: np.ndarray,
    model_raw: np.ndarray,
    baselines: Mapping[str, np.ndarray],
    cfg: EvaluationConfig,
    split: str = "test",
) -> Evaluation:
    """The model (calibrated and raw), every baseline (`training.baselines.baseline_scores`)
    and, when every row has one, the oracle, all on the same rows with the same metric
    names; then the strongest baseline and the per-step ratios to the oracle."""
    unknown = sorted(set(baselines) - set(BASELINES))
    if unknown:
        raise ValueError(f"unknown baselines {unknown}; known: {list(BASELINES)}")
    scores = {MODEL: model, MODEL_RAW: model_raw, **baselines}
    oracle = oracle_scores(frame)
    if oracle is not None:
        scores[ORACLE_SCORER] = oracle
        note = "used"
    elif ORACLE in frame.columns and frame[ORACLE].notna().any():
        missing = int(frame[ORACLE].isna().sum())
        note = f"left out: missing on {missing} of {len(frame)} {split} rows"
    else:
        note = "absent"
    metrics: dict[str, float] = {
        f"{split}_rows": float(len(labels)),
        f"{split}_positives": float(np.sum(labels)),
        f"{split}_base_rate": float(np.mean(labels)),
    }
    tables = []
    for scorer, s in scores.items():
        prefix = PREFIXES[scorer]
        values = binary_metrics(
            labels,
            s,
            ece_bins=cfg.ece_bins,
            top_fraction=cfg.top_fraction,
            ece_binning=cfg.ece_binning,
        )
        if scorer in ECE_INTERVALS and split == "test" and cfg.ece_resamples:
            values |= ece_interval(labels, s, cfg)
        metrics |= named(values, split, prefix)
        table = segment_aucs(frame, labels, s, cfg.segments, cfg.min_segment_rows)
        metrics |= named_segments(table, split, prefix)
        tables.append(table.assign(scorer=scorer))
    model_auc = metrics[f"{split}_roc_auc"]
    if RULES in scores:
        metrics[f"{split}_roc_auc_minus_rules"] = model_auc - metrics[f"rules_{split}_roc_auc"]
    best = strongest(metrics, split, baselines) if baselines else RULES
    if baselines:
        metrics |= _best_baseline_metrics(metrics, split, best)
    if ORACLE_SCORER in scores:
        oracle_auc = metrics[f"oracle_{split}_roc_auc"]
        metrics[f"{split}_auc_ratio_oracle"] = model_auc / oracle_auc
        metrics |= _within_step_ratios(metrics, split, best if baselines else None)
    segments = pd.concat(tables, ignore_index=True)
    segments = segments[["scorer", "segment", "value", "rows", "positives", "roc_auc"]]
    return Evaluation(labels, scores, metrics, segments, note, best)


def ece_interval(labels: np.ndarray, scores: np.ndarray, cfg: EvaluationConfig) -> dict[str, float]:
    """`ece_ci_low` / `ece_ci_high` (bootstrap), `ece_floor` (a calibrated model's ECE on
    these rows) and `ece_p_calibrated` (training.metrics.ece_estimate)."""
    est = ece_estimate(
        labels,
        scores,
        bins=cfg.ece_bins,
        binning=cfg.ece_binning,
        resamples=cfg.ece_resamples,
        confidence=cfg.ece_confidence,
        seed=cfg.ece_seed,
    )
    return {
        "ece_ci_low": est.low,
        "ece_ci_high": est.high,
        "ece_floor": est.floor,
        "ece_p_calibrated": est.p_calibrated,
    }


def _best_baseline_metrics(metrics: Mapping[str, float], split: str, best: str) -> dict[str, float]:
    """`best_baseline_<split>_*` copies of the strongest baseline's metrics, and the model's
    margin over it, so runs line up in MLflow whichever baseline won."""
    prefix = PREFIXES[best]
    head = f"{prefix}{split}_"
    out = {
        f"best_baseline_{split}_{k[len(head) :]}": v
        for k, v in metrics.items()
        if k.startswith(head)
    }
    out[f"{split}_roc_auc_minus_best_baseline"] = (
        metrics[f"{split}_roc_auc"] - metrics[f"{head}roc_auc"]
    )
    return out


def _within_step_ratios(
    metrics: Mapping[str, float], split: str, best: str | None
) -> dict[str, float]:
    """Per step: AUC(model) / AUC(oracle) and AUC(best baseline) / AUC(oracle). Within one
    step the step prior is worthless, so this is where a model shows what it learnt."""
    out = {}
    marker = f"oracle_{split}_roc_auc.step."
    for key, oracle in metrics.items():
        if not key.startswith(marker) or not oracle:
            continue
        step = key[len(marker) :]
        model = metrics.get(f"{split}_roc_auc.step.{step}")
        if model is not None:
            out[f"{split}_step_ratio_oracle.step.{clean(step)}"] = model / oracle
        if best is not None:
            base = metrics.get(f"{PREFIXES[best]}{split}_roc_auc.step.{step}")
            if base is not None:
                out[f"best_baseline_{split}_step_ratio_oracle.step.{clean(step)}"] = base / oracle
    return out
