"""What every importer shares: typing mapped rows, quarantining the rest, writing raw files.

An importer turns each source record into one row of canonical columns (text, or typed
where the source is typed) plus, where the record could not be mapped, a reason. The shared
tail types the rows with the validator's own `coerce_events` (same ids / timestamp / value
rules as `intent validate`), sends failures to the quarantine with the original record as
text, and writes the rest to `raw/<name>/events.parquet` for `intent validate`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from features.event_store import write_quarantine
from features.events import EVENT_SCHEMA
from features.layout import Layout
from features.validate import QUARANTINE_SCHEMA, Reason, coerce_events, quarantine_rows


@dataclass(frozen=True)
class ImportSummary:
    """Counts of one import: `records_in == events + sum(quarantined) + sum(skipped)`."""

    records_in: int
    events: int
    quarantined: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)  # counted, deliberately not kept


@dataclass(frozen=True)
class ImportResult:
    """Canonical events (unvalidated beyond typing), quarantined records and the counts."""

    events: pa.Table
    quarantine: pa.Table
    summary: ImportSummary


@dataclass(frozen=True)
class Mapped:
    """One input's records as canonical columns, before typing.

    `reason` holds mapping failures (null = mapped); `rows` each record's position in the
    input (0-based, header excluded); `records(indices)` renders original records as text
    (only called for quarantined rows).
    """

    table: pa.Table
    reason: pa.Array
    rows: np.ndarray
    records: Callable[[np.ndarray], pa.Array]
    source: str


def finish(parts: list[Mapped], skipped: dict[str, int] | None = None) -> ImportResult:
    """Type every mapped part, quarantine what fails, concatenate the rest."""
    events, quarantines = [], []
    for part in parts:
        coerced = coerce_events(part.table)
        reason = pc.coalesce(part.reason, coerced.reason)
        no_type = pc.is_null(coerced.table["type"])
        reason = pc.coalesce(
            reason,
            pc.if_else(no_type, Reason.MISSING_TYPE.value, pa.scalar(None, pa.string())),
        )
        ok = pc.is_null(reason)
        events.append(coerced.table.filter(ok).cast(EVENT_SCHEMA))
        bad = np.flatnonzero(pc.invert(ok).to_numpy(zero_copy_only=False))
        quarantines.append(
            quarantine_rows(
                part.table,
                bad,
                pc.take(reason, pa.array(bad, pa.int64())),
                pa.array([part.source] * len(bad), pa.string()),
                records=part.records(bad),
                positions=part.rows[bad],
            )
        )
    table = pa.concat_tables(events) if events else EVENT_SCHEMA.empty_table()
    quarantine = pa.concat_tables(quarantines) if quarantines else QUARANTINE_SCHEMA.empty_table()
    counts = pd.Series(quarantine["reason"].to_pandas(), dtype=object).value_counts()
    skipped = dict(skipped or {})
    summary = ImportSummary(
        records_in=table.num_rows + quarantine.num_rows + sum(skipped.values()),
        events=table.num_rows,
        quarantined={str(k): int(v) for k, v in sorted(counts.items())},
        skipped=skipped,
    )
    return ImportResult(events=table, quarantine=quarantine, summary=summary)


def raw_events_path(layout: Layout, name: str) -> Path:
    """`raw/<name>/events.parquet`, where `intent validate` looks by default."""
    return layout.raw / name / "events.parquet"


def write_import(layout: Layout, name: str, result: ImportResult) -> tuple[Path, Path | None]:
    """Write the events (replacing an earlier import of the same name) and the quarantine."""
    path = raw_events_path(layout, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(result.events, tmp)
    os.replace(tmp, path)
    return path, write_quarantine(layout, result.quarantine, f"import-{name}")
