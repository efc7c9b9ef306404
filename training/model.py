"""The LightGBM classifier: class weights, deterministic parameters, early stopping.

Inputs are the float32 matrices the server builds (`frame.encode`), widened to float64 only
for LightGBM's API, so the model learns on exactly the values ONNX Runtime will see; split
thresholds are then rounded down to float32 (`float32_thresholds`), so both runtimes take the
same branch for every float32 input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from training.config import ImbalanceConfig, LightGBMConfig
from training.frame import TrainingError

if TYPE_CHECKING:
    import lightgbm as lgb


@dataclass(frozen=True)
class ClassWeights:
    negative: float
    positive: float

    def of(self, labels: np.ndarray) -> np.ndarray:
        return np.where(np.asarray(labels) == 1, self.positive, self.negative)


def class_weights(labels: np.ndarray, cfg: ImbalanceConfig) -> ClassWeights:
    """`balanced`: total / (2 * class count) per class, the larger weight capped at
    `max_weight` times the smaller; `none`: 1 and 1."""
    if cfg.strategy == "none":
        return ClassWeights(1.0, 1.0)
    labels = np.asarray(labels)
    positives = int(labels.sum())
    negatives = len(labels) - positives
    if positives == 0 or negatives == 0:
        raise TrainingError("class weights need both classes in the training rows")
    w_pos = len(labels) / (2 * positives)
    w_neg = len(labels) / (2 * negatives)
    if w_pos > w_neg:
        w_pos = min(w_pos, w_neg * cfg.max_weight)
    else:
        w_neg = min(w_neg, w_pos * cfg.max_weight)
    return ClassWeights(float(w_neg), float(w_pos))


def booster_params(cfg: LightGBMConfig) -> dict[str, Any]:
    """LightGBM parameters; deterministic for a seed and a thread count."""
    return {
        "objective": "binary",
        "metric": "binary_logloss",
        "learning_rate": cfg.learning_rate,
        "num_leaves": cfg.num_leaves,
        "min_data_in_leaf": cfg.min_data_in_leaf,
        "feature_fraction": cfg.feature_fraction,
        "bagging_fraction": cfg.bagging_fraction,
        "bagging_freq": cfg.bagging_freq,
        "lambda_l2": cfg.lambda_l2,
        "max_cat_to_onehot": cfg.max_cat_to_onehot,
        "num_threads": cfg.num_threads,
        "seed": cfg.seed,
        "deterministic": True,
        "force_row_wise": True,
        "verbosity": -1,
    }


@dataclass(frozen=True)
class FitResult:
    booster: lgb.Booster  # trimmed to the best iteration
    best_iteration: int
    valid_logloss: list[float]  # per round, for the learning curve


def fit_booster(
    train_x: np.ndarray,
    train_y: np.ndarray,
    valid_x: np.ndarray,
    valid_y: np.ndarray,
    *,
    names: list[str],
    categorical: list[int],
    weights: ClassWeights,
    cfg: LightGBMConfig,
    row_weights: tuple[np.ndarray, np.ndarray] | None = None,
) -> FitResult:
    """Train with early stopping on validation log loss; the returned booster holds only the
    trees up to the best iteration, so LightGBM, MLflow and ONNX all carry the same model."""
    import lightgbm as lgb

    unknown = sorted(set(cfg.monotone_increasing) - set(names))
    if unknown:
        raise TrainingError(f"lightgbm.monotone_increasing names unknown features: {unknown}")
    params = booster_params(cfg)
    params["monotone_constraints"] = [int(n in cfg.monotone_increasing) for n in names]
    train_set = lgb.Dataset(
        _wide(train_x),
        label=train_y,
        weight=weights.of(train_y) * (row_weights[0] if row_weights else 1.0),
        feature_name=names,
        categorical_feature=categorical,
        params={"verbosity": -1},
        free_raw_data=True,
    )
    valid_set = lgb.Dataset(
        _wide(valid_x),
        label=valid_y,
        weight=weights.of(valid_y) * (row_weights[1] if row_weights else 1.0),
        reference=train_set,
    )
    history: dict[str, dict[str, list[float]]] = {}
    booster = lgb.train(
        params,
        train_set,
        num_boost_round=cfg.max_rounds,
        valid_sets=[valid_set],
        valid_names=["validation"],
        callbacks=[
            lgb.early_stopping(cfg.early_stopping_rounds, first_metric_only=True, verbose=False),
            lgb.record_evaluation(history),
        ],
    )
    best = booster.best_iteration or booster.current_iteration()
    trimmed = float32_thresholds(booster.model_to_string(num_iteration=best))
    return FitResult(lgb.Booster(model_str=trimmed), best, history["validation"]["binary_logloss"])


_CATEGORICAL_SPLIT = 1  # bit 0 of LightGBM's decision_type


def float32_thresholds(model_str: str) -> str:
    """The same model with every numerical split threshold rounded down to a float32.

    LightGBM compares `x <= t` in double; ONNX stores `t` as float32, rounded to nearest.
    When that rounds up, a float32 input equal to `float32(t)` goes left in ONNX and right
    in LightGBM (seen: 0.009 apart on one test row). Rounding `t` down to the largest
    float32 <= t changes nothing for float32 inputs - no float32 lies between the two - and
    makes both runtimes take every branch the same way. Categorical splits keep their
    bitset indices.
    """
    head, *trees = model_str.split("\nTree=")
    # `tree_sizes` holds each tree's byte length for parallel parsing; the rounded text has
    # other lengths, and without the line LightGBM parses the trees one after the other.
    head = "\n".join(line for line in head.split("\n") if not line.startswith("tree_sizes="))
    return "\nTree=".join([head, *(_round_block(tree) for tree in trees)])


def _round_block(block: str) -> str:
    lines = block.split("\n")
    index = {line.split("=", 1)[0]: i for i, line in enumerate(lines) if "=" in line}
    if "threshold" not in index:
        return block  # a single-leaf tree
    thresholds = lines[index["threshold"]].split("=", 1)[1].split()
    kinds = [int(k) for k in lines[index["decision_type"]].split("=", 1)[1].split()]
    rounded = [
        t if kind & _CATEGORICAL_SPLIT else repr(float(_float32_floor(float(t))))
        for t, kind in zip(thresholds, kinds, strict=True)
    ]
    lines[index["threshold"]] = "threshold=" + " ".join(rounded)
    return "\n".join(lines)


def _float32_floor(value: float) -> np.float32:
    nearest = np.float32(value)
    if float(nearest) > value:
        return np.nextafter(nearest, np.float32(-np.inf))
    return nearest


def predict_raw(booster: lgb.Booster, matrix: np.ndarray) -> np.ndarray:
    """Uncalibrated probability of abandonment for float32 feature rows."""
    return booster.predict(_wide(matrix))


def contributions(booster: lgb.Booster, matrix: np.ndarray) -> np.ndarray:
    """Per-feature contributions in log-odds (LightGBM's TreeSHAP), last column the bias."""
    return booster.predict(_wide(matrix), pred_contrib=True)


def _wide(matrix: np.ndarray) -> np.ndarray:
    return np.asarray(matrix, dtype=np.float32).astype(np.float64)
