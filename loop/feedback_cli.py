"""`intent loop export` and `intent loop exposure`: the I/O edge of `loop.feedback`."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
from rich.table import Table

from core.layout import Layout
from core.settings import load_config
from loop.config import LoopConfig
from loop.evaluate import EvaluationError
from loop.logs import LogSourceError, describe, open_decision_log, read_log

EXPOSURE_FILE = "decision_exposure.parquet"


def run_export(layout: Layout, log_path: Path | None, out, err) -> None:
    """Decision log -> trigger_shown / trigger_outcome events -> validated into the store."""
    from features.config import EventsConfig
    from features.ingest.event_store import ingest, read_events
    from loop.efficacy import epoch_seconds
    from loop.feedback import decision_events, stored_decision_ids
    from serving.config import ServingConfig

    cfg = load_config(LoopConfig, layout=layout).feedback
    serving = load_config(ServingConfig, layout=layout)
    events_cfg = load_config(EventsConfig, layout=layout)
    source = describe(serving, layout, log_path)
    decisions, outcomes = read_log(open_decision_log(serving, layout, log_path))
    if decisions.empty:
        raise LogSourceError(f"the decision log at {source} has no decisions yet")
    ts = epoch_seconds(decisions["ts"])
    start = datetime.fromtimestamp(float(ts.min()), UTC)
    end = datetime.fromtimestamp(float(ts.max()) + 1.0, UTC)
    in_store = read_events(layout, start, end, columns=["type", "props"])
    batch = decision_events(decisions, outcomes, stored_decision_ids(in_store))
    written = 0
    quarantined = 0
    if batch.events.num_rows:
        report = ingest(layout, batch.events, events_cfg, datetime.now(UTC), source=cfg.source)
        written = report.written
        quarantined = report.result.summary.quarantined_total
    table = Table(title=f"intent loop export ({source})", title_justify="left")
    table.add_column("")
    table.add_column("count", justify="right")
    for label, value in (
        ("decisions in the log", len(decisions)),
        ("triggers shown -> trigger_shown", batch.shown),
        ("reactions -> trigger_outcome", batch.reactions),
        ("decisions already in the store (skipped, with reactions)", batch.skipped_already_stored),
        (
            "step_completed / abandoned outcomes (in the events already)",
            batch.skipped_not_reactions,
        ),
        ("reactions to decisions that showed nothing (skipped)", batch.skipped_not_shown),
        ("events written (new)", written),
        ("quarantined", quarantined),
    ):
        table.add_row(label, f"{value:,}")
    out.print(table)
    out.print(
        "next: `intent features build` counts them in user_triggers_shown_* / "
        "user_triggers_accepted_*",
        highlight=False,
    )


def run_exposure(layout: Layout, out, err) -> None:
    """Decision points -> exposure (holdout / untreated / treated) and training weights."""
    from core.policy_config import PolicyConfig
    from features.config import SignalsConfig
    from features.ingest.event_store import read_events
    from loop.feedback import exposure
    from serving.experiments import Assigner

    cfg = load_config(LoopConfig, layout=layout).feedback
    signals = load_config(SignalsConfig, layout=layout)
    policy = load_config(PolicyConfig, layout=layout)
    path = layout.features / "decision_points.parquet"
    if not path.is_file():
        raise EvaluationError(f"no decision points at {path}: run `intent features build` first")
    points = pq.read_table(path)
    events = read_events(layout, columns=["session_id", "user_id", "step", "ts", "type"])
    assign = Assigner(policy.experiments)
    table = exposure(
        points,
        events,
        lambda user: assign(user).holdout,
        horizon_s=signals.label_horizon_minutes * 60.0,
        weights=cfg.weights.model_dump(),
    )
    target = layout.features / EXPOSURE_FILE
    tmp = target.with_name(f".{target.name}.tmp")
    pq.write_table(table, tmp)
    tmp.replace(target)
    labels = points.select(["decision_key", "label"]).join(table, "decision_key")
    summary = Table(title=f"exposure of {points.num_rows:,} decision points", title_justify="left")
    for name in ("exposure", "rows", "abandonment rate", "weight"):
        summary.add_column(name, justify="left" if name == "exposure" else "right")
    for kind in ("holdout", "untreated", "treated"):
        rows = labels.filter(pc.equal(labels["exposure"], kind))
        rate = pc.mean(rows["label"]).as_py() if rows.num_rows else None
        summary.add_row(
            kind,
            f"{rows.num_rows:,}",
            "-" if rate is None else f"{rate:.3f}",
            f"{getattr(cfg.weights, kind):g}",
        )
    out.print(summary)
    out.print(f"written: {target} (decision_key, exposure, weight)", highlight=False)
