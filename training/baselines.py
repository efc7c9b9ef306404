"""Baselines scored on the model's test window: the rules heuristic and the oracle.

The rules score is `serving.rules.heuristic_score`, the very function the server falls back
to, with the weights of `configs/policy.yaml`. The oracle is the simulator's true
abandonment probability: the ceiling a model of observable signals can approach, available
on simulated data only.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from serving.config import HeuristicConfig
from serving.rules import DELAY_SIGNAL, SCROLL_SIGNAL, SECONDARY_SIGNAL, heuristic_score
from training.frame import ORACLE, TrainingError

RULE_SIGNALS: tuple[str, ...] = (SCROLL_SIGNAL, DELAY_SIGNAL, SECONDARY_SIGNAL)


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
