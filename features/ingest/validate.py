"""Batch validation of events: canonical types, row rules, quarantine, dedupe, sessions.

The row rules are those of the single-event model `features.events.Event` (the API's path),
applied column-wise with Arrow so large imports validate in seconds; a property test keeps
both verdicts equal. Each rejected row goes to the quarantine with its original values as
text and one reason code (the first rule it breaks); duplicates by `event_id` keep the first
row; events without a session get one from `features.ingest.sessionize`. Nothing is dropped
without being counted.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from features.config import EventsConfig
from features.events import (
    COLUMN_NAMES,
    COLUMNS,
    DEPTH_RANGE,
    DEPTH_TYPES,
    EVENT_SCHEMA,
    TS_TYPE,
    EventType,
)
from features.ingest.csv_text import CsvHeaderError, CsvText, read_csv_text
from features.ingest.sessionize import derive_sessions


class Reason(StrEnum):
    """Why a row was quarantined (the `reason` column)."""

    MISSING_EVENT_ID = "missing_event_id"
    MISSING_ACTOR_ID = "missing_actor_id"
    MISSING_TS = "missing_ts"
    TS_UNPARSEABLE = "ts_unparseable"
    TS_NO_TIMEZONE = "ts_no_timezone"
    MISSING_TYPE = "missing_type"
    UNKNOWN_TYPE = "unknown_type"
    UNKNOWN_STEP = "unknown_step"
    VALUE_UNPARSEABLE = "value_unparseable"
    VALUE_NOT_FINITE = "value_not_finite"
    DEPTH_OUT_OF_RANGE = "depth_out_of_range"
    NEGATIVE_VALUE = "negative_value"
    TS_FUTURE = "ts_future"
    DUPLICATE_CONFLICT = "duplicate_conflict"
    # importers: the source record could not be mapped onto an event at all
    MALFORMED_JSON = "malformed_json"
    MALFORMED_ROW = "malformed_row"
    UNSUPPORTED_CALL = "unsupported_call"
    UNKNOWN_EVENT_NAME = "unknown_event_name"
    UNDECODABLE_ROW = "undecodable_row"


REASON_DOC: dict[Reason, str] = {
    Reason.MISSING_EVENT_ID: "event_id is missing or blank",
    Reason.MISSING_ACTOR_ID: "neither user_id nor anonymous_id",
    Reason.MISSING_TS: "ts is missing",
    Reason.TS_UNPARSEABLE: "ts is not an ISO-8601 timestamp",
    Reason.TS_NO_TIMEZONE: "ts has no time zone offset",
    Reason.MISSING_TYPE: "type is missing",
    Reason.UNKNOWN_TYPE: "type is not a known event type",
    Reason.UNKNOWN_STEP: "step is not in funnel.yaml; map it in the mapping's `steps`",
    Reason.VALUE_UNPARSEABLE: "value is not a number",
    Reason.VALUE_NOT_FINITE: "value is NaN or infinite",
    Reason.DEPTH_OUT_OF_RANGE: f"scroll depth outside {DEPTH_RANGE[0]:g}..{DEPTH_RANGE[1]:g}",
    Reason.NEGATIVE_VALUE: "negative duration or count",
    Reason.TS_FUTURE: "ts later than now + future_tolerance_s",
    Reason.DUPLICATE_CONFLICT: "event_id seen before with different content",
    Reason.MALFORMED_JSON: "line is not a JSON object",
    Reason.MALFORMED_ROW: "row has the wrong number of fields",
    Reason.UNSUPPORTED_CALL: "call type not mapped (e.g. group, alias)",
    Reason.UNKNOWN_EVENT_NAME: "event name not in the mapping",
    Reason.UNDECODABLE_ROW: "row is not UTF-8 text (re-export the file as UTF-8)",
}

# Quarantined rows: every canonical column as the original text, then why and where from.
# `row` is the 0-based position of the record in its input; `record` the original record
# as text when it is not a row of canonical columns (a JSON line, a CSV row of a mapping);
# `line` its 1-based line in the source file when the source has lines (JSON lines, CSV).
QUARANTINE_SCHEMA: pa.Schema = pa.schema(
    [pa.field(name, pa.string()) for name in COLUMN_NAMES]
    + [
        pa.field("reason", pa.string(), nullable=False),
        pa.field("source", pa.string()),
        pa.field("row", pa.int64()),
        pa.field("record", pa.string()),
        pa.field("line", pa.int64()),
    ]
)

# What pydantic's `str_strip_whitespace` strips (Unicode White_Space), so both paths agree.
_WHITE_SPACE = (
    "\t\n\v\f\r \x85\xa0\u1680"
    + "".join(chr(c) for c in range(0x2000, 0x200B))
    + "\u2028\u2029\u202f\u205f\u3000"
)
# The timestamp contract: ISO-8601 date and time with a zone (Z or +hh:mm).
_ISO_DATE = r"^\d{4}-\d{2}-\d{2}"
_ISO_TIME = r"[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?"
_ZONED = _ISO_DATE + _ISO_TIME + r"(?:Z|[+-]\d{2}:?\d{2})$"
_NAIVE = _ISO_DATE + f"(?:{_ISO_TIME})?$"
_NUMBER = r"(?i)^[+-]?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?$|^[+-]?(?:nan|inf|infinity)$"

# Stored and returned events are sorted by these keys (what replay and features expect).
SORT_KEYS = [("session_id", "ascending"), ("ts", "ascending"), ("event_id", "ascending")]
# Columns that make up an event's content for duplicate detection (session_id is grouping).
CONTENT_COLUMNS: tuple[str, ...] = tuple(n for n in COLUMN_NAMES if n != "session_id")

_TEXT_COLUMNS = tuple(c.name for c in COLUMNS if c.arrow == pa.string() and c.name != "type")
_REQUIRED = tuple(c.name for c in COLUMNS if c.required)
_ACTOR_COLUMNS = ("user_id", "anonymous_id")
_EVENT_TYPES = pa.array([t.value for t in EventType])


class InputError(ValueError):
    """An input cannot be read as events at all (format, columns, column types)."""


@dataclass(frozen=True)
class Coerced:
    """Canonically typed events plus, per row, the first reason it failed typing (or null)."""

    table: pa.Table
    reason: pa.Array


@dataclass(frozen=True)
class ValidationSummary:
    """Counts of one run: `rows_in == valid + duplicates_removed + already_stored + quarantined`."""

    rows_in: int
    valid: int
    duplicates_removed: int
    already_stored: int = 0
    quarantined: dict[str, int] = field(default_factory=dict)
    sessions_derived: int = 0

    @property
    def quarantined_total(self) -> int:
        return sum(self.quarantined.values())


@dataclass(frozen=True)
class ValidationResult:
    """Valid canonical events (sorted by session, ts, id), the quarantine and the counts."""

    valid: pa.Table
    quarantine: pa.Table
    summary: ValidationSummary


# --- reading inputs ------------------------------------------------------------------------


@dataclass(frozen=True)
class InputFile:
    """One events file: its rows, and the CSV rows set aside before validation (quarantine
    rows with the original text, line and reason: not UTF-8, wrong number of fields)."""

    table: pa.Table
    rejected: pa.Table
    lines: pa.Array  # 1-based line of each row in the file (null for parquet)


def read_input(path: Path) -> InputFile:
    """Read one events file (parquet, or CSV read as text) and check its columns.

    Raises InputError naming the file and the problem (format, missing or unknown columns);
    a CSV row that cannot be read is set aside on its own, never the whole file.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    suffix = path.suffix.lower()
    rejected = QUARANTINE_SCHEMA.empty_table()
    lines: pa.Array | None = None
    try:
        if suffix == ".parquet":
            table = pq.read_table(path)
        elif suffix == ".csv":
            text = read_csv_text(path, ",", [""], quoted_can_be_null=False)
            table, rejected = text.table, _rejected_rows(text, path.name)
            lines = pa.array(text.lines, pa.int64())
        else:
            raise InputError(f"{path}: unsupported format {suffix!r} (expected .parquet or .csv)")
    except CsvHeaderError as exc:
        raise InputError(f"{path}: {exc}") from exc
    except (pa.ArrowInvalid, OSError, csv.Error) as exc:
        raise InputError(f"{path}: not a readable {suffix[1:]} file: {exc}") from exc
    try:
        check_columns(table.column_names)
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from exc
    return InputFile(table, rejected, lines or pa.nulls(table.num_rows, pa.int64()))


def _rejected_rows(text: CsvText, source: str) -> pa.Table:
    found = [(line, t, Reason.UNDECODABLE_ROW) for line, t in text.undecodable]
    found += [(line, t, Reason.MALFORMED_ROW) for line, t in text.malformed]
    found.sort()
    n = len(found)
    empty = pa.table({name: pa.nulls(n, pa.string()) for name in COLUMN_NAMES})
    lines = np.array([line for line, _, _ in found], dtype=np.int64)
    return quarantine_rows(
        empty,
        np.arange(n),
        pa.array([str(why) for _, _, why in found], pa.string()),
        pa.array([source] * n, pa.string()),
        records=pa.array([t for _, t, _ in found], pa.string()),
        positions=lines - 2,
        lines=lines,
    )


def check_columns(names: Sequence[str]) -> None:
    """Raise InputError when required columns are missing or unknown ones are present."""
    missing = [name for name in _REQUIRED if name not in names]
    if not any(name in names for name in _ACTOR_COLUMNS):
        missing.append("user_id or anonymous_id")
    unknown = sorted(set(names) - set(COLUMN_NAMES))
    problems = []
    if missing:
        problems.append(f"missing required columns: {', '.join(missing)}")
    if unknown:
        problems.append(f"unknown columns: {', '.join(unknown)} (map them with an importer)")
    if problems:
        raise InputError("; ".join(problems))


def combine_inputs(tables: Sequence[pa.Table]) -> pa.Table:
    """Concatenate inputs whose column types differ (typed parquet + text CSV) into one table.

    A column typed differently in two inputs becomes text in all of them; the validator
    parses text, so no value is lost or reinterpreted.
    """
    if not tables:
        return EVENT_SCHEMA.empty_table()
    names = [n for n in COLUMN_NAMES if any(n in t.column_names for t in tables)]
    types: dict[str, pa.DataType] = {}
    for name in names:
        seen = {t.schema.field(name).type for t in tables if name in t.column_names}
        seen.discard(pa.null())
        types[name] = seen.pop() if len(seen) == 1 else pa.string()
    out = []
    for table in tables:
        arrays = []
        for name in names:
            if name in table.column_names:
                arrays.append(_cast(table.column(name), types[name], name))
            else:
                arrays.append(pa.nulls(table.num_rows, types[name]))
        out.append(pa.Table.from_arrays(arrays, names=names))
    return pa.concat_tables(out)


# --- typing --------------------------------------------------------------------------------


def coerce_events(table: pa.Table) -> Coerced:
    """Cast any table of canonical columns to EVENT_SCHEMA, recording per-row failures.

    Text is stripped of surrounding whitespace and blank text is null (as in `Event`);
    `ts` must be a time-zone-aware timestamp column or ISO-8601 text with a zone; `value`
    numeric or numeric text. Reasons: missing event id / actor / ts, unparseable or naive
    ts, unparseable value. Raises InputError for columns that cannot be read at all.
    """
    check_columns(table.column_names)
    n = table.num_rows
    arrays: dict[str, pa.Array] = {}
    for name in _TEXT_COLUMNS:
        arrays[name] = _clean_text(_column(table, name, pa.string()))
    arrays["type"] = _column(table, "type", pa.string())
    arrays["ts"], ts_reason = _parse_ts(table.column("ts").combine_chunks())
    arrays["value"], value_reason = _parse_value(_column(table, "value", None))
    # optional flag: booleans, or text true / false / 1 / 0 (anything else: InputError)
    arrays["assistive"] = _column(table, "assistive", pa.bool_())
    reason = pa.nulls(n, pa.string())
    reason = _first(reason, pc.is_null(arrays["event_id"]), Reason.MISSING_EVENT_ID)
    no_actor = pc.and_(pc.is_null(arrays["user_id"]), pc.is_null(arrays["anonymous_id"]))
    reason = _first(reason, no_actor, Reason.MISSING_ACTOR_ID)
    reason = pc.coalesce(reason, ts_reason)
    reason = pc.coalesce(reason, value_reason)
    typed = pa.Table.from_arrays([arrays[c] for c in COLUMN_NAMES], schema=_loose_schema())
    return Coerced(table=typed, reason=reason)


def _loose_schema() -> pa.Schema:
    """EVENT_SCHEMA with every field nullable (rows failing typing still hold nulls)."""
    return pa.schema([f.with_nullable(True) for f in EVENT_SCHEMA])


def _column(table: pa.Table, name: str, target: pa.DataType | None) -> pa.Array:
    if name not in table.column_names:
        return pa.nulls(table.num_rows, target or pa.float64())
    arr = table.column(name).combine_chunks()
    return _cast(arr, target, name) if target is not None else arr


def _cast(arr: pa.Array | pa.ChunkedArray, target: pa.DataType, name: str) -> pa.Array:
    if arr.type == target:
        return arr
    try:
        return pc.cast(arr, target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise InputError(f"column {name}: type {arr.type} cannot be read as {target}") from exc


def _clean_text(arr: pa.Array) -> pa.Array:
    stripped = pc.utf8_trim(arr, characters=_WHITE_SPACE)
    return pc.if_else(pc.equal(stripped, ""), pa.scalar(None, pa.string()), stripped)


def _parse_ts(arr: pa.Array) -> tuple[pa.Array, pa.Array]:
    """(timestamps in UTC, reason or null) from an aware timestamp column or ISO-8601 text."""
    n = len(arr)
    t = arr.type
    if pa.types.is_null(t):
        return pa.nulls(n, TS_TYPE), pa.array([Reason.MISSING_TS.value] * n, pa.string())
    if pa.types.is_timestamp(t):
        if t.tz is None:
            raise InputError(
                "column ts: timestamps without a time zone; store UTC (timestamp[us, UTC])"
            )
        ts = pc.cast(arr, TS_TYPE, safe=False)  # sub-microsecond digits are truncated
        return ts, _where(pc.is_null(ts), Reason.MISSING_TS)
    if not (pa.types.is_string(t) or pa.types.is_large_string(t)):
        raise InputError(f"column ts: type {t}; expected an aware timestamp or ISO-8601 text")
    text = pc.cast(arr, pa.string())
    zoned = pc.fill_null(pc.match_substring_regex(text, _ZONED), False)
    naive = pc.fill_null(pc.match_substring_regex(text, _NAIVE), False)
    ts = cast_or_null(pc.if_else(zoned, text, pa.scalar(None, pa.string())), TS_TYPE)
    reason = _where(pc.is_null(text), Reason.MISSING_TS)
    reason = _first(reason, naive, Reason.TS_NO_TIMEZONE)
    reason = _first(reason, pc.is_null(ts), Reason.TS_UNPARSEABLE)
    return ts, reason


def _parse_value(arr: pa.Array) -> tuple[pa.Array, pa.Array]:
    t = arr.type
    n = len(arr)
    if pa.types.is_null(t):
        return pa.nulls(n, pa.float64()), pa.nulls(n, pa.string())
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        text = _clean_text(pc.cast(arr, pa.string()))
        shaped = pc.fill_null(pc.match_substring_regex(text, _NUMBER), False)
        value = cast_or_null(pc.if_else(shaped, text, pa.scalar(None, pa.string())), pa.float64())
        bad = pc.and_(pc.is_valid(text), pc.is_null(value))
        return value, _where(bad, Reason.VALUE_UNPARSEABLE)
    return _cast(arr, pa.float64(), "value"), pa.nulls(n, pa.string())


def cast_or_null(arr: pa.Array, target: pa.DataType) -> pa.Array:
    """Cast element-wise: values Arrow refuses become null (bisects, so cheap when few fail)."""
    try:
        return pc.cast(arr, target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        if len(arr) <= 1:
            return pa.nulls(len(arr), target)
        mid = len(arr) // 2
        return pa.concat_arrays([cast_or_null(arr[:mid], target), cast_or_null(arr[mid:], target)])


def _where(mask: pa.Array, reason: Reason) -> pa.Array:
    return pc.if_else(pc.fill_null(mask, False), reason.value, pa.scalar(None, pa.string()))


def _first(current: pa.Array, mask: pa.Array, reason: Reason) -> pa.Array:
    """Set `reason` where the mask holds and no earlier rule has fired."""
    return pc.coalesce(current, _where(mask, reason))


# --- semantic rules ------------------------------------------------------------------------


def row_reasons(
    events: pa.Table,
    typing_reason: pa.Array,
    cfg: EventsConfig,
    now: datetime,
    steps: Collection[str] | None = None,
) -> pa.Array:
    """First failing rule per row (null = valid), after the typing reasons: the content
    rules, then the clock (`ts` later than now + `future_tolerance_s`)."""
    reason = content_reasons(events, typing_reason, steps)
    limit = _as_utc(now) + timedelta(seconds=cfg.future_tolerance_s)
    future = pc.greater(events["ts"], pa.scalar(limit, TS_TYPE))
    return _first(reason, future, Reason.TS_FUTURE)


def content_reasons(
    events: pa.Table, typing_reason: pa.Array, steps: Collection[str] | None = None
) -> pa.Array:
    """The rules that need no clock, after the typing reasons (importers apply them too,
    so what they quarantine keeps its original record and line).

    `steps` (the funnel's) quarantines events on other steps as `unknown_step`, the rule of
    `features.events.unknown_step`; None skips that check.
    """
    etype = events["type"]
    value = events["value"]
    reason = typing_reason
    reason = _first(reason, pc.is_null(etype), Reason.MISSING_TYPE)
    reason = _first(reason, pc.invert(pc.is_in(etype, value_set=_EVENT_TYPES)), Reason.UNKNOWN_TYPE)
    if steps is not None:
        reason = _first(reason, step_outside(events["step"], steps), Reason.UNKNOWN_STEP)
    not_finite = pc.or_(pc.is_nan(value), pc.is_inf(value))
    reason = _first(reason, not_finite, Reason.VALUE_NOT_FINITE)
    is_depth = pc.is_in(etype, value_set=pa.array([t.value for t in DEPTH_TYPES]))
    low, high = DEPTH_RANGE
    outside = pc.or_(pc.less(value, low), pc.greater(value, high))
    reason = _first(reason, pc.and_(is_depth, outside), Reason.DEPTH_OUT_OF_RANGE)
    negative = pc.and_(pc.invert(is_depth), pc.less(value, 0.0))
    return _first(reason, negative, Reason.NEGATIVE_VALUE)


def step_outside(step: pa.Array | pa.ChunkedArray, steps: Collection[str]) -> pa.Array:
    """Rows whose (cleaned) step is present and not one of `steps`."""
    known = pc.is_in(step, value_set=pa.array(sorted(steps), pa.string()))
    return pc.and_(pc.is_valid(step), pc.invert(known))


def _as_utc(now: datetime) -> datetime:
    if now.tzinfo is None:
        raise ValueError("now must be time-zone aware")
    return now.astimezone(UTC)


# --- the batch -----------------------------------------------------------------------------


def validate_events(
    table: pa.Table,
    cfg: EventsConfig,
    now: datetime,
    *,
    source: str | pa.Array = "input",
    stored: Callable[[pa.Array], pd.Series] | None = None,
    steps: Collection[str] | None = None,
    lines: pa.Array | None = None,
) -> ValidationResult:
    """Validate a batch: typed valid events, the quarantine (original values) and counts.

    `source` names where rows came from (one name, or one per row for combined inputs); it
    is written to the quarantine. Duplicates by `event_id` keep the first valid row; a later
    one with different content (session_id aside: grouping, not content) is quarantined as
    `duplicate_conflict`, an identical one is counted as removed. `stored` (called with the
    valid rows' event ids, returns event_id -> `content_hash` of those already in the
    store) extends this to earlier runs, which makes re-validation idempotent. Missing
    session ids are derived by inactivity over the whole batch, stored duplicates included,
    so a re-run derives the same ids. `steps` are the funnel's (see `row_reasons`);
    `lines` each row's 1-based line in its source file, written to the quarantine.
    """
    coerced = coerce_events(table)
    reason = row_reasons(coerced.table, coerced.reason, cfg, now, steps)
    valid_rows = np.flatnonzero(pc.is_null(reason).to_numpy(zero_copy_only=False))
    everything = len(valid_rows) == table.num_rows
    valid = coerced.table if everything else coerced.table.take(valid_rows)
    known_hashes = stored(valid["event_id"]) if stored is not None else None
    keep, conflict, known = first_occurrences(valid, known_hashes)
    reason_np = reason.to_numpy(zero_copy_only=False).astype(object)
    reason_np[valid_rows[conflict]] = Reason.DUPLICATE_CONFLICT.value
    bad_rows = np.flatnonzero(pd.notna(reason_np))
    kept = valid if keep.all() else valid.filter(pa.array(keep))
    sessions, derived = derive_sessions(kept, cfg.session_gap_minutes)
    fresh = sessions.filter(pa.array(~known[keep])) if known.any() else sessions
    out = fresh.sort_by(SORT_KEYS).cast(EVENT_SCHEMA)
    quarantine = quarantine_rows(
        table,
        bad_rows,
        pa.array(reason_np[bad_rows], pa.string()),
        _take_source(source, bad_rows),
        lines=None if lines is None else lines.take(pa.array(bad_rows, pa.int64())),
    )
    counts = pd.Series(reason_np[bad_rows], dtype=object).value_counts()
    summary = ValidationSummary(
        rows_in=table.num_rows,
        valid=out.num_rows,
        duplicates_removed=int(len(valid_rows) - keep.sum() - conflict.sum()),
        already_stored=int(known.sum()),
        quarantined={str(k): int(v) for k, v in sorted(counts.items())},
        sessions_derived=derived,
    )
    return ValidationResult(valid=out, quarantine=quarantine, summary=summary)


def content_hash(events: pa.Table) -> np.ndarray:
    """One uint64 per row over CONTENT_COLUMNS; equal rows hash equal across runs."""
    frame = events.select(list(CONTENT_COLUMNS)).to_pandas()
    frame["ts"] = frame["ts"].astype("int64")
    return pd.util.hash_pandas_object(frame, index=False).to_numpy()


def first_occurrences(
    events: pa.Table, stored: pd.Series | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boolean masks (kept, conflicting, already stored) over the rows of `events`.

    The first row of each event_id is kept, unless the store already holds that id: then
    the stored event is the first. Rows whose content differs from the first conflict; the
    rest are identical duplicates. `known` marks kept rows identical to a stored event
    (kept for sessionization, not written again). Only rows whose id repeats or is stored
    are hashed, so the common all-new, all-unique batch costs one dictionary encoding.
    """
    encoded = pc.dictionary_encode(events["event_id"]).combine_chunks()
    codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    n, n_ids = len(codes), len(encoded.dictionary)
    _, first_rows = np.unique(codes, return_index=True)
    first = np.zeros(n, dtype=bool)
    first[first_rows] = True
    repeated = np.bincount(codes, minlength=n_ids)[codes] > 1
    stored_code = np.zeros(n_ids, dtype=bool)
    reference = np.zeros(n_ids, dtype=np.uint64)  # content hash every row must match
    if stored is not None and len(stored):
        where = pd.Index(stored.index).get_indexer(encoded.dictionary.to_pandas())
        stored_code = where >= 0
        reference[stored_code] = stored.to_numpy(dtype=np.uint64)[where[stored_code]]
    in_store = stored_code[codes]
    need = np.flatnonzero(repeated | in_store)
    hashes = np.zeros(n, dtype=np.uint64)
    if len(need):
        hashes[need] = content_hash(events.take(pa.array(need, pa.int64())))
    from_batch = first & repeated & ~in_store
    reference[codes[from_batch]] = hashes[from_batch]
    same = hashes == reference[codes]
    first &= ~in_store | same  # a stored event is the first
    known = first & in_store
    conflict = ~first & ~same
    return first, conflict, known


def _take_source(source: str | pa.Array, rows: np.ndarray) -> pa.Array:
    if isinstance(source, str):
        return pa.array([source] * len(rows), pa.string())
    return pc.cast(source.take(pa.array(rows, pa.int64())), pa.string())


def quarantine_rows(
    original: pa.Table,
    rows: np.ndarray,
    reasons: pa.Array,
    sources: pa.Array,
    records: pa.Array | None = None,
    positions: np.ndarray | None = None,
    lines: np.ndarray | pa.Array | None = None,
) -> pa.Table:
    """Quarantine table for `rows` of `original`: canonical columns as their original text.

    `positions` (default: `rows`) is where each record sits in its source file, `records`
    the original record as text when it is not a row of canonical columns, `lines` its
    1-based line in the source file.
    """
    taken = original.take(pa.array(rows, pa.int64()))
    arrays = []
    for name in COLUMN_NAMES:
        if name in taken.column_names:
            arrays.append(_as_text(taken.column(name).combine_chunks()))
        else:
            arrays.append(pa.nulls(len(rows), pa.string()))
    arrays += [
        pc.cast(reasons, pa.string()),
        pc.cast(sources, pa.string()),
        pa.array(rows if positions is None else positions, pa.int64()),
        records if records is not None else pa.nulls(len(rows), pa.string()),
        pa.nulls(len(rows), pa.int64()) if lines is None else pc.cast(pa.array(lines), pa.int64()),
    ]
    return pa.Table.from_arrays(arrays, schema=QUARANTINE_SCHEMA)


def _as_text(arr: pa.Array) -> pa.Array:
    if pa.types.is_timestamp(arr.type):  # ISO-8601, readable and re-importable
        fmt = "%Y-%m-%dT%H:%M:%S%z" if arr.type.tz else "%Y-%m-%dT%H:%M:%S"
        return pc.strftime(arr, format=fmt)
    return pc.cast(arr, pa.string())


def empty_quarantine() -> pa.Table:
    """A quarantine table with no rows."""
    return QUARANTINE_SCHEMA.empty_table()
