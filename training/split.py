"""Time split into train / validation / test windows, with users never crossing splits.

Windows are cut at quantiles of the decision time, so the model is always evaluated on rows
later than any it learned from. A user seen in several windows belongs to the latest one:
their rows in earlier windows are purged (counted, never silently lost). Keeping users in the
latest window keeps returning users in the test window, as they are in production; purging
their earlier rows keeps the windows strictly ordered in time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from training.config import SplitConfig
from training.frame import LABEL, TIMESTAMP, TrainingError

SPLITS: tuple[str, ...] = ("train", "validation", "test")


@dataclass(frozen=True)
class Split:
    """Row positions (into the frame) of each split, the two cut times and what was purged."""

    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray
    validation_start: pd.Timestamp
    test_start: pd.Timestamp
    purged: int

    def rows(self, name: str) -> np.ndarray:
        return getattr(self, name)

    def sizes(self) -> dict[str, int]:
        return {name: len(self.rows(name)) for name in SPLITS}


def user_keys(frame: pd.DataFrame) -> pd.Series:
    """The unit that must not cross splits: the user, or the session for anonymous rows."""
    users = frame["user_id"].astype("string")
    sessions = "session:" + frame["session_id"].astype("string")
    return users.fillna(sessions).astype(str)


def time_split(frame: pd.DataFrame, cfg: SplitConfig) -> Split:
    """Split `frame` by `event_timestamp` (see the module doc).

    Raises TrainingError when a split ends up with fewer than `min_rows` rows or fewer than
    `min_positives` of either class.
    """
    split = assign_windows(frame, cfg)
    check_split(frame, split, cfg)
    return split


def assign_windows(frame: pd.DataFrame, cfg: SplitConfig) -> Split:
    """The split itself, unchecked (windows may be empty or one-class)."""
    if frame.empty:
        raise TrainingError("no decision points to split")
    ts = pd.to_datetime(frame[TIMESTAMP], utc=True).dt.tz_convert(None).to_numpy()
    ordered = np.sort(ts)
    n = len(ordered)
    validation_start = ordered[
        min(int(n * (1 - cfg.validation_fraction - cfg.test_fraction)), n - 1)
    ]
    test_start = ordered[min(int(n * (1 - cfg.test_fraction)), n - 1)]
    window = np.where(ts >= test_start, 2, np.where(ts >= validation_start, 1, 0))
    home = (
        pd.Series(window, index=frame.index).groupby(user_keys(frame).to_numpy()).transform("max")
    )
    keep = window == home.to_numpy()
    positions = np.arange(n)
    return Split(
        train=positions[keep & (window == 0)],
        validation=positions[keep & (window == 1)],
        test=positions[keep & (window == 2)],
        validation_start=pd.Timestamp(validation_start).tz_localize("UTC"),
        test_start=pd.Timestamp(test_start).tz_localize("UTC"),
        purged=int((~keep).sum()),
    )


def check_split(frame: pd.DataFrame, split: Split, cfg: SplitConfig) -> None:
    """Every split has enough rows and enough of both classes to fit / evaluate on; if not,
    the error names the split minimums this data meets (readiness.split_minimums_fix)."""
    from features.pipeline.readiness import split_minimums_fix

    labels = frame[LABEL].to_numpy()
    windows = {n: (len(split.rows(n)), int(labels[split.rows(n)].sum())) for n in SPLITS}
    for name, (count, positives) in windows.items():
        negatives = count - positives
        if count < cfg.min_rows:
            symptom = f"{name} split has {count} rows, fewer than split.min_rows={cfg.min_rows}"
        elif min(positives, negatives) < cfg.min_positives:
            symptom = (
                f"{name} split has {positives} positive and {negatives} negative rows; "
                f"split.min_positives={cfg.min_positives} of each are needed"
            )
        else:
            continue
        raise TrainingError(
            f"{symptom} ({len(frame)} decision points, {split.purged} purged); "
            f"{split_minimums_fix(windows, cfg)}"
        )
