"""The live efficacy dashboard's figures: pure functions from a decision-log window to data.

The page (`serving.dashboard_html`) and `/dashboard.json` (`serving.dashboard_routes`) show
the same dict. Definitions, per segment (micro-moment, action, experiment arm):

- trigger rate = decisions that showed a trigger / decisions outside the global holdout;
- acceptance = shown decisions with an `accepted` outcome / shown decisions;
- completion = decisions with a `step_completed` outcome / all decisions (holdout included,
  so the holdout arm's completion is the baseline to compare with);

each with a Wilson interval (`loop.stats.wilson`). The action segment is `would_action`, the
policy's choice before holdout and caps (the one label held-out decisions carry too), as in
the offline report (`loop.efficacy`). Unlike that report, completion here comes from what
clients post to /outcome, not from the event stream: a live figure, not the lift estimate.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from core.vocabulary import ActionType, Outcome
from loop.stats import Estimate, wilson
from serving.decision_log import DECISION_COLUMNS, LogWindow

NONE_LABEL = "(none)"
# (decision-log column, what the page calls it)
DIMENSIONS: tuple[tuple[str, str], ...] = (
    ("moment", "micro-moment"),
    ("would_action", "action (the policy's choice)"),
    ("arm", "experiment arm"),
)
SHADOW_COLUMNS = ("shadow_score", "shadow_version")  # added by the shadow rollout, when on
_WANTED = (
    "moment",
    "would_action",
    "action",
    "arm",
    "holdout",
    "source",
    "fallback_reason",
    "model_version",
    "score",
    *SHADOW_COLUMNS,
)
TIMELINE_BUCKETS = 24


def log_columns() -> list[str]:
    """The columns the dashboard reads: the shadow ones only once the log has them."""
    return [c for c in _WANTED if c in DECISION_COLUMNS]


def estimate_json(e: Estimate) -> dict[str, float | int | None]:
    """An estimate as strict JSON (NaN -> null)."""

    def num(x: float) -> float | None:
        return None if math.isnan(x) else round(float(x), 6)

    return {"value": num(e.value), "lo": num(e.lo), "hi": num(e.hi), "n": int(e.n)}


def flags(decisions: pd.DataFrame, outcomes: pd.DataFrame) -> pd.DataFrame:
    """One row per decision with boolean `eligible`, `shown`, `accepted`, `completed`."""
    frame = decisions.copy()
    frame["holdout"] = frame["holdout"].fillna(False).astype(bool)
    frame["eligible"] = ~frame["holdout"]
    frame["shown"] = frame["action"] != ActionType.NONE.value
    accepted = set(outcomes.loc[outcomes["outcome"] == Outcome.ACCEPTED.value, "decision_id"])
    completed = set(
        outcomes.loc[outcomes["outcome"] == Outcome.STEP_COMPLETED.value, "decision_id"]
    )
    frame["accepted"] = frame["shown"] & frame["decision_id"].isin(accepted)
    frame["completed"] = frame["decision_id"].isin(completed)
    for dim, _ in DIMENSIONS:
        frame[dim] = frame[dim].fillna(NONE_LABEL).astype(str)
    return frame


def rates(frame: pd.DataFrame, confidence: float) -> dict[str, Any]:
    """Counts and the three rates of a set of flagged decisions."""
    n, eligible = len(frame), int(frame["eligible"].sum())
    shown_eligible = int((frame["shown"] & frame["eligible"]).sum())
    shown, accepted = int(frame["shown"].sum()), int(frame["accepted"].sum())
    completed = int(frame["completed"].sum())
    return {
        "decisions": n,
        "eligible": eligible,
        "shown": shown,
        "accepted": accepted,
        "completed": completed,
        "trigger_rate": estimate_json(wilson(shown_eligible, eligible, confidence)),
        "acceptance": estimate_json(wilson(accepted, shown, confidence)),
        "completion": estimate_json(wilson(completed, n, confidence)),
    }


def segments(frame: pd.DataFrame, dimension: str, confidence: float) -> list[dict[str, Any]]:
    """`rates` per value of `dimension`, largest segment first."""
    rows = [
        {"value": str(value), **rates(group, confidence)}
        for value, group in frame.groupby(dimension, sort=False)
    ]
    return sorted(rows, key=lambda r: (-r["decisions"], r["value"]))


def fallback_reasons(decisions: pd.DataFrame) -> list[dict[str, Any]]:
    """Rules fallbacks by reason, with their share of all decisions."""
    total = len(decisions)
    counts = decisions["fallback_reason"].dropna().value_counts()
    return [
        {"reason": str(reason), "decisions": int(n), "share": round(n / total, 6)}
        for reason, n in counts.items()
    ]


def timeline(
    decisions: pd.DataFrame, since: float, until: float, buckets: int = TIMELINE_BUCKETS
) -> list[dict[str, Any]]:
    """Decisions and shown triggers per equal slice of the window (oldest first)."""
    width = (until - since) / buckets
    ts = decisions["ts"].astype("float64").to_numpy()
    shown = (decisions["action"] != ActionType.NONE.value).to_numpy()
    idx = np.clip(((ts - since) // width).astype(np.int64), 0, buckets - 1) if len(ts) else ts
    counts = np.bincount(idx.astype(np.int64), minlength=buckets) if len(ts) else [0] * buckets
    hits = (
        np.bincount(idx.astype(np.int64), weights=shown, minlength=buckets)
        if len(ts)
        else [0] * buckets
    )
    return [
        {"start": round(since + i * width, 3), "decisions": int(counts[i]), "shown": int(hits[i])}
        for i in range(buckets)
    ]


def shadow_agreement(
    decisions: pd.DataFrame, tolerance: float, confidence: float
) -> dict[str, Any]:
    """Champion vs shadow scores, per shadow version: how often they agree within
    `tolerance`, the mean absolute difference and Spearman's rank correlation. `off` when the
    log has no shadow columns or no shadow score in the window."""
    if "shadow_score" not in decisions.columns:
        return {"status": "off", "detail": "shadow off: the decision log has no shadow scores"}
    pairs = decisions[decisions["shadow_score"].notna()]
    if pairs.empty:
        return {"status": "off", "detail": "shadow off: no shadow score in this window"}
    versions = (
        pairs["shadow_version"].fillna("?").astype(str)
        if "shadow_version" in pairs.columns
        else pd.Series("?", index=pairs.index)
    )
    rows = []
    for version, group in pairs.groupby(versions, sort=True):
        champion = group["score"].astype("float64").to_numpy()
        shadow = group["shadow_score"].astype("float64").to_numpy()
        diff = np.abs(champion - shadow)
        rows.append(
            {
                "shadow_version": str(version),
                "pairs": len(group),
                "agreement": estimate_json(
                    wilson(int((diff <= tolerance).sum()), len(group), confidence)
                ),
                "mean_abs_diff": round(float(diff.mean()), 6),
                "spearman": _spearman(champion, shadow),
            }
        )
    return {"status": "on", "tolerance": tolerance, "versions": rows}


def _spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    """Rank correlation; None with fewer than 3 pairs or a constant side."""
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    from scipy.stats import spearmanr

    return round(float(spearmanr(a, b).statistic), 6)


def drift_figures(report: Any, threshold: float, min_rows: int) -> dict[str, Any]:
    """The drift monitor's last report (`serving.drift.DriftReport` or None) as data."""
    if report is None:
        return {"status": "none", "detail": "no drift report yet (no profiled model decisions)"}
    features = sorted(report.feature_psi.items(), key=lambda kv: -kv[1])
    return {
        "status": "ok",
        "model_version": report.model_version,
        "rows": report.rows,
        "threshold": threshold,
        "verdict": report.rows >= min_rows,
        "score_psi": round(report.score_psi, 6),
        "features": [
            {"feature": name, "psi": round(value, 6), "over": value > threshold}
            for name, value in features
        ],
    }


def summarize(
    window: LogWindow,
    *,
    name: str,
    since: float,
    until: float,
    confidence: float,
    shadow_tolerance: float,
    drift: Mapping[str, Any],
) -> dict[str, Any]:
    """Every figure of the page for one window of the log."""
    decisions = window.decisions
    if decisions.empty:
        decisions = pd.DataFrame(columns=["decision_id", "ts", *log_columns()])
    frame = flags(decisions, window.outcomes)
    sources = frame["source"].value_counts()
    return {
        "window": name,
        "since": since,
        "until": until,
        "truncated": window.truncated,
        "confidence": confidence,
        "totals": {
            **rates(frame, confidence),
            "holdout": int(frame["holdout"].sum()),
            "by_source": {str(k): int(v) for k, v in sources.items()},
        },
        "segments": {dim: segments(frame, dim, confidence) for dim, _ in DIMENSIONS},
        "fallbacks": fallback_reasons(frame),
        "timeline": timeline(frame, since, until),
        "drift": dict(drift),
        "shadow": shadow_agreement(frame, shadow_tolerance, confidence),
    }
