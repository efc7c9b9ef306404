"""The event store: validated events as date-partitioned parquet, quarantine, bot scores.

Layout (under `Layout.data`): `events/date=YYYY-MM-DD/part-<batch>-<i>.parquet` (hive
partitioning, dates in UTC), `quarantine/<prefix>-<digest>.parquet`, and
`sessions/bot_scores.parquet`. File names are content digests, so writing the same batch
twice leaves the same files: together with deduplication by `event_id` against what is
stored, re-running `intent validate` on the same input changes nothing.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from functools import partial
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from core.layout import Layout
from core.settings import load_config
from features.config import EventsConfig, FunnelConfig, SignalsConfig
from features.events import EVENT_SCHEMA, TS_TYPE
from features.ingest.bots import BOT_SCORES_SCHEMA, score_sessions
from features.ingest.validate import (
    CONTENT_COLUMNS,
    QUARANTINE_SCHEMA,
    SORT_KEYS,
    ValidationResult,
    content_hash,
    validate_events,
)

_PARTITIONING = ds.partitioning(pa.schema([("date", pa.string())]), flavor="hive")
_STORED_SCHEMA = EVENT_SCHEMA.append(pa.field("date", pa.string()))


@dataclass(frozen=True)
class IngestReport:
    """What one ingestion did to the store."""

    result: ValidationResult
    written: int
    bot_sessions_scored: int
    bot_sessions_flagged: int
    quarantine_file: Path | None


def bot_scores_path(layout: Layout) -> Path:
    """`sessions/bot_scores.parquet`: one row per stored session."""
    return layout.sessions / "bot_scores.parquet"


# --- reading -------------------------------------------------------------------------------


def _dataset(layout: Layout) -> ds.Dataset | None:
    if not layout.events.is_dir():
        return None
    dataset = ds.dataset(
        layout.events, format="parquet", partitioning=_PARTITIONING, schema=_STORED_SCHEMA
    )
    return dataset if dataset.files else None


def read_events(
    layout: Layout,
    start: datetime | date | None = None,
    end: datetime | date | None = None,
    columns: Sequence[str] | None = None,
) -> pa.Table:
    """Stored events with `start <= ts < end` (dates mean midnight UTC), sorted by
    (session_id, ts, event_id); `columns` selects canonical columns (default: all)."""
    wanted = list(columns) if columns is not None else list(EVENT_SCHEMA.names)
    unknown = sorted(set(wanted) - set(EVENT_SCHEMA.names))
    if unknown:
        raise ValueError(f"unknown event columns: {', '.join(unknown)}")
    return _read(layout, _time_filter(start, end), wanted)


def _read(layout: Layout, expr: ds.Expression | None, wanted: list[str]) -> pa.Table:
    dataset = _dataset(layout)
    schema = pa.schema([EVENT_SCHEMA.field(n) for n in wanted])
    if dataset is None:
        return schema.empty_table()
    keys = [k for k, _ in SORT_KEYS]
    read = list(dict.fromkeys([*wanted, *keys]))
    table = dataset.to_table(columns=read, filter=expr)
    return table.sort_by(SORT_KEYS).select(wanted).cast(schema)


def _time_filter(start: datetime | date | None, end: datetime | date | None) -> ds.Expression:
    expr = ds.scalar(True)
    if start is not None:
        lo = _instant(start)
        expr &= (ds.field("ts") >= pa.scalar(lo, TS_TYPE)) & (
            ds.field("date") >= lo.date().isoformat()
        )
    if end is not None:
        hi = _instant(end)
        expr &= (ds.field("ts") < pa.scalar(hi, TS_TYPE)) & (
            ds.field("date") <= hi.date().isoformat()
        )
    return expr


def _instant(value: datetime | date) -> datetime:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("start / end must be time-zone aware datetimes (or dates)")
        return value.astimezone(UTC)
    return datetime.combine(value, time(), tzinfo=UTC)


def read_session_events(layout: Layout, session_ids: Iterable[str]) -> pa.Table:
    """Every stored event of the given sessions, sorted."""
    ids = pa.array(sorted(set(session_ids)), pa.string())
    return _read(layout, ds.field("session_id").isin(ids), list(EVENT_SCHEMA.names))


def stored_hashes(layout: Layout, event_ids: pa.Array | pa.ChunkedArray) -> pd.Series:
    """event_id -> `content_hash` of the stored events among `event_ids` (for dedupe)."""
    dataset = _dataset(layout)
    ids = pc.unique(pc.drop_null(event_ids))
    if dataset is None or len(ids) == 0:
        return pd.Series(dtype="uint64")
    stored = dataset.to_table(
        columns=list(CONTENT_COLUMNS), filter=ds.field("event_id").isin(ids)
    ).cast(pa.schema([EVENT_SCHEMA.field(n) for n in CONTENT_COLUMNS]))
    hashes = pd.Series(content_hash(stored), index=stored["event_id"].to_pandas())
    return hashes[~hashes.index.duplicated()]


def read_bot_scores(layout: Layout) -> pa.Table:
    """`session_id, bot_score, is_bot` of every scored session (empty before any run)."""
    path = bot_scores_path(layout)
    if not path.exists():
        return BOT_SCORES_SCHEMA.empty_table()
    return pq.read_table(path).cast(BOT_SCORES_SCHEMA)


def read_quarantine(layout: Layout) -> pa.Table:
    """Every quarantined row written so far (validation and importers)."""
    files = sorted(layout.quarantine.glob("*.parquet")) if layout.quarantine.is_dir() else []
    if not files:
        return QUARANTINE_SCHEMA.empty_table()
    return pa.concat_tables(_quarantine_file(f) for f in files)


def _quarantine_file(path: Path) -> pa.Table:
    """One quarantine file; files written before a column existed get it as nulls."""
    table = pq.read_table(path)
    for f in QUARANTINE_SCHEMA:
        if f.name not in table.column_names:
            table = table.append_column(f, pa.nulls(table.num_rows, f.type))
    return table.select(QUARANTINE_SCHEMA.names).cast(QUARANTINE_SCHEMA)


# --- writing -------------------------------------------------------------------------------


def write_events(layout: Layout, events: pa.Table) -> int:
    """Append canonical events (already deduplicated against the store) by UTC date."""
    if events.num_rows == 0:
        return 0
    events = events.cast(EVENT_SCHEMA).sort_by(SORT_KEYS)
    digest = _digest(pc.unique(events["event_id"]).sort().to_pylist())
    dated = events.append_column("date", pc.strftime(events["ts"], format="%Y-%m-%d"))
    ds.write_dataset(
        dated,
        layout.events,
        format="parquet",
        partitioning=_PARTITIONING,
        basename_template=f"part-{digest}-{{i}}.parquet",
        existing_data_behavior="overwrite_or_ignore",
        preserve_order=True,
    )
    return events.num_rows


def write_quarantine(layout: Layout, rows: pa.Table, prefix: str) -> Path | None:
    """Write quarantined rows to `quarantine/<prefix>-<digest>.parquet` (None when empty).

    The name is a digest of the content: quarantining the same rows twice writes one file.
    """
    if rows.num_rows == 0:
        return None
    rows = rows.cast(QUARANTINE_SCHEMA)
    digest = _digest(pd.util.hash_pandas_object(rows.to_pandas(), index=False).tolist())
    path = layout.quarantine / f"{prefix}-{digest}.parquet"
    _atomic_write(rows, path)
    return path


def write_bot_scores(layout: Layout, scores: pa.Table) -> None:
    """Upsert scores by session_id (a rescored session replaces its old row)."""
    old = read_bot_scores(layout)
    if old.num_rows:
        keep = pc.invert(pc.is_in(old["session_id"], value_set=scores["session_id"]))
        scores = pa.concat_tables([old.filter(keep), scores.cast(BOT_SCORES_SCHEMA)])
    _atomic_write(scores.sort_by("session_id"), bot_scores_path(layout))


def _atomic_write(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")  # dot files are invisible to dataset readers
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def _digest(values: Iterable[object]) -> str:
    """Short content digest of a sequence of values (file names of written batches)."""
    return hashlib.sha256("\x1f".join(map(str, values)).encode()).hexdigest()[:16]


# --- one ingestion -------------------------------------------------------------------------


# Stages of `ingest`, in order (for progress reporting).
STAGES: tuple[str, ...] = ("validating", "writing events", "writing quarantine", "scoring bots")


def ingest(
    layout: Layout,
    table: pa.Table,
    cfg: EventsConfig,
    now: datetime,
    *,
    source: str | pa.Array = "input",
    on_stage: Callable[[str], None] | None = None,
    steps: Collection[str] | None = None,
    lines: pa.Array | None = None,
) -> IngestReport:
    """Validate a batch against the store, write new events and the quarantine, rescore bots.

    Only sessions that received new events are rescored (from all their stored events),
    so a re-run on the same input writes nothing and leaves every file as it was.
    `on_stage` is called with each name of STAGES as it starts. Events on steps outside
    `steps` are quarantined (default: the layout's funnel.yaml, so no caller can forget it);
    `lines` (each row's line in its source file) goes to the quarantine.
    """
    start = on_stage or (lambda _stage: None)
    if steps is None:
        steps = load_config(FunnelConfig, layout=layout).steps
    start(STAGES[0])
    result = validate_events(
        table,
        cfg,
        now,
        source=source,
        stored=partial(stored_hashes, layout),
        steps=steps,
        lines=lines,
    )
    start(STAGES[1])
    written = write_events(layout, result.valid)
    start(STAGES[2])
    quarantine_file = write_quarantine(layout, result.quarantine, "validate")
    start(STAGES[3])
    scored = flagged = 0
    if written:
        touched = pc.unique(result.valid["session_id"]).to_pylist()
        signals = load_config(SignalsConfig, layout=layout)  # assistive sessions are spared
        scores = score_sessions(read_session_events(layout, touched), cfg.bots, signals)
        write_bot_scores(layout, scores)
        scored = scores.num_rows
        flagged = int(pc.sum(scores["is_bot"]).as_py() or 0)
    return IngestReport(
        result=result,
        written=written,
        bot_sessions_scored=scored,
        bot_sessions_flagged=flagged,
        quarantine_file=quarantine_file,
    )
