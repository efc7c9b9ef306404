"""`intent retrain --as-of D`: the monthly job, idempotent per as-of date.

1. Build the feature tables for the window `[D - window_days, D)` into `data/retrain/D/`
   with its own Feast registry (serving's tables and online store are left alone). Events
   are read from a lookback before the window - the longest aggregate window - so user and
   step aggregates at the window's start are complete; sessions that began before the
   lookback are left out whole rather than replayed half.
2. Train on that frame, register the version as challenger (`training.run`).
3. Promote per the gate (`training.promote`).
4. Write `reports/retrain-D.md`.

A second run for the same date finds the finished training run tagged with that date and
reuses it: no second version; the report is rendered again from the recorded runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from core.heuristic import HeuristicConfig
from core.layout import Layout
from features.pipeline.build import (
    BuildSummary,
    PipelineConfigs,
    build_tables,
    oracle_path,
    table_paths,
)
from features.store.config import FeatureStoreConfig
from training.config import TrainingConfig
from training.fit import fit_model
from training.frame import TIMESTAMP, TrainingError, load_training_frame
from training.guards import signal_line
from training.promote import CANDIDATE_TAG, PromotionResult, promote
from training.report import ReportInputs, render_report
from training.run import BEST_BASELINE_TAG, record_training
from training.tracking import (
    AS_OF_TAG,
    KIND_TAG,
    VERSION_TAG,
    find_runs,
    session,
    tracking_uri,
)

WINDOW_TAG = "intent.window_days"
# Sessions longer than this are cut by the lookback start (sessions end after 30 idle min).
_SESSION_MARGIN = timedelta(days=1)


@dataclass(frozen=True)
class Window:
    as_of: date
    days: int
    lookback_days: int

    @property
    def end(self) -> datetime:
        return datetime.combine(self.as_of, datetime.min.time(), tzinfo=UTC)

    @property
    def start(self) -> datetime:
        return self.end - timedelta(days=self.days)

    @property
    def read_start(self) -> datetime:
        return self.start - timedelta(days=self.lookback_days)


def window_layout(layout: Layout, as_of: date) -> Layout:
    """The layout whose `features/` and `feast/` hold one as-of date's build."""
    return dataclasses.replace(layout, data=layout.retrain / as_of.isoformat())


def window_events(layout: Layout, window: Window) -> pa.Table:
    """Events from the lookback start to the as-of date, whole sessions only."""
    from features.ingest.event_store import read_events

    events = read_events(layout, window.read_start - _SESSION_MARGIN, window.end)
    if events.num_rows == 0:
        raise TrainingError(
            f"no events between {window.read_start:%Y-%m-%d} and {window.as_of}; "
            "check --as-of against the event store"
        )
    firsts = events.group_by("session_id").aggregate([("ts", "min")])
    early = firsts.filter(
        pc.less(firsts["ts_min"], pa.scalar(window.read_start, events["ts"].type))
    )
    return events.filter(pc.invert(pc.is_in(events["session_id"], value_set=early["session_id"])))


def build_window(
    layout: Layout,
    window: Window,
    fs_cfg: FeatureStoreConfig,
    progress: Callable[[int], None] | None = None,
) -> tuple[Layout, BuildSummary, int]:
    """Write the window's feature tables and apply its Feast registry; returns the window
    layout, the build summary (lookback included) and the decision points in the window."""
    from features.ingest.event_store import read_bot_scores
    from features.store.repo import apply

    configs = PipelineConfigs.load(layout)
    events = window_events(layout, window)
    path = oracle_path(layout)
    oracle = pq.read_table(path) if path.exists() else None
    built = build_tables(events, read_bot_scores(layout), configs, oracle=oracle, progress=progress)
    tables = built.as_dict()
    points = tables["decision_points"]
    inside = pc.greater_equal(points[TIMESTAMP], pa.scalar(window.start, points[TIMESTAMP].type))
    tables["decision_points"] = points.filter(inside)
    target = window_layout(layout, window.as_of)
    for name, out in table_paths(target).items():
        out.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(tables[name], out)
    apply(target, fs_cfg)
    return target, built.summary, tables["decision_points"].num_rows


def lookback_days(configs: PipelineConfigs) -> int:
    """History the aggregates need before the window: their longest window."""
    agg = configs.aggregates
    return max(max(agg.user_windows_days), agg.step_window_days)


@dataclass(frozen=True)
class RetrainResult:
    as_of: date
    window: Window
    reused: bool
    run_id: str
    version: str
    promotion: PromotionResult | None  # None when a reused date was already decided
    report: Path


def retrain(
    layout: Layout,
    cfg: TrainingConfig,
    fs_cfg: FeatureStoreConfig,
    heuristic: HeuristicConfig,
    as_of: date,
    window_days: int,
    *,
    on_stage: Callable[[str], None] | None = None,
) -> RetrainResult:
    """Build, train, register, promote and report for one as-of date (idempotent)."""
    stage = on_stage or (lambda _s: None)
    window = Window(as_of, window_days, lookback_days(PipelineConfigs.load(layout)))
    uri = tracking_uri(layout, cfg.tracking)
    existing = _finished_run(uri, cfg, as_of)
    promotion: PromotionResult | None = None
    if existing is None:
        stage("building features")
        target, _summary, rows = build_window(layout, window, fs_cfg)
        if rows == 0:
            raise TrainingError(f"no decision points between {window.start:%Y-%m-%d} and {as_of}")
        stage("reading the point-in-time frame")
        data = load_training_frame(target, fs_cfg)
        stage("training")
        fitted = fit_model(data.frame, data.service_features, cfg, heuristic)
        stage("logging and exporting")
        outcome = record_training(
            layout,
            cfg,
            fitted,
            data,
            run_name=f"retrain-{as_of.isoformat()}",
            tags={AS_OF_TAG: as_of.isoformat(), WINDOW_TAG: str(window_days)},
        )
        run_id, version = outcome.run_id, outcome.version
    else:
        run_id, version, trained_days = existing
        if trained_days != window_days:
            raise TrainingError(
                f"as of {as_of} a model was already trained on a {trained_days}-day window "
                f"(run {run_id}); rerun with --window-days {trained_days} or another date"
            )
    if not _decided(uri, cfg, version):
        stage("promotion gate")
        promotion = promote(layout, cfg, version=version)
    stage("writing the report")
    report = write_report(layout, cfg, window, run_id, version, reused=existing is not None)
    return RetrainResult(as_of, window, existing is not None, run_id, version, promotion, report)


def _finished_run(uri: str, cfg: TrainingConfig, as_of: date) -> tuple[str, str, int] | None:
    """(run id, version, window days) of the finished, registered run for this as-of date."""
    with session(uri) as client:
        runs = find_runs(
            client, cfg.registry.experiment, {KIND_TAG: "train", AS_OF_TAG: as_of.isoformat()}
        )
    for run in runs:
        version = run.data.tags.get(VERSION_TAG)
        if version:
            return run.info.run_id, version, int(run.data.tags[WINDOW_TAG])
    return None


def _decided(uri: str, cfg: TrainingConfig, version: str) -> bool:
    with session(uri) as client:
        return bool(
            find_runs(
                client, cfg.registry.experiment, {KIND_TAG: "promote", CANDIDATE_TAG: version}
            )
        )


def report_path(layout: Layout, as_of: date) -> Path:
    return layout.reports / f"retrain-{as_of.isoformat()}.md"


def write_report(
    layout: Layout, cfg: TrainingConfig, window: Window, run_id: str, version: str, *, reused: bool
) -> Path:
    """Render the report from the recorded runs (so a reused date gets the same report)."""
    uri = tracking_uri(layout, cfg.tracking)
    with session(uri) as client:
        run = client.get_run(run_id)
        decisions = find_runs(
            client, cfg.registry.experiment, {KIND_TAG: "promote", CANDIDATE_TAG: version}
        )
    if decisions:
        tags = decisions[0].data.tags
        promotion = (
            f"{tags.get('intent.decision')} (champion before: {tags.get('intent.champion_version')}"
            f", forced: {tags.get('intent.forced')})"
        )
        reasons = [line for line in tags.get("mlflow.note.content", "").splitlines() if line]
    else:
        promotion, reasons = "not decided", []
    text = render_report(
        ReportInputs(
            as_of=window.as_of,
            window_days=window.days,
            model_name=cfg.registry.model_name,
            experiment=cfg.registry.experiment,
            tracking_uri=uri,
            run_id=run_id,
            version=version,
            params=run.data.params,
            metrics=run.data.metrics,
            behaviour=run.data.tags.get("intent.behaviour", "unknown"),
            signal=signal_line(run.data.tags),
            best_baseline=run.data.tags.get(BEST_BASELINE_TAG, "unknown"),
            promotion=promotion,
            promotion_reasons=reasons,
            reused=reused,
        )
    )
    path = report_path(layout, window.as_of)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
