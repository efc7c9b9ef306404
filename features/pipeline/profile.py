"""Data readiness profile: what an event store can support, and which label it should use.

`profile_events` is pure (events in, a `Profile` out); `features.pipeline.profile_report` renders it
and `intent data profile` (features.pipeline.profile_cli) reads the store and writes the report.

The profile replays the sessions once with the build's own detectors, then labels the same
decision points under every candidate label (each horizon of configs/profile.yaml and
session_end) with the build's own label functions, so its censored shares and positive
rates are exactly what `intent features build` would produce under that label.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.config import LabelKind
from features.events import EventType
from features.pipeline.build import PipelineConfigs, detect_decisions
from features.pipeline.labels import (
    completion_events,
    label_decisions,
    label_session_end,
    session_ends,
)
from features.pipeline.profile_config import ProfileConfig

# Event types a detector needs to fire (features.signals); absent ones silence a moment.
DETECTOR_TYPES: dict[str, str] = {
    EventType.SCROLL: "shallow_scroll (scroll depth before an exit)",
    EventType.CTA_FAIL: "cta_fail (repeated failed CTA clicks)",
    EventType.BACK: "rapid_back (quick back navigation)",
    EventType.HOVER: "help_hover (hovering help)",
}


@dataclass(frozen=True)
class LabelCandidate:
    """One label kind (and horizon) applied to the profile's decision points."""

    kind: LabelKind
    horizon_minutes: float | None
    detected: int
    censored: int
    positives: int
    problems: tuple[str, ...]  # why it is not usable (empty: usable)

    @property
    def name(self) -> str:
        if self.kind == LabelKind.SESSION_END:
            return "session_end"
        return f"horizon {self.horizon_minutes:g} min"

    @property
    def labelled(self) -> int:
        return self.detected - self.censored

    @property
    def censored_share(self) -> float:
        return self.censored / self.detected if self.detected else float("nan")

    @property
    def positive_rate(self) -> float:
        return self.positives / self.labelled if self.labelled else float("nan")

    @property
    def usable(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class Profile:
    """Everything `intent data profile` reports."""

    first_event: datetime
    last_event: datetime
    days: int  # calendar days with at least one event
    events: int
    sessions: int
    users: int
    bot_sessions: int
    events_per_session: dict[str, float]  # mean, median, p90
    returning_user_share: float
    event_types: pd.DataFrame  # type, events, share, sessions
    steps: pd.DataFrame  # step, in_funnel, events, sessions, completions
    moments: pd.DataFrame  # moment, decision_points
    labels: list[LabelCandidate]
    configured: str  # name of the label the configs use now
    recommended: LabelCandidate | None
    recommendation: str
    cannot_support: list[str] = field(default_factory=list)


def label_candidates(
    decisions: pa.Table,
    events: pa.Table,
    configs: PipelineConfigs,
    cfg: ProfileConfig,
    data_end: float,
) -> list[LabelCandidate]:
    """Every horizon of `cfg` and session_end applied to the same decision rows."""
    completions = completion_events(events)
    out = []
    for minutes in cfg.horizons_minutes:
        labelled = label_decisions(
            decisions, completions, horizon_s=minutes * 60, data_end=data_end
        )
        out.append(_candidate(LabelKind.HORIZON, minutes, labelled.column("label"), cfg))
    ended = label_session_end(
        decisions,
        completions,
        session_ends(events),
        session_gap_s=configs.events.session_gap_minutes * 60,
        data_end=data_end,
    )
    out.append(_candidate(LabelKind.SESSION_END, None, ended.column("label"), cfg))
    return out


def _candidate(
    kind: LabelKind, minutes: float | None, labels: pa.ChunkedArray, cfg: ProfileConfig
) -> LabelCandidate:
    detected = len(labels)
    censored = labels.null_count
    positives = int(pc.sum(labels).as_py() or 0)
    t = cfg.label
    labelled = detected - censored
    problems = []
    if labelled < t.min_labelled:
        problems.append(f"{labelled:,} labelled decision points (< {t.min_labelled:,})")
    if detected and censored / detected > t.max_censored_share:
        problems.append(f"censors {censored / detected:.0%} (> {t.max_censored_share:.0%})")
    if labelled:
        rate = positives / labelled
        if not t.min_positive_rate <= rate <= t.max_positive_rate:
            problems.append(
                f"positive rate {rate:.1%} outside "
                f"{t.min_positive_rate:.0%}..{t.max_positive_rate:.0%}"
            )
    return LabelCandidate(kind, minutes, detected, censored, positives, tuple(problems))


def configured_name(configs: PipelineConfigs) -> str:
    signals = configs.signals
    if signals.label_kind == LabelKind.SESSION_END:
        return "session_end"
    return f"horizon {signals.label_horizon_minutes:g} min"


def recommend(
    candidates: list[LabelCandidate], configured: str
) -> tuple[LabelCandidate | None, str]:
    """Keep the configured label when it is usable; else the usable one censoring least
    (session_end first, then the shortest horizon, on ties); else none, with why."""
    usable = [c for c in candidates if c.usable]
    current = next((c for c in usable if c.name == configured), None)
    if current is not None:
        return current, (
            f"keep {current.name}: {current.labelled:,} labelled decision points, "
            f"{current.positive_rate:.1%} positive, {current.censored_share:.1%} censored"
        )
    if not usable:
        return None, (
            "no label kind meets configs/profile.yaml's thresholds on this data; "
            "see the table for why (more days of data usually fix censoring and size)"
        )
    best = min(
        usable,
        key=lambda c: (
            round(c.censored_share, 3),
            c.kind != LabelKind.SESSION_END,
            c.horizon_minutes or 0.0,
        ),
    )
    setting = (
        "label_kind: session_end"
        if best.kind == LabelKind.SESSION_END
        else f"label_kind: horizon, label_horizon_minutes: {best.horizon_minutes:g}"
    )
    return best, (
        f"use {best.name} ({setting} in configs/signals.yaml) instead of {configured}: "
        f"{best.labelled:,} labelled decision points, {best.positive_rate:.1%} positive, "
        f"{best.censored_share:.1%} censored"
    )


def _limits(
    frame: pd.DataFrame,
    days: int,
    returning: float,
    steps: pd.DataFrame,
    detected: int,
    configs: PipelineConfigs,
    cfg: ProfileConfig,
) -> list[str]:
    """What the data cannot support, one sentence each."""
    d = cfg.data
    out = []
    if days < d.min_days_for_step_stats:
        noun = "one day" if days == 1 else f"{days} days"
        out.append(
            f"{noun}: step statistics need a prior day; the first day falls back to same-day "
            f"snapshots every {configs.aggregates.step_fallback_every_minutes} min "
            "(step_stats_fallback = 1)"
        )
    if returning < d.min_returning_user_share:
        out.append(
            f"{returning:.1%} of users come back for a second session: the user_* aggregates "
            "are empty for almost every decision"
        )
    types = set(frame["type"].unique())
    if EventType.STEP_COMPLETE not in types:
        out.append(
            "no step_complete events: a step is only completed by the goal; per-step progress "
            "is invisible (map submitted forms / steps done to step_complete)"
        )
    if EventType.CLICK not in types:
        out.append(
            "no click events: low_click_rate sees a click rate of 0 in every session with "
            f"{configs.signals.moments.low_click_rate_min_interactions}+ interactions, so it "
            "fires on length, not on behaviour"
        )
    if EventType.GOAL not in types:
        out.append("no goal events: nobody ever reaches the goal in this data")
    missing = [DETECTOR_TYPES[t] for t in DETECTOR_TYPES if t not in types]
    if missing:
        out.append("no events for the detectors " + "; ".join(missing) + ": they never fire")
    bare = steps[steps["in_funnel"] & (steps["share"] < d.min_step_event_share)]["step"].tolist()
    if bare:
        out.append(
            f"funnel steps with (almost) no events: {', '.join(bare)}: no decision points there"
        )
    if detected == 0:
        out.append("no decision point at all: nothing to train on")
    return out


def profile_events(
    events: pa.Table,
    bot_scores: pa.Table,
    configs: PipelineConfigs,
    cfg: ProfileConfig,
    *,
    workers: int = 1,
) -> Profile:
    """Profile canonical, validated events (see the module doc)."""
    detected = detect_decisions(events, bot_scores, configs, workers=workers)
    frame = events.select(["session_id", "ts", "type", "step"]).to_pandas()
    summaries = detected.summaries.select(["session_id", "user_id"]).to_pandas()
    per_session = frame.groupby("session_id").size()
    sessions_per_user = summaries.groupby("user_id").size()
    first, last = frame["ts"].min(), frame["ts"].max()
    days = int(frame["ts"].dt.date.nunique())  # days with events: gaps hold no history

    counts = frame["type"].value_counts()
    type_sessions = frame.groupby("type")["session_id"].nunique()
    event_types = pd.DataFrame(
        {
            "type": [t.value for t in EventType],
            "events": [int(counts.get(t.value, 0)) for t in EventType],
            "sessions": [int(type_sessions.get(t.value, 0)) for t in EventType],
        }
    )
    event_types["share"] = event_types["events"] / len(frame)
    steps = _step_coverage(frame, configs)
    moments = (
        detected.decisions.column("moment").value_counts().to_pylist()
        if detected.decisions.num_rows
        else []
    )
    moment_frame = pd.DataFrame(
        {
            "moment": [m["values"] for m in moments],
            "decision_points": [m["counts"] for m in moments],
        },
        columns=["moment", "decision_points"],
    ).sort_values("decision_points", ascending=False, ignore_index=True)
    candidates = label_candidates(detected.decisions, events, configs, cfg, detected.data_end)
    configured = configured_name(configs)
    best, why = recommend(candidates, configured)
    returning = float((sessions_per_user >= 2).mean()) if len(sessions_per_user) else 0.0
    return Profile(
        first_event=first.to_pydatetime(),
        last_event=last.to_pydatetime(),
        days=days,
        events=len(frame),
        sessions=int(frame["session_id"].nunique()),
        users=int(summaries["user_id"].nunique()),
        bot_sessions=detected.bot_sessions,
        events_per_session={
            "mean": float(per_session.mean()),
            "median": float(per_session.median()),
            "p90": float(np.percentile(per_session, 90)),
        },
        returning_user_share=returning,
        event_types=event_types,
        steps=steps,
        moments=moment_frame,
        labels=candidates,
        configured=configured,
        recommended=best,
        recommendation=why,
        cannot_support=_limits(
            frame, days, returning, steps, detected.decisions.num_rows, configs, cfg
        ),
    )


def _step_coverage(frame: pd.DataFrame, configs: PipelineConfigs) -> pd.DataFrame:
    """Funnel steps in order, then any other step the data names."""
    funnel = list(configs.funnel.steps)
    seen = frame.dropna(subset=["step"])
    others = sorted(set(seen["step"]) - set(funnel))
    events = seen["step"].value_counts()
    sessions = seen.groupby("step")["session_id"].nunique()
    done = seen[seen["type"] == EventType.STEP_COMPLETE.value]["step"].value_counts()
    rows = [
        {
            "step": step,
            "in_funnel": step in funnel,
            "events": int(events.get(step, 0)),
            "sessions": int(sessions.get(step, 0)),
            "completions": int(done.get(step, 0)),
        }
        for step in funnel + others
    ]
    out = pd.DataFrame(rows)
    out["share"] = out["events"] / max(len(frame), 1)
    return out
