"""Readiness checks: refuse unusable data with its cause and the fix, never a bare symptom.

`features build`, `features materialize` and `train` each call one check before the step
that would otherwise fail deep inside (an empty table in Feast, a one-class split in
LightGBM). The checks are pure functions over small facts (`LabelFacts`), so the messages
are tested on data built to trigger them; the `check_*_at` wrappers read those facts from
`data/features/`.

The build writes its label facts to `data/features/build_summary.json`, so a later refusal
(materialize, train) can still say how many decision points the label censored and why.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from core.layout import Layout
from features.store.definitions import FeatureTableError

SUMMARY_FILE = "build_summary.json"
SIGNALS_FIX = "configs/signals.yaml"


class UnusableData(FeatureTableError):
    """The data cannot go through this step; the message says why and what to change."""


@dataclass(frozen=True)
class LabelFacts:
    """What labelling did to the decision points of one build."""

    label_kind: str
    horizon_minutes: float
    decision_points: int  # labelled (kept)
    censored: int  # dropped: outcome unknown when the data ends
    positives: int
    events: int
    days: int  # calendar days the events span

    @property
    def detected(self) -> int:
        return self.decision_points + self.censored

    @property
    def censored_share(self) -> float:
        return self.censored / self.detected if self.detected else 0.0

    def label_name(self) -> str:
        if self.label_kind == "horizon":
            return f"the {self.horizon_minutes:g}-min horizon"
        return "label_kind session_end"


class SplitLimits(Protocol):
    """The split settings the train check needs (training.config.SplitConfig has them)."""

    validation_fraction: float
    test_fraction: float
    min_rows: int
    min_positives: int


def censoring_cause(facts: LabelFacts, max_censored_share: float) -> str | None:
    """'the 30-min horizon censors 85% of decision points; use ...' when censoring is to blame."""
    if facts.censored_share <= max_censored_share:
        return None
    fix = (
        f"use label_kind: session_end in {SIGNALS_FIX} (a session that ends without the step "
        "or the goal is the label) or a shorter label_horizon_minutes, then rebuild"
        if facts.label_kind == "horizon"
        else "add data past the open sessions' end (a session is open until its last event "
        "is one session gap old), then rebuild"
    )
    return (
        f"{facts.label_name()} censors {facts.censored_share:.0%} of decision points "
        f"({facts.censored:,} of {facts.detected:,} have no known outcome when the data ends); "
        f"{fix}"
    )


def label_refusal(facts: LabelFacts, max_censored_share: float) -> str | None:
    """Why these labels cannot train anything (None when they can): no decision points, or
    one class only."""
    if facts.detected == 0:
        return (
            f"no decision points in {facts.events:,} events: no micro-moment detector of "
            f"{SIGNALS_FIX} fired (they need pauses, scrolls, clicks, backs or hovers on funnel "
            "steps); check the mapping's event types with `intent data profile`"
        )
    cause = censoring_cause(facts, max_censored_share)
    if facts.decision_points == 0:
        return f"every decision point is censored: {cause}"
    negatives = facts.decision_points - facts.positives
    if facts.positives and negatives:
        return None
    which = "1 (abandoned)" if negatives == 0 else "0 (completed)"
    if cause is not None:
        return f"all {facts.decision_points:,} labelled decision points are {which}: {cause}"
    if negatives == 0:
        return (
            f"all {facts.decision_points:,} decision points are labelled 1: the data has no "
            "step_complete or goal event after any of them; map completions (a purchase, a "
            "submitted form) to step_complete / goal in your import mapping"
        )
    return (
        f"all {facts.decision_points:,} decision points are labelled 0: every one is followed "
        f"by a completion under {facts.label_name()}; use a shorter label_horizon_minutes or "
        f"label_kind: session_end in {SIGNALS_FIX}"
    )


def split_refusal(
    timestamps: np.ndarray,
    labels: np.ndarray,
    limits: SplitLimits,
    facts: LabelFacts | None,
    max_censored_share: float,
    users: np.ndarray | None = None,
) -> str | None:
    """Why the time split will leave a window without enough rows or of one class (None if
    it will not). Windows are cut at the same decision-time quantiles as training's split,
    and each user's rows go to their latest window (`users`: one key per row), as there."""
    n = len(labels)
    if n == 0:
        return "no decision points to train on; run `intent features build` first"
    order = np.sort(timestamps)
    cut_validation = order[
        min(int(n * (1 - limits.validation_fraction - limits.test_fraction)), n - 1)
    ]
    cut_test = order[min(int(n * (1 - limits.test_fraction)), n - 1)]
    window = np.where(timestamps >= cut_test, 2, np.where(timestamps >= cut_validation, 1, 0))
    if users is not None:
        latest = pd.Series(window).groupby(np.asarray(users)).transform("max").to_numpy()
        window = np.where(window == latest, window, -1)  # purged rows belong to no window
    windows = {
        name: (int((window == i).sum()), int(labels[window == i].sum()))
        for i, name in enumerate(("train", "validation", "test"))
    }
    for name, (count, positives) in windows.items():
        negatives = count - positives
        if count >= limits.min_rows and min(positives, negatives) >= limits.min_positives:
            continue
        symptom = (
            f"{name} split has {positives} positive and {negatives} negative rows "
            f"(split.min_rows={limits.min_rows}, split.min_positives={limits.min_positives})"
        )
        cause = censoring_cause(facts, max_censored_share) if facts is not None else None
        if cause is not None:
            return f"{symptom}: {cause}"
        return (
            f"{symptom}: {n:,} decision points are too few or too one-sided for a time split; "
            f"{split_minimums_fix(windows, limits)} (`intent data profile` shows the label rates)"
        )
    return None


def split_minimums_fix(windows: Mapping[str, tuple[int, int]], limits: SplitLimits) -> str:
    """What to do when split windows (name -> (rows, positives)) miss the minimums: the
    largest split.min_rows / split.min_positives this data meets, named with their values,
    or, when a window lacks a class, that no minimum can help."""
    for name, (count, positives) in windows.items():
        if min(positives, count - positives) == 0:
            missing = "positive" if positives == 0 else "negative"
            return (
                f"the {name} window has no {missing} rows, which no split minimum can fix: "
                "add days of data (or move split.validation_fraction / split.test_fraction "
                "in configs/training.yaml)"
            )
    rows = min(count for count, _ in windows.values())
    each = min(min(p, count - p) for count, p in windows.values())
    changes = [
        f"split.{key}: {value}"
        for key, value, limit in (
            ("min_rows", rows, limits.min_rows),
            ("min_positives", each, limits.min_positives),
        )
        if value < limit
    ]
    return (
        f"add days of data, or for a trial run set {' and '.join(changes)} in "
        "configs/training.yaml (the largest values this data meets; the training guards then "
        "judge whether so few rows carry a signal)"
    )


def empty_table_refusal(
    rows: dict[str, int], facts: LabelFacts | None, gap_minutes: float
) -> str | None:
    """Why a feature table is empty and what to do (None when none is)."""
    causes = {
        "decision_points": "no decision point survived labelling",
        "session_snapshots": "no session was replayed",
        "user_stats": (
            f"no session is known to be over before the data ends (a session counts once its "
            f"last event is {gap_minutes:g} min old); add later data"
        ),
        "step_stats": (
            "no session is known to be over before the data ends, so no step statistic exists "
            "yet (even the first day's fallback needs one finished session); add later data"
        ),
    }
    for name, count in rows.items():
        if count:
            continue
        cause = causes.get(name, "the build wrote no rows")
        if name == "decision_points" and facts is not None:
            cause = label_refusal(facts, 1.0) or censoring_cause(facts, 0.0) or cause
        return f"{name}.parquet has no rows: {cause}"
    return None


# --- I/O edge ------------------------------------------------------------------------------


def summary_path(layout: Layout) -> Path:
    return layout.features / SUMMARY_FILE


def write_facts(layout: Layout, facts: LabelFacts) -> None:
    path = summary_path(layout)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(facts), indent=2))


def read_facts(layout: Layout) -> LabelFacts | None:
    """The last build's label facts, None before the first build that wrote them."""
    path = summary_path(layout)
    if not path.exists():
        return None
    return LabelFacts(**json.loads(path.read_text()))


def _max_censored_share(layout: Layout) -> float:
    from core.settings import load_config
    from features.pipeline.profile_config import ProfileConfig

    return load_config(ProfileConfig, layout=layout).label.max_censored_share


def check_materializable(layout: Layout, tables: Sequence[str], gap_minutes: float) -> None:
    """Raise UnusableData when a feature table to load is missing or empty, with the cause."""
    rows = {}
    for name in tables:
        path = layout.features / f"{name}.parquet"
        if not path.exists():
            raise UnusableData(f"{path}: not found; run `intent features build` first")
        rows[name] = pq.read_metadata(path).num_rows
    refusal = empty_table_refusal(rows, read_facts(layout), gap_minutes)
    if refusal is not None:
        raise UnusableData(refusal)


def check_trainable(layout: Layout, limits: SplitLimits) -> None:
    """Raise UnusableData when the decision points cannot fill every split window."""
    path = layout.features / "decision_points.parquet"
    if not path.exists():
        raise UnusableData(f"{path}: not found; run `intent features build` first")
    frame = pd.read_parquet(path, columns=["event_timestamp", "label", "user_id", "session_id"])
    ts = frame["event_timestamp"].astype("int64").to_numpy()
    labels = frame["label"].fillna(0).astype(int).to_numpy()
    users = frame["user_id"].astype("string").fillna("session:" + frame["session_id"])
    refusal = split_refusal(
        ts, labels, limits, read_facts(layout), _max_censored_share(layout), users.to_numpy()
    )
    if refusal is not None:
        raise UnusableData(refusal)
