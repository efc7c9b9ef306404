"""`intent report`: read the decision log and the events, compute, write HTML, log to MLflow.

The I/O edge of `loop.efficacy` (pure) and `loop.html_report` (rendering).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from core.layout import Layout
from core.settings import load_config
from features.config import SignalsConfig
from features.events import EVENT_SCHEMA
from loop.config import LoopConfig
from loop.efficacy import (
    DIMENSIONS,
    RULES_VERSION,
    Efficacy,
    ReportError,
    arm_label_users,
    efficacy,
    epoch_seconds,
    holdout_share,
    labelled_decisions,
    rows_frame,
)
from loop.logs import LogSourceError, describe, open_decision_log, read_log
from serving.config import ServingConfig

REPORT_FILE = "report.html"
SEGMENTS_FILE = "segments.csv"
EXPERIMENTS_FILE = "experiments.csv"
_EVENT_COLUMNS = ["session_id", "user_id", "anonymous_id", "ts", "type", "step"]

DEFINITIONS: dict[str, str] = {
    "completion": "the decision's step was completed (step_complete, or the goal) by the same "
    "user within the label horizon after the decision - the training label's definition",
    "holdout completion": "the same for decisions of users in the global holdout, who never "
    "get a trigger (their would-be action is logged)",
    "onboarding completion (users)": "users who reached the funnel's goal in the events, "
    "outside the holdout against inside; Newcombe interval of the difference",
    "lift over holdout": "completion minus holdout completion, in percentage points; interval "
    "from resampling users in each group (bootstrap)",
    "trigger rate": "triggers shown per decision of non-held-out users",
    "accepted": "shown triggers whose outcome was `accepted`",
    "capped": "decisions where the policy wanted a trigger and a frequency cap suppressed it",
    "censored": "decisions whose horizon runs past the last event and saw no completion: "
    "unknown, left out of rates",
    "intervals": "Wilson score intervals for rates; bootstrap for lifts; Newcombe for arm "
    "differences",
}


@dataclass(frozen=True)
class ReportOutcome:
    efficacy: Efficacy
    folder: Path
    files: list[Path]
    run_id: str | None


def read_completion_events(layout: Layout, path: Path | None, first: float) -> pa.Table:
    """Events that can complete the decisions' steps or the funnel: from `path`, else the
    event store from the first decision on (to its end: a user may finish days later)."""
    if path is not None:
        if not path.is_file():
            raise LogSourceError(f"no events file at {path}")
        table = pq.read_table(path)
        missing = [c for c in _EVENT_COLUMNS if c not in table.column_names]
        if missing:
            raise LogSourceError(f"{path}: not canonical events (missing {', '.join(missing)})")
        return table.select(_EVENT_COLUMNS).cast(
            pa.schema([EVENT_SCHEMA.field(c) for c in _EVENT_COLUMNS])
        )
    from features.ingest.event_store import read_events

    start = datetime.fromtimestamp(first, UTC)
    return read_events(layout, start, None, columns=_EVENT_COLUMNS)


def build_efficacy(
    decisions: pd.DataFrame,
    outcomes: pd.DataFrame,
    events: pa.Table,
    horizon_s: float,
    cfg,
) -> Efficacy:
    from features.pipeline.labels import completion_events

    if events.num_rows == 0:
        raise ReportError(
            "no events cover the logged decisions: completions come from the event store "
            "(`intent validate`) or --events"
        )
    data_end = pc.max(events["ts"]).value / 1e6
    frame = labelled_decisions(
        decisions, outcomes, completion_events(events), horizon_s=horizon_s, data_end=data_end
    )
    return efficacy(frame, cfg)


def _facts(eff: Efficacy, source: str, events: str, horizon_min: float) -> dict[str, str]:
    first, last = eff.period
    f = eff.frame
    o = eff.overall
    versions = ", ".join(
        v if v == RULES_VERSION else f"v{v}" for v in sorted(f["version"].unique())
    )
    arms = ", ".join(f"{k}: {v:,}" for k, v in sorted(arm_label_users(f).items()))
    return {
        "decision log": source,
        "events": events,
        "period": f"{first:%Y-%m-%d %H:%M} .. {last:%Y-%m-%d %H:%M} UTC",
        "decisions / users": f"{len(f):,} / {f['user_id'].nunique():,}",
        "held-out users": f"{holdout_share(f):.1%}",
        "users per arm": arms,
        "triggers shown": f"{int(f['shown'].sum()):,}",
        "models (decisions scored)": versions,
        "label horizon": f"{horizon_min:g} min",
        "censored decisions": f"{o.censored:,}",
    }


def _metrics(eff: Efficacy) -> list[tuple[str, float, int]]:
    out = []
    o = eff.overall
    for name in ("trigger_rate", "acceptance", "completion", "holdout_completion", "lift"):
        e = getattr(o, name)
        out += [(name, e.value, 0), (f"{name}.lo", e.lo, 0), (f"{name}.hi", e.hi, 0)]
    out.append(("decisions", float(len(eff.frame)), 0))
    u = eff.users
    for name, e in (
        ("users.completion", u.completion),
        ("users.holdout_completion", u.holdout_completion),
        ("users.difference", u.difference),
    ):
        out += [(name, e.value, 0), (f"{name}.lo", e.lo, 0), (f"{name}.hi", e.hi, 0)]
    for dim, _ in DIMENSIONS:
        for row in eff.tables[dim][:-1]:
            key = f"{dim}.{row.value}".replace("=", "_").replace(",", "+")
            out.append((f"{key}.lift", row.lift.value, 0))
            out.append((f"{key}.trigger_rate", row.trigger_rate.value, 0))
    for arm in eff.experiments:
        out.append((f"experiment.{arm.experiment}.{arm.arm}.p_value", arm.p_value, 0))
        out.append((f"experiment.{arm.experiment}.{arm.arm}.mde", arm.mde, 0))
    return [(k, v, s) for k, v, s in out if not math.isnan(v)]


def run_report(layout, log_path, events_path, mlflow, out, err, progress_factory, stamp) -> None:
    """The command: see `loop.cli.report_command`."""
    from loop.html_report import render

    loop = load_config(LoopConfig, layout=layout).report
    serving = load_config(ServingConfig, layout=layout)
    signals = load_config(SignalsConfig, layout=layout)
    horizon_s = signals.label_horizon_minutes * 60.0
    source = describe(serving, layout, log_path)
    with progress_factory() as progress:
        task = progress.add_task("reading the decision log", total=4)
        decisions, outcomes = read_log(open_decision_log(serving, layout, log_path))
        if decisions.empty:
            raise LogSourceError(f"the decision log at {source} has no decisions yet")
        progress.update(task, advance=1, description="reading events")
        ts = epoch_seconds(decisions["ts"])
        events = read_completion_events(layout, events_path, float(ts.min()))
        progress.update(task, advance=1, description="labelling and bootstrapping")
        try:
            eff = build_efficacy(decisions, outcomes, events, horizon_s, loop)
        except ReportError as exc:
            raise LogSourceError(str(exc)) from exc
        progress.update(task, advance=1, description="rendering")
        facts = _facts(
            eff, source, str(events_path or layout.events), signals.label_horizon_minutes
        )
        page = render(
            eff,
            title="Trigger efficacy",
            facts=facts,
            definitions=DEFINITIONS,
            min_decisions=loop.min_decisions,
        )
        folder = layout.reports / "efficacy" / stamp
        folder.mkdir(parents=True, exist_ok=True)
        (folder / REPORT_FILE).write_text(page)
        seg = pd.concat([rows_frame(eff.tables[d]) for d, _ in DIMENSIONS], ignore_index=True)
        seg.to_csv(folder / SEGMENTS_FILE, index=False)
        exp = pd.DataFrame([_arm_record(a) for a in eff.experiments])
        exp.to_csv(folder / EXPERIMENTS_FILE, index=False)
        files = [folder / REPORT_FILE, folder / SEGMENTS_FILE, folder / EXPERIMENTS_FILE]
        run_id = None
        if mlflow:
            from loop.tracking import log_run

            progress.update(task, description="logging to MLflow")
            run_id = log_run(
                layout,
                serving.model,
                loop.mlflow_experiment,
                run_name=f"report-{stamp}",
                kind="report",
                params={"decision_log": source, "events": str(events_path or layout.events)},
                metrics=_metrics(eff),
                artifacts=files,
            )
        progress.update(task, advance=1)
    o = eff.overall
    lift = (
        f"lift {o.lift.value * 100:+.1f} pp [{o.lift.lo * 100:+.1f}, {o.lift.hi * 100:+.1f}]"
        if not math.isnan(o.lift.value)
        else f"no lift (fewer than {loop.min_decisions} labelled decisions in a group)"
    )
    out.print(
        f"{len(eff.frame):,} decisions, {int(eff.frame['shown'].sum()):,} triggers shown; "
        f"completion {o.completion.value:.1%} vs holdout {o.holdout_completion.value:.1%}, "
        f"{lift}",
        highlight=False,
    )
    u = eff.users
    if not math.isnan(u.difference.value):
        out.print(
            f"users: onboarding completed {u.completion.value:.1%} ({u.users:,}) vs holdout "
            f"{u.holdout_completion.value:.1%} ({u.holdout_users:,}), "
            f"{u.difference.value * 100:+.1f} pp [{u.difference.lo * 100:+.1f}, "
            f"{u.difference.hi * 100:+.1f}]",
            highlight=False,
        )
    for arm in eff.experiments:
        out.print(
            f"experiment {arm.experiment}: {arm.arm} vs {arm.control} "
            f"{arm.difference.value * 100:+.1f} pp, p = {arm.p_value:.3f}, "
            f"MDE {arm.mde * 100:.1f} pp at {arm.users:,} / {arm.control_users:,} users",
            highlight=False,
        )
    out.print(f"report: {folder / REPORT_FILE}", highlight=False, soft_wrap=True)
    if run_id:
        out.print(f"MLflow run: {run_id}", highlight=False)


def _arm_record(a) -> dict:
    return {
        "experiment": a.experiment,
        "arm": a.arm,
        "control": a.control,
        "users": a.users,
        "completion": a.completion.value,
        "control_users": a.control_users,
        "control_completion": a.control_completion.value,
        "difference": a.difference.value,
        "difference_lo": a.difference.lo,
        "difference_hi": a.difference.hi,
        "z": a.z,
        "p_value": a.p_value,
        "mde": a.mde,
    }
