"""`intent features build`: validated events -> the offline feature tables on disk.

`build_tables` is the pure part (tables in, tables out); `build_features` reads the event
store and writes `layout.features / {decision_points, session_snapshots, user_stats,
step_stats}.parquet` as ARCHITECTURE.md ("Feature tables") specifies.

Bot sessions are left out of every table (counted in the summary). Decision points whose
label horizon runs past the data and that saw no completion are censored - their label is
unknown - and are left out too, also counted.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from core.layout import Layout
from core.settings import load_config
from features.config import EventsConfig, FunnelConfig, LabelKind, SignalsConfig
from features.pipeline.aggregates import (
    STEP_STATS_SCHEMA,
    TS_TYPE,
    run_sql,
    session_summaries,
    step_stats,
    user_stats,
    user_stats_schema,
)
from features.pipeline.config import AggregatesConfig
from features.pipeline.labels import (
    attach_oracle,
    completion_events,
    label_decisions,
    label_session_end,
)
from features.pipeline.replay import ReplayTables, replay_events
from features.signals import SNAPSHOT_FIELDS

if TYPE_CHECKING:
    from features.pipeline.readiness import LabelFacts

TABLES: tuple[str, ...] = ("decision_points", "session_snapshots", "user_stats", "step_stats")
# Keys each table is unique on (Feast's point-in-time joins need one row per key and time).
UNIQUE_KEYS: dict[str, list[str]] = {
    "decision_points": ["decision_key"],
    "session_snapshots": ["session_id", "event_timestamp"],
    "user_stats": ["user_id", "event_timestamp"],
    "step_stats": ["step", "event_timestamp"],
}
ORACLE_FILE = "oracle.parquet"

DECISION_POINTS_SCHEMA = pa.schema(
    [
        pa.field("decision_key", pa.string(), False),
        pa.field("user_id", pa.string()),
        pa.field("session_id", pa.string()),
        pa.field("step", pa.string()),
        pa.field("moment", pa.string()),
        pa.field("episode", pa.string()),
        pa.field("event_timestamp", TS_TYPE, False),
        pa.field("request_ts", pa.float64()),
        pa.field("device", pa.string()),
        pa.field("channel", pa.string()),
        pa.field("label", pa.int64()),
        pa.field("oracle_p", pa.float64()),
    ]
)
SESSION_SNAPSHOTS_SCHEMA = pa.schema(
    [pa.field("session_id", pa.string()), pa.field("event_timestamp", TS_TYPE, False)]
    + [pa.field(name, pa.float64()) for name in SNAPSHOT_FIELDS]
)


class BuildError(ValueError):
    """The input cannot produce feature tables (no events, missing bot scores, ...)."""


@dataclass(frozen=True)
class PipelineConfigs:
    """Every config the build reads."""

    signals: SignalsConfig
    events: EventsConfig
    funnel: FunnelConfig
    aggregates: AggregatesConfig

    @classmethod
    def load(cls, layout: Layout) -> PipelineConfigs:
        return cls(
            signals=load_config(SignalsConfig, layout=layout),
            events=load_config(EventsConfig, layout=layout),
            funnel=load_config(FunnelConfig, layout=layout),
            aggregates=load_config(AggregatesConfig, layout=layout),
        )


@dataclass(frozen=True)
class BuildSummary:
    """What a build read and wrote (the command prints it; bench reads the timings)."""

    events: int
    sessions: int
    users: int
    bot_sessions: int
    bot_events: int
    decision_points: int
    moments: dict[str, int]
    label_rate: float
    censored: int
    oracle_attached: bool
    rows: dict[str, int]
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def replay_events_per_s(self) -> float:
        spent = self.seconds.get("replay", 0.0)
        return (self.events - self.bot_events) / spent if spent > 0 else float("nan")


@dataclass(frozen=True)
class FeatureTables:
    """The four offline tables and the summary of the build that made them."""

    decision_points: pa.Table
    session_snapshots: pa.Table
    user_stats: pa.Table
    step_stats: pa.Table
    summary: BuildSummary

    def as_dict(self) -> dict[str, pa.Table]:
        return {name: getattr(self, name) for name in TABLES}


def build_tables(
    events: pa.Table,
    bot_scores: pa.Table,
    configs: PipelineConfigs,
    *,
    oracle: pa.Table | None = None,
    workers: int = 1,
    progress: Callable[[int], None] | None = None,
) -> FeatureTables:
    """Decision points, session snapshots, user and step aggregates from canonical events.

    `bot_scores` needs `session_id, is_bot` for every session; `oracle` (simulated data)
    needs `session_id, step, ts_from, p_abandon`. `progress` gets replayed event counts.
    """
    seconds: dict[str, float] = {}
    clock = time.perf_counter()
    _check_events(events)
    bots = _bot_sessions(events, bot_scores)
    is_bot = pc.is_in(events.column("session_id"), value_set=bots)
    human = events.filter(pc.invert(is_bot))
    if human.num_rows == 0:
        raise BuildError(f"all {events.num_rows} events belong to sessions flagged as bots")
    data_end = pc.max(events.column("ts")).value / 1e6  # the data's cut-off (epoch s)

    clock = _lap(seconds, "prepare", clock)
    replayed = replay_events(human, configs.signals, workers=workers, progress=progress)
    clock = _lap(seconds, "replay", clock)

    summaries = session_summaries(
        human, replayed.visits, configs.funnel, configs.events.session_gap_minutes * 60
    )
    labelled = _labelled(replayed, summaries, events, configs, oracle, data_end)
    known = pc.is_valid(labelled.column("label"))
    points = labelled.filter(known).select(DECISION_POINTS_SCHEMA.names)
    points = points.cast(DECISION_POINTS_SCHEMA)
    snapshots = _snapshot_rows(replayed.snapshots)
    clock = _lap(seconds, "labels", clock)

    users = user_stats(summaries, replayed.gaps, configs.aggregates, data_end)
    steps = step_stats(summaries, replayed.visits, replayed.gaps, configs.aggregates, data_end)
    _lap(seconds, "aggregates", clock)

    tables = dict(zip(TABLES, (points, snapshots, users, steps), strict=True))
    for name, keys in UNIQUE_KEYS.items():
        _check_unique(tables[name], keys, name)
    labels = points.column("label")
    summary = BuildSummary(
        events=events.num_rows,
        sessions=replayed.sessions,
        users=len(pc.unique(summaries.column("user_id"))),
        bot_sessions=len(bots),
        bot_events=events.num_rows - human.num_rows,
        decision_points=points.num_rows,
        moments=dict(Counter(points.column("moment").to_pylist()).most_common()),
        label_rate=pc.mean(labels).as_py() if len(labels) else float("nan"),
        censored=labelled.num_rows - points.num_rows,
        oracle_attached=oracle is not None,
        rows={name: table.num_rows for name, table in tables.items()},
        seconds=seconds,
    )
    return FeatureTables(points, snapshots, users, steps, summary)


def _labelled(
    replayed: ReplayTables,
    summaries: pa.Table,
    events: pa.Table,
    configs: PipelineConfigs,
    oracle: pa.Table | None,
    data_end: float,
) -> pa.Table:
    """Every replayed decision with its key, user, label (null: censored) and oracle_p.

    Completions come from all events, bot sessions included: a completion is a fact about
    the user whichever session it happened in.
    """
    decisions = _decision_rows(replayed, summaries)
    labelled = label_points(decisions, completion_events(events), summaries, configs, data_end)
    if oracle is None:
        return labelled.append_column("oracle_p", pa.nulls(labelled.num_rows, pa.float64()))
    return attach_oracle(labelled, _oracle_seconds(oracle))


@dataclass(frozen=True)
class Detected:
    """Unlabelled decision rows of the human sessions, with what labelling needs."""

    decisions: pa.Table  # _decision_rows: key, user, session, step, moment, request_ts, ...
    summaries: pa.Table  # per-session summaries (aggregates.SUMMARY_SCHEMA)
    human_events: int
    bot_sessions: int
    data_end: float  # epoch s of the last event (bots included, as in build_tables)


def detect_decisions(
    events: pa.Table, bot_scores: pa.Table, configs: PipelineConfigs, *, workers: int = 1
) -> Detected:
    """Replay the human sessions into decision rows, unlabelled (what `intent data profile`
    labels under several label kinds); the same steps as `build_tables`."""
    _check_events(events)
    bots = _bot_sessions(events, bot_scores)
    human = events.filter(pc.invert(pc.is_in(events.column("session_id"), value_set=bots)))
    if human.num_rows == 0:
        raise BuildError(f"all {events.num_rows} events belong to sessions flagged as bots")
    replayed = replay_events(human, configs.signals, workers=workers)
    summaries = session_summaries(
        human, replayed.visits, configs.funnel, configs.events.session_gap_minutes * 60
    )
    return Detected(
        decisions=_decision_rows(replayed, summaries),
        summaries=summaries,
        human_events=human.num_rows,
        bot_sessions=len(bots),
        data_end=pc.max(events.column("ts")).value / 1e6,
    )


def label_points(
    decisions: pa.Table,
    completions: pa.Table,
    summaries: pa.Table,
    configs: PipelineConfigs,
    data_end: float,
) -> pa.Table:
    """Label decision rows with the configured label kind (null label = censored).

    `completions` are `completion_events` of all events, `summaries` the human sessions'
    summaries (their `last_event_at` ends a session); both engines call this.
    """
    if configs.signals.label_kind == LabelKind.SESSION_END:
        return label_session_end(
            decisions,
            completions,
            summaries,
            session_gap_s=configs.events.session_gap_minutes * 60,
            data_end=data_end,
        )
    return label_decisions(
        decisions,
        completions,
        horizon_s=configs.signals.label_horizon_minutes * 60,
        data_end=data_end,
    )


def _lap(seconds: dict[str, float], name: str, since: float) -> float:
    now = time.perf_counter()
    seconds[name] = now - since
    return now


def _check_events(events: pa.Table) -> None:
    if events.num_rows == 0:
        raise BuildError("no events to build features from; run `intent validate` first")
    for column in ("session_id", "ts", "type", "event_id"):
        nulls = events.column(column).null_count
        if nulls:
            raise BuildError(
                f"{nulls} events have no {column}; only validated events can be replayed"
            )


def _bot_sessions(events: pa.Table, bot_scores: pa.Table) -> pa.Array:
    """Session ids flagged as bots; every session of `events` must have a score."""
    missing_cols = {"session_id", "is_bot"} - set(bot_scores.column_names)
    if missing_cols:
        raise BuildError(f"bot scores lack columns: {', '.join(sorted(missing_cols))}")
    sessions = pc.unique(events.column("session_id"))
    scored = pc.is_in(sessions, value_set=bot_scores.column("session_id"))
    unscored = len(sessions) - pc.sum(scored).as_py()
    if unscored:
        raise BuildError(
            f"{unscored} of {len(sessions)} sessions have no bot score; "
            "run `intent validate` (it scores every session it stores)"
        )
    flagged = bot_scores.filter(pc.fill_null(bot_scores.column("is_bot"), False))
    return pc.unique(flagged.column("session_id"))


def _decision_rows(replayed: ReplayTables, summaries: pa.Table) -> pa.Table:
    """Replay decisions with their user, device, channel, stable key and timestamp."""
    decisions = replayed.decisions
    request_us = _epoch_us(decisions.column("request_ts"))
    table = run_sql(
        """
            SELECT
                left(md5(concat_ws('|', d.session_id, d.moment, d.episode, d.request_us)), 20)
                    AS decision_key,
                s.user_id, d.session_id, d.step, d.moment, d.episode, d.request_us,
                d.request_ts, s.device, s.channel
            FROM decisions d JOIN summaries s USING (session_id)
            ORDER BY d.request_us, d.session_id, d.moment, d.episode
            """,
        decisions=decisions.append_column("request_us", request_us),
        summaries=summaries.select(["session_id", "user_id", "device", "channel"]),
    )
    if table.num_rows != decisions.num_rows:
        raise RuntimeError("decision points lost their session summary (a replay bug)")
    i = table.column_names.index("request_us")
    return table.set_column(
        i, pa.field("event_timestamp", TS_TYPE, False), table.column(i).cast(TS_TYPE)
    )


def _epoch_us(seconds: pa.ChunkedArray | pa.Array) -> pa.Array:
    """Epoch seconds (float) -> whole microseconds, the resolution of every timestamp."""
    values = seconds.to_numpy() if isinstance(seconds, pa.ChunkedArray) else seconds
    return pa.array(np.rint(np.asarray(values, dtype=np.float64) * 1e6).astype(np.int64))


def _snapshot_rows(snapshots: pa.Table) -> pa.Table:
    ts = _epoch_us(snapshots.column("ts")).cast(TS_TYPE)
    table = snapshots.set_column(1, pa.field("event_timestamp", TS_TYPE, False), ts)
    return table.cast(SESSION_SNAPSHOTS_SCHEMA)


def _oracle_seconds(oracle: pa.Table) -> pa.Table:
    """The oracle with `ts_from` as epoch seconds, whatever time type it was written with."""
    missing = {"session_id", "step", "ts_from", "p_abandon"} - set(oracle.column_names)
    if missing:
        raise BuildError(f"oracle table lacks columns: {', '.join(sorted(missing))}")
    ts = oracle.column("ts_from")
    if pa.types.is_timestamp(ts.type):
        seconds = pc.divide(pc.cast(ts.cast(pa.timestamp("us", tz="UTC")), pa.int64()), 1e6)
    elif pa.types.is_integer(ts.type) or pa.types.is_floating(ts.type):
        seconds = ts.cast(pa.float64())
    else:
        raise BuildError(f"oracle ts_from must be a timestamp or epoch seconds, got {ts.type}")
    return oracle.set_column(oracle.column_names.index("ts_from"), "ts_from", seconds)


def _check_unique(table: pa.Table, keys: list[str], name: str) -> None:
    counts = table.group_by(keys).aggregate([([], "count_all")])
    if counts.num_rows != table.num_rows:
        raise RuntimeError(f"{name}: {table.num_rows - counts.num_rows} rows repeat {keys}")


# --- I/O edge ------------------------------------------------------------------------------


def oracle_path(layout: Layout) -> Path:
    """Where the simulator writes its true abandonment probabilities."""
    return layout.oracle / ORACLE_FILE


def table_paths(layout: Layout) -> dict[str, Path]:
    """The four output files of a build."""
    return {name: layout.features / f"{name}.parquet" for name in TABLES}


def build_features(
    layout: Layout,
    *,
    workers: int = 1,
    progress: Callable[[int], None] | None = None,
    on_loaded: Callable[[int], None] | None = None,
) -> BuildSummary:
    """Read the event store (and the oracle when present), build, write the four tables.

    `on_loaded` gets the number of events to replay once they are read (for a progress bar).
    Files are replaced atomically, so Feast never reads half a table.
    """
    from features.ingest.event_store import read_bot_scores, read_events
    from features.pipeline.readiness import UnusableData, label_refusal, write_facts

    configs = PipelineConfigs.load(layout)
    events = read_events(layout)
    bots = read_bot_scores(layout)
    if on_loaded is not None:
        on_loaded(events.num_rows)
    path = oracle_path(layout)
    oracle = pq.read_table(path) if path.exists() else None
    tables = build_tables(events, bots, configs, oracle=oracle, workers=workers, progress=progress)
    facts = label_facts(tables, events, configs)
    refusal = label_refusal(facts, _max_censored_share(layout))
    if refusal is not None:
        raise UnusableData(refusal)
    write_facts(layout, facts)
    for name, out in table_paths(layout).items():
        _atomic_write(tables.as_dict()[name], out)
    return tables.summary


def label_facts(tables: FeatureTables, events: pa.Table, configs: PipelineConfigs) -> LabelFacts:
    """The facts readiness checks need about this build's labels (`readiness.LabelFacts`)."""
    from features.pipeline.readiness import LabelFacts

    summary = tables.summary
    labels = tables.decision_points.column("label")
    ts = events.column("ts")
    first, last = pc.min(ts).as_py(), pc.max(ts).as_py()
    return LabelFacts(
        label_kind=str(configs.signals.label_kind),
        horizon_minutes=configs.signals.label_horizon_minutes,
        decision_points=summary.decision_points,
        censored=summary.censored,
        positives=int(pc.sum(labels).as_py() or 0),
        events=summary.events,
        days=(last.date() - first.date()).days + 1 if first is not None else 0,
    )


def _max_censored_share(layout: Layout) -> float:
    from features.pipeline.profile_config import ProfileConfig

    return load_config(ProfileConfig, layout=layout).label.max_censored_share


def _atomic_write(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def expected_schemas(configs: PipelineConfigs) -> dict[str, pa.Schema]:
    """The schema every output table has (the contract other areas read)."""
    return {
        "decision_points": DECISION_POINTS_SCHEMA,
        "session_snapshots": SESSION_SNAPSHOTS_SCHEMA,
        "user_stats": user_stats_schema(configs.aggregates),
        "step_stats": STEP_STATS_SCHEMA,
    }
