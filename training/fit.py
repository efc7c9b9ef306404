"""Fit a model on a point-in-time frame: split, encode, LightGBM, calibrate, evaluate.

Data in, data out: no MLflow, no files. `intent train`, `intent retrain`, `intent bench
train` and the tests all call `fit_model`; the tracking run (`training.run`) only records
what it returns.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from core.heuristic import HeuristicConfig
from training.baselines import baseline_scores
from training.behaviour import BehaviourCheck, behaviour_checks
from training.calibration import Calibration, CalibrationChoice, calibrate, choose_calibration
from training.config import TrainingConfig
from training.evaluate import MODEL, Evaluation, evaluate
from training.frame import (
    LABEL,
    ROW_WEIGHT,
    TIMESTAMP,
    FeatureSchema,
    TrainingError,
    encode,
    feature_names,
    fit_schema,
)
from training.guards import SignalVerdict, compare_baselines, signal_verdict
from training.metrics import has_both_classes
from training.model import ClassWeights, class_weights, fit_booster, predict_raw
from training.split import SPLITS, Split, time_split

if TYPE_CHECKING:
    import lightgbm as lgb


@dataclass(frozen=True)
class FittedModel:
    """A trained, calibrated and evaluated model with everything needed to export it."""

    schema: FeatureSchema
    booster: lgb.Booster
    best_iteration: int
    valid_logloss: list[float]
    calibration: Calibration
    weights: ClassWeights
    split: Split
    frames: dict[str, pd.DataFrame]  # train / validation / test rows of the frame
    evaluation: Evaluation  # the test window
    validation_auc: float
    behaviour: list[BehaviourCheck]
    seconds: dict[str, float]
    calibration_choice: CalibrationChoice | None = None
    validation: Evaluation | None = None  # the validation window, same scorers
    signal: SignalVerdict | None = None  # training.guards: signal or no_signal

    def score_raw(self, frame: pd.DataFrame) -> np.ndarray:
        return predict_raw(self.booster, encode(frame, self.schema))

    def score(self, frame: pd.DataFrame) -> np.ndarray:
        """Calibrated probabilities: what the exported bundle must reproduce."""
        return calibrate(self.calibration, self.score_raw(frame))

    @property
    def training_window(self) -> tuple[datetime, datetime]:
        """From the first training row to the start of the test window: every row the model
        or its calibration saw lies inside."""
        start = pd.Timestamp(self.frames["train"][TIMESTAMP].min()).to_pydatetime()
        return start, self.split.test_start.to_pydatetime()

    @property
    def train_rows_per_s(self) -> float:
        return len(self.frames["train"]) / self.seconds["fit"] if self.seconds["fit"] else 0.0

    def importance(self) -> np.ndarray:
        """Share of total split gain per feature, in schema order."""
        gains = self.booster.feature_importance("gain").astype(np.float64)
        total = gains.sum()
        return gains / total if total > 0 else gains


def check_labels(frame: pd.DataFrame) -> None:
    if LABEL not in frame.columns:
        raise TrainingError("the frame has no label column")
    labels = frame[LABEL]
    if labels.isna().any():
        raise TrainingError(f"{int(labels.isna().sum())} decision points have no label")
    bad = sorted(set(labels.unique()) - {0, 1})
    if bad:
        raise TrainingError(f"labels must be 0 or 1, found {bad[:5]}")


def fit_model(
    frame: pd.DataFrame,
    service_features: Sequence[str],
    cfg: TrainingConfig,
    heuristic: HeuristicConfig,
) -> FittedModel:
    """Train, calibrate and evaluate on the time split of `frame` (see `training.split`)."""
    check_labels(frame)
    names = feature_names(frame.columns, service_features, cfg.features)
    split = time_split(frame, cfg.split)
    frames = {s: frame.iloc[split.rows(s)].reset_index(drop=True) for s in SPLITS}
    schema = fit_schema(frames["train"], names, cfg.features.context)
    x = {s: encode(frames[s], schema) for s in SPLITS}
    y = {s: frames[s][LABEL].to_numpy(np.int64) for s in SPLITS}
    weights = class_weights(y["train"], cfg.imbalance)
    import lightgbm  # noqa: F401  (imported before the clock starts: fit_seconds times training)

    seconds: dict[str, float] = {}
    clock = time.perf_counter()
    fit = fit_booster(
        x["train"],
        y["train"],
        x["validation"],
        y["validation"],
        names=list(schema.names),
        categorical=schema.categorical_indices,
        weights=weights,
        cfg=cfg.lightgbm,
        row_weights=_row_weights(frames),
    )
    clock = _lap(seconds, "fit", clock)
    raw_valid = predict_raw(fit.booster, x["validation"])
    cal_frame = calibration_rows(frame, split, frames["validation"], cfg.calibration.fit_rows)
    choice = choose_calibration(
        predict_raw(fit.booster, encode(cal_frame, schema)),
        cal_frame[LABEL].to_numpy(np.int64),
        cfg.calibration,
    )
    calibration = choice.calibration
    clock = _lap(seconds, "calibrate", clock)

    windows = {s: frames[s] for s in ("validation", "test")}
    baselines = baseline_scores(frames["train"], windows, heuristic, cfg.baselines)
    raw_test = predict_raw(fit.booster, x["test"])
    evaluation = evaluate(
        frames["test"],
        y["test"],
        calibrate(calibration, raw_test),
        raw_test,
        baselines["test"],
        cfg.evaluation,
    )
    validation = evaluate(
        frames["validation"],
        y["validation"],
        calibrate(calibration, raw_valid),
        raw_valid,
        baselines["validation"],
        cfg.evaluation,
        split="validation",
    )
    validation_auc = _auc(y["validation"], calibrate(calibration, raw_valid))
    comparisons = compare_baselines(
        y["validation"],
        validation.scores[MODEL],
        {b: validation.scores[b] for b in baselines["validation"]},
        cfg.guards.confidence,
    )
    signal = signal_verdict(comparisons, fit.best_iteration, cfg.guards)
    fitted = FittedModel(
        schema=schema,
        booster=fit.booster,
        best_iteration=fit.best_iteration,
        valid_logloss=fit.valid_logloss,
        calibration=calibration,
        weights=weights,
        split=split,
        frames=frames,
        evaluation=evaluation,
        validation_auc=validation_auc,
        behaviour=[],
        seconds=seconds,
        calibration_choice=choice,
        validation=validation,
        signal=signal,
    )
    checks = behaviour_checks(fitted.score, frames["test"], cfg.evaluation)
    _lap(seconds, "evaluate", clock)
    return replace(fitted, behaviour=checks)


def calibration_rows(
    frame: pd.DataFrame, split: Split, validation: pd.DataFrame, fit_rows: str
) -> pd.DataFrame:
    """The rows the calibrator is fitted on: the validation split, or (`window`) every row
    of the validation time window, including those of users purged into the test window.
    Purging takes returning users out of validation, so the split's base rate drifts from
    the test window's; the whole window keeps the population the server will score."""
    if fit_rows == "split":
        return validation
    ts = pd.to_datetime(frame[TIMESTAMP], utc=True)
    inside = (ts >= split.validation_start) & (ts < split.test_start)
    return frame.loc[inside.to_numpy()].reset_index(drop=True)


def _auc(labels: np.ndarray, scores: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores)) if has_both_classes(labels) else float("nan")


def _lap(seconds: dict[str, float], name: str, since: float) -> float:
    now = time.perf_counter()
    seconds[name] = now - since
    return now


def _row_weights(frames: dict[str, pd.DataFrame]) -> tuple[np.ndarray, np.ndarray] | None:
    """Exposure weights of the training and validation rows (`frame.weigh_by_exposure`)."""
    if ROW_WEIGHT not in frames["train"].columns:
        return None
    return tuple(frames[s][ROW_WEIGHT].to_numpy(np.float64) for s in ("train", "validation"))
