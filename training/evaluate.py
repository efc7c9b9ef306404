"""The model and its baselines on one test window: every metric, overall and per segment."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from serving.config import HeuristicConfig
from training.baselines import oracle_scores, rules_scores
from training.config import EvaluationConfig
from training.frame import ORACLE
from training.metrics import binary_metrics, named, named_segments, segment_aucs

MODEL = "model"
MODEL_RAW = "model (raw)"
RULES = "rules"
ORACLE_SCORER = "oracle"
# Metric-name prefix of each scorer (the model's metrics have none).
PREFIXES: dict[str, str] = {MODEL: "", MODEL_RAW: "raw_", RULES: "rules_", ORACLE_SCORER: "oracle_"}


@dataclass(frozen=True)
class Evaluation:
    """Scores, metrics and segment table of one window."""

    labels: np.ndarray
    scores: dict[str, np.ndarray]  # scorer -> score per row
    metrics: dict[str, float]
    segments: pd.DataFrame  # scorer, segment, value, rows, positives, roc_auc
    oracle_note: str  # "used", "absent" or why it was left out

    def metric(self, name: str) -> float:
        return self.metrics.get(name, math.nan)


def evaluate(
    frame: pd.DataFrame,
    labels: np.ndarray,
    model: np.ndarray,
    model_raw: np.ndarray,
    heuristic: HeuristicConfig,
    cfg: EvaluationConfig,
    split: str = "test",
) -> Evaluation:
    """The model (calibrated and raw), the rules heuristic and, when every row has one, the
    oracle, all on the same rows with the same metric names."""
    scores = {MODEL: model, MODEL_RAW: model_raw, RULES: rules_scores(frame, heuristic)}
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
        values = binary_metrics(labels, s, ece_bins=cfg.ece_bins, top_fraction=cfg.top_fraction)
        metrics |= named(values, split, prefix)
        table = segment_aucs(frame, labels, s, cfg.segments, cfg.min_segment_rows)
        metrics |= named_segments(table, split, prefix)
        tables.append(table.assign(scorer=scorer))
    model_auc = metrics[f"{split}_roc_auc"]
    metrics[f"{split}_roc_auc_minus_rules"] = model_auc - metrics[f"rules_{split}_roc_auc"]
    if ORACLE_SCORER in scores:
        oracle_auc = metrics[f"oracle_{split}_roc_auc"]
        metrics[f"{split}_auc_ratio_oracle"] = model_auc / oracle_auc
    segments = pd.concat(tables, ignore_index=True)
    segments = segments[["scorer", "segment", "value", "rows", "positives", "roc_auc"]]
    return Evaluation(labels, scores, metrics, segments, note)
