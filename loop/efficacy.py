"""Trigger efficacy from the decision log: pure functions, frames in, frames out.

Every decision gets one outcome that does not depend on whether a trigger was shown: was
its step completed within the label horizon (`features.pipeline.labels`, the training label's own
definition, read from step completions in the events)? The global holdout is a random
slice of users who never see a trigger, with their would-be action logged, so:

- lift = completion of the non-held-out decisions of a segment minus completion of the
  held-out decisions of the same segment (intent to treat: capped and shown alike). For
  actions the segment is `would_action`, the policy's choice before holdout and caps -
  the one label both groups carry. A decision comes after the user's earlier triggers, so
  segment lifts also carry their spill-over (a user helped on one moment scores lower on
  the next); the per-user onboarding completion (`user_outcome`) is the clean top line;
- its interval resamples users (one user's decisions are not independent), rates get
  Wilson intervals;
- decisions whose horizon runs past the data and saw no completion are censored: counted,
  never guessed.

Experiments are compared per user (the unit of randomisation): each user's first decision
in the experiment, completed within the horizon or not; two-proportion z-test against the
control arm, Newcombe interval of the difference, minimum detectable effect at the sample
size reached so far.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from core.vocabulary import ActionType, Outcome, Source
from features.events import EventType
from features.pipeline.labels import label_decisions
from loop.config import ReportConfig
from loop.stats import (
    Estimate,
    bootstrap_lift,
    minimum_detectable_effect,
    newcombe_difference,
    two_proportion_ztest,
    wilson,
)
from serving.experiments import HOLDOUT_ARM

NO_EXPERIMENT = "(none)"
RULES_VERSION = "rules"  # the model_version column of decisions the rules answered
CONTROL_ARM = "control"
DIMENSIONS: tuple[tuple[str, str], ...] = (
    ("moment", "micro-moment"),
    ("would_action", "action (the policy's choice)"),
    ("arm", "experiment arm"),
    ("version", "model version"),
)


class ReportError(ValueError):
    """The log cannot give a report (no decisions, columns missing)."""


def labelled_decisions(
    decisions: pd.DataFrame,
    outcomes: pd.DataFrame,
    completions: pa.Table,
    *,
    horizon_s: float,
    data_end: float,
) -> pd.DataFrame:
    """One row per decision with `completed` (1 / 0 / NaN = censored), `shown`, `accepted`,
    `goal` (the user reached the funnel's goal within the data), `version` (model version,
    or `rules`) and `arm` (`(none)` when in no experiment)."""
    if decisions.empty:
        raise ReportError("the decision log has no decisions")
    frame = decisions.copy()
    frame["request_ts"] = epoch_seconds(frame["ts"])
    keys = pa.Table.from_pandas(frame[["user_id", "step", "request_ts"]], preserve_index=False)
    labels = label_decisions(keys, completions, horizon_s=horizon_s, data_end=data_end)
    label = labels.column("label").to_pandas()
    frame["completed"] = np.where(label.isna(), np.nan, 1.0 - label.astype("float64"))
    frame["shown"] = frame["action"] != ActionType.NONE.value
    accepted = set(outcomes.loc[outcomes["outcome"] == Outcome.ACCEPTED.value, "decision_id"])
    frame["accepted"] = frame["decision_id"].isin(accepted)
    frame["version"] = np.where(
        frame["source"] == Source.MODEL.value, frame["model_version"].fillna("?"), RULES_VERSION
    )
    goals = completions.filter(pc.equal(completions["type"], EventType.GOAL.value))
    frame["goal"] = frame["user_id"].isin(set(goals["user_id"].to_pylist()))
    frame["arm"] = frame["arm"].fillna(NO_EXPERIMENT)
    frame["moment"] = frame["moment"].fillna("(none)")
    return frame


def epoch_seconds(ts: pd.Series) -> pd.Series:
    """UTC timestamps -> epoch seconds (float)."""
    return (ts - pd.Timestamp(0, tz="UTC")).dt.total_seconds()


def _per_user(rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(completions per user, labelled decisions per user) of the labelled rows."""
    known = rows[rows["completed"].notna()]
    grouped = known.groupby("user_id")["completed"].agg(["sum", "count"])
    return grouped["sum"].to_numpy(), grouped["count"].to_numpy()


@dataclass(frozen=True)
class SegmentRow:
    """One segment's efficacy (all rates with intervals)."""

    dimension: str
    value: str
    decisions: int
    users: int
    shown: int
    trigger_rate: Estimate  # shown / non-held-out decisions
    acceptance: Estimate  # accepted / shown
    completion: Estimate  # non-held-out decisions completed within the horizon
    holdout_completion: Estimate
    lift: Estimate  # completion - holdout completion (bootstrap over users)
    capped: int
    cap_rate: Estimate  # capped / non-held-out decisions the policy wanted to trigger
    censored: int


def segment_row(
    dimension: str, value: str, rows: pd.DataFrame, holdout: pd.DataFrame, cfg: ReportConfig
) -> SegmentRow:
    """Efficacy of `rows` (non-held-out decisions) against `holdout` (held-out decisions of
    the same segment)."""
    conf = cfg.confidence
    shown = int(rows["shown"].sum())
    known = rows["completed"].notna()
    h_known = holdout["completed"].notna()
    wanted = int((rows["would_action"] != ActionType.NONE.value).sum())
    capped = int(rows["capped"].sum())
    if min(int(known.sum()), int(h_known.sum())) >= cfg.min_decisions:
        lift = bootstrap_lift(
            _per_user(rows),
            _per_user(holdout),
            resamples=cfg.bootstrap_resamples,
            confidence=conf,
            seed=cfg.bootstrap_seed,
        )
    else:
        lift = Estimate(math.nan, math.nan, math.nan, int(known.sum() + h_known.sum()))
    return SegmentRow(
        dimension=dimension,
        value=value,
        decisions=len(rows) + len(holdout),
        users=int(pd.concat([rows["user_id"], holdout["user_id"]]).nunique()),
        shown=shown,
        trigger_rate=wilson(shown, len(rows), conf),
        acceptance=wilson(int(rows.loc[rows["shown"], "accepted"].sum()), shown, conf),
        completion=wilson(int(rows.loc[known, "completed"].sum()), int(known.sum()), conf),
        holdout_completion=wilson(
            int(holdout.loc[h_known, "completed"].sum()), int(h_known.sum()), conf
        ),
        lift=lift,
        capped=capped,
        cap_rate=wilson(capped, wanted, conf),
        censored=int((~known).sum() + (~h_known).sum()),
    )


def segments(frame: pd.DataFrame, dimension: str, cfg: ReportConfig) -> list[SegmentRow]:
    """One row per value of `dimension`, then `all`. For `arm`, every arm is compared with
    the holdout as a whole (held-out users are in no arm)."""
    held = frame["holdout"]
    treated, holdout = frame[~held], frame[held]
    out = []
    if dimension == "arm":
        for value, rows in treated.groupby("arm", sort=True):
            out.append(segment_row(dimension, str(value), rows, holdout, cfg))
    else:
        values = sorted(frame[dimension].astype(str).unique())
        for value in values:
            rows = treated[treated[dimension].astype(str) == value]
            held_rows = holdout[holdout[dimension].astype(str) == value]
            out.append(segment_row(dimension, value, rows, held_rows, cfg))
    out.append(segment_row(dimension, "all", treated, holdout, cfg))
    return out


def caps_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Would-be triggers of non-held-out users suppressed by each cap (and shown)."""
    wanted = frame[(~frame["holdout"]) & (frame["would_action"] != ActionType.NONE.value)]
    reasons = wanted["cap_reason"].fillna("shown (not capped)")
    counts = reasons.value_counts().rename_axis("cap").reset_index(name="triggers")
    counts["share_of_would_be_triggers"] = counts["triggers"] / max(len(wanted), 1)
    return counts


@dataclass(frozen=True)
class ArmComparison:
    """One arm against the experiment's control, per user."""

    experiment: str
    arm: str
    control: str
    users: int
    completion: Estimate
    control_users: int
    control_completion: Estimate
    difference: Estimate  # Newcombe interval
    z: float
    p_value: float
    mde: float  # absolute, at these sample sizes, alpha and power of the config


def arm_assignments(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows `(experiment, arm)` exploded from the arm label `exp=arm[,exp=arm]`."""
    labelled = frame[~frame["holdout"] & (frame["arm"] != NO_EXPERIMENT)]
    parts = labelled["arm"].str.split(",").explode()
    pairs = parts.str.split("=", n=1, expand=True)
    if pairs.shape[1] < 2:
        return labelled.iloc[0:0].assign(experiment=[], exp_arm=[])
    out = labelled.loc[parts.index].copy()
    out["experiment"] = pairs[0].to_numpy()
    out["exp_arm"] = pairs[1].to_numpy()
    return out.dropna(subset=["exp_arm"])


def experiments(frame: pd.DataFrame, cfg: ReportConfig) -> list[ArmComparison]:
    """Every experiment's arms against its control (`control`, else the first arm by name)."""
    rows = arm_assignments(frame)
    rows = rows[rows["completed"].notna()].sort_values("ts")
    firsts = rows.groupby(["experiment", "user_id"], sort=False).head(1)
    out = []
    for experiment, data in firsts.groupby("experiment", sort=True):
        counts = data.groupby("exp_arm")["completed"].agg(["sum", "count"])
        arms = sorted(counts.index)
        control = CONTROL_ARM if CONTROL_ARM in arms else arms[0]
        kc, nc = int(counts.loc[control, "sum"]), int(counts.loc[control, "count"])
        control_rate = wilson(kc, nc, cfg.confidence)
        for arm in arms:
            if arm == control:
                continue
            k, n = int(counts.loc[arm, "sum"]), int(counts.loc[arm, "count"])
            test = two_proportion_ztest(k, n, kc, nc)
            out.append(
                ArmComparison(
                    experiment=str(experiment),
                    arm=arm,
                    control=control,
                    users=n,
                    completion=wilson(k, n, cfg.confidence),
                    control_users=nc,
                    control_completion=control_rate,
                    difference=newcombe_difference(k, n, kc, nc, cfg.confidence),
                    z=test.z,
                    p_value=test.p_value,
                    mde=minimum_detectable_effect(n, nc, control_rate.value, cfg.alpha, cfg.power),
                )
            )
    return out


@dataclass(frozen=True)
class UserOutcome:
    """Onboarding completion per user, held-out users against the rest: the cleanest top
    line (users are the randomised unit; decisions after a trigger are not)."""

    users: int
    completion: Estimate
    holdout_users: int
    holdout_completion: Estimate
    difference: Estimate  # Newcombe interval


def user_outcome(frame: pd.DataFrame, cfg: ReportConfig) -> UserOutcome:
    users = frame.groupby("user_id").agg(holdout=("holdout", "first"), goal=("goal", "first"))
    treated, held = users[~users["holdout"]], users[users["holdout"]]
    k, n = int(treated["goal"].sum()), len(treated)
    kh, nh = int(held["goal"].sum()), len(held)
    return UserOutcome(
        users=n,
        completion=wilson(k, n, cfg.confidence),
        holdout_users=nh,
        holdout_completion=wilson(kh, nh, cfg.confidence),
        difference=newcombe_difference(k, n, kh, nh, cfg.confidence),
    )


@dataclass(frozen=True)
class Efficacy:
    """Everything the report shows."""

    frame: pd.DataFrame  # labelled decisions
    tables: dict[str, list[SegmentRow]]  # dimension -> rows
    caps: pd.DataFrame
    experiments: list[ArmComparison]
    overall: SegmentRow
    users: UserOutcome

    @property
    def period(self) -> tuple[pd.Timestamp, pd.Timestamp]:
        return self.frame["ts"].min(), self.frame["ts"].max()


def efficacy(frame: pd.DataFrame, cfg: ReportConfig) -> Efficacy:
    """Every table of the report from labelled decisions."""
    tables = {dim: segments(frame, dim, cfg) for dim, _ in DIMENSIONS}
    return Efficacy(
        frame=frame,
        tables=tables,
        caps=caps_table(frame),
        experiments=experiments(frame, cfg),
        overall=tables["moment"][-1],
        users=user_outcome(frame, cfg),
    )


def rows_frame(rows: Sequence[SegmentRow]) -> pd.DataFrame:
    """A segment table as plain columns (CSV, MLflow)."""
    records = []
    for r in rows:
        record = {
            "dimension": r.dimension,
            "value": r.value,
            "decisions": r.decisions,
            "users": r.users,
            "shown": r.shown,
            "capped": r.capped,
            "censored": r.censored,
        }
        for name in (
            "trigger_rate",
            "acceptance",
            "completion",
            "holdout_completion",
            "lift",
            "cap_rate",
        ):
            e: Estimate = getattr(r, name)
            record.update({name: e.value, f"{name}_lo": e.lo, f"{name}_hi": e.hi})
        records.append(record)
    return pd.DataFrame.from_records(records)


def holdout_share(frame: pd.DataFrame) -> float:
    """Share of the log's users who are held out (close to the configured share)."""
    users = frame.groupby("user_id")["holdout"].first()
    return float(users.mean()) if len(users) else math.nan


def arm_label_users(frame: pd.DataFrame) -> dict[str, int]:
    """Users per arm label (the holdout included), for the summary."""
    labels = frame.assign(label=np.where(frame["holdout"], HOLDOUT_ARM, frame["arm"]))
    return labels.groupby("label")["user_id"].nunique().to_dict()
