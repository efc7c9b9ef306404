"""What every importer shares: typing mapped rows, quarantining the rest, writing raw files.

An importer turns each source record into one row of canonical columns (text, or typed
where the source is typed) plus, where the record could not be mapped, a reason. The shared
tail types the rows with the validator's own `coerce_events`, converts units, renames
steps, applies the validator's clock-free rules (`content_reasons`: same ids / timestamp /
value / funnel-step rules as `intent validate`), sends failures to the quarantine with the
original record and its line, refuses an import whose quarantined share is too high, and
writes the rest to `raw/<name>/events.parquet` for `intent validate`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from core.layout import Layout
from features.config import ImportLimits
from features.events import EVENT_SCHEMA
from features.ingest.event_store import write_quarantine
from features.ingest.importers.mapping import StepMapping
from features.ingest.importers.steps import map_steps
from features.ingest.validate import (
    QUARANTINE_SCHEMA,
    REASON_DOC,
    Reason,
    coerce_events,
    content_reasons,
    quarantine_rows,
)


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
    input (0-based, header excluded); `lines` its 1-based line in the source file (None for
    files without lines, parquet); `records(indices)` renders original records as text (only
    called for quarantined rows); `factor` multiplies `value` into the canonical unit (null
    = as is).
    """

    table: pa.Table
    reason: pa.Array
    rows: np.ndarray
    records: Callable[[np.ndarray], pa.Array]
    source: str
    lines: np.ndarray | None = None
    factor: pa.Array | None = None

    def take(self, index: np.ndarray) -> Mapped:
        """The rows at `index` (positions into this part)."""
        idx = pa.array(index, pa.int64())
        original = self.records
        return Mapped(
            table=self.table.take(idx),
            reason=pc.take(self.reason, idx),
            rows=self.rows[index],
            records=lambda sub: original(index[sub]),
            source=self.source,
            lines=None if self.lines is None else self.lines[index],
            factor=None if self.factor is None else pc.take(self.factor, idx),
        )


def finish(
    parts: list[Mapped],
    skipped: dict[str, int] | None = None,
    *,
    step_map: StepMapping | None = None,
    steps: Collection[str] | None = None,
) -> ImportResult:
    """Type every mapped part, convert units, rename steps, quarantine what fails.

    Every rule of `intent validate` but the clock and duplicates applies here, so what is
    quarantined keeps its original record and line. `steps` (the funnel's) quarantines
    events whose step, after `step_map`, is not one of them; None skips that rule.
    """
    events, quarantines = [], []
    for part in parts:
        coerced = coerce_events(part.table)
        table = _convert_units(coerced.table, part.factor)
        if step_map is not None:
            i = table.schema.get_field_index("step")
            table = table.set_column(i, table.schema.field(i), map_steps(table["step"], step_map))
        reason = pc.coalesce(part.reason, content_reasons(table, coerced.reason, steps))
        ok = pc.is_null(reason)
        events.append(table.filter(ok).cast(EVENT_SCHEMA))
        bad = np.flatnonzero(pc.invert(ok).to_numpy(zero_copy_only=False))
        quarantines.append(
            quarantine_rows(
                part.table,
                bad,
                pc.take(reason, pa.array(bad, pa.int64())),
                pa.array([part.source] * len(bad), pa.string()),
                records=part.records(bad),
                positions=part.rows[bad],
                lines=None if part.lines is None else part.lines[bad],
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


def _convert_units(table: pa.Table, factor: pa.Array | None) -> pa.Table:
    """`value * factor` where a factor is set, rounded to 9 decimals (0.29 * 100 is 29)."""
    if factor is None or factor.null_count == len(factor):
        return table
    value = table["value"].combine_chunks()
    product = pc.multiply(value, factor)
    # rounding noise only matters for ordinary magnitudes; huge, NaN and inf stay as they are
    ordinary = pc.fill_null(pc.less(pc.abs(product), 1e12), False)
    rounded = pc.round(pc.if_else(ordinary, product, 0.0), 9)
    converted = pc.if_else(ordinary, rounded, product)
    out = pc.if_else(pc.is_valid(factor), converted, value)
    i = table.schema.get_field_index("value")
    return table.set_column(i, table.schema.field(i), out)


def refusal(summary: ImportSummary, limits: ImportLimits) -> str | None:
    """Why an import is refused (more than the allowed share quarantined), or None.

    The share is of the records the mapping tried (skipped lines aside): most of a file
    failing means a wrong mapping, and importing the rest would hide it.
    """
    bad = sum(summary.quarantined.values())
    tried = summary.events + bad
    if tried == 0 or bad / tried <= limits.max_quarantined_share:
        return None
    top = sorted(summary.quarantined.items(), key=lambda kv: (-kv[1], kv[0]))
    reasons = ", ".join(
        f"{reason} {count:,} ({REASON_DOC[Reason(reason)]})"
        for reason, count in top[: limits.top_reasons]
    )
    fixes = dict.fromkeys(_FIXES.get(r, _FIX_MAPPING) for r, _ in top[: limits.top_reasons])
    return (
        f"{bad:,} of {tried:,} records quarantined ({bad / tried:.0%}, more than "
        f"imports.max_quarantined_share {limits.max_quarantined_share:.0%}); top reasons: "
        f"{reasons}. Nothing written to data/raw/. To fix: {'; '.join(fixes)}; or raise "
        "imports.max_quarantined_share in events.yaml"
    )


_FIX_MAPPING = "correct the mapping file"
_FIXES: dict[str, str] = {
    Reason.UNKNOWN_EVENT_NAME: "map the file's event names in the mapping's `track` (or "
    "`ignore_track`); `intent import segment FILE --suggest-mapping` lists them",
    Reason.UNSUPPORTED_CALL: "calls other than track / page / screen / identify carry no "
    "events; remove them from the export or accept them in the quarantine",
    Reason.UNKNOWN_STEP: "rename the file's steps in the mapping's `steps`, or use a funnel "
    "that has them (INTENT_CONFIGS=configs/examples/ecommerce:configs for shop data)",
    Reason.UNDECODABLE_ROW: "re-export the file as UTF-8",
    Reason.MALFORMED_JSON: "export one JSON object per line",
    Reason.MALFORMED_ROW: "check the mapping's csv separator",
}


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
