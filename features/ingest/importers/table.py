"""CSV / parquet tables -> canonical events through a column mapping (`kind: table`).

Each input file is matched to one spec of the mapping by its name; every canonical column
comes from a source column, a constant, a template over columns, or (for `ts`) a date plus
an offset in milliseconds or an epoch number. CSV is read as text (typing is the validator's
job); rows with the wrong number of fields, rows that are not UTF-8, unknown event names
and untypeable values go to the quarantine one by one with the original row and its line;
rows outside `only_sessions_of` and blank lines are counted as skipped.
"""

from __future__ import annotations

import csv
import json
import string
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from core.settings import ConfigError
from features.events import COLUMN_NAMES, TS_TYPE
from features.ingest.csv_text import CsvHeaderError, read_csv_text
from features.ingest.importers.common import ImportResult, Mapped, finish
from features.ingest.importers.mapping import (
    UNIT_FACTOR,
    ColumnSource,
    ConstSource,
    DateOffsetSource,
    EpochSource,
    JsonSource,
    TableMapping,
    TableSpec,
    TemplateSource,
    TypeColumnSource,
    unit_of,
)
from features.ingest.importers.steps import check_targets
from features.ingest.validate import InputError, Reason, cast_or_null

_NULL_TEXT = pa.scalar(None, pa.string())
_EPOCH_US = {"s": 1_000_000, "ms": 1_000, "us": 1}


def import_tables(
    paths: Sequence[Path], mapping: TableMapping, steps: Collection[str] | None = None
) -> ImportResult:
    """Read and map every file; `only_sessions_of` restrictions apply across the files.

    `steps` (the funnel's) quarantines events on other steps (`unknown_step`).
    """
    if not paths:
        raise InputError("no input files")
    if steps is not None:
        check_targets(mapping.steps, steps, f"mapping {mapping.name!r}")
    specs = [(Path(p), mapping.spec_for(Path(p))) for p in paths]
    parts = [
        (spec, map_table(read_source(path, spec), spec, source=f"{mapping.name}:{path.name}"))
        for path, spec in specs
    ]
    skipped: dict[str, int] = {}
    for (path, _), (_, part) in zip(specs, parts, strict=True):
        if part.blank:
            skipped[f"{path.name}: blank line"] = part.blank
    kept: list[Mapped] = []
    for spec, part in parts:
        if spec.only_sessions_of is not None:
            part, dropped = _restrict(part, spec.only_sessions_of, parts)
            if dropped:
                key = f"{spec.name}: session not in {spec.only_sessions_of}"
                skipped[key] = skipped.get(key, 0) + dropped
        kept.append(part.mapped)
    return finish(kept, skipped, step_map=mapping.steps, steps=steps)


# --- reading -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """One input file's rows (typed as read) plus its malformed lines."""

    path: Path
    table: pa.Table
    rows: np.ndarray  # 0-based record index of each table row (header excluded)
    malformed: list[tuple[int, str, str]]  # (record index, original text, reason)
    blank: int = 0  # blank lines: not records, counted as skipped


def read_source(path: Path, spec: TableSpec) -> Source:
    """Read a CSV (all text, per the spec's `csv` options) or parquet file."""
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            table = pq.read_table(path)
            return Source(path, table, np.arange(table.num_rows, dtype=np.int64), [])
        if suffix == ".csv":
            if spec.csv is None:
                raise ConfigError(f"table {spec.name!r}: reading {path.name} needs `csv` options")
            return _read_csv(path, spec)
    except (pa.ArrowInvalid, OSError, csv.Error) as exc:
        raise InputError(f"{path}: not a readable {suffix[1:]} file: {exc}") from exc
    raise InputError(f"{path}: unsupported format {suffix!r} (expected .csv or .parquet)")


def _read_csv(path: Path, spec: TableSpec) -> Source:
    assert spec.csv is not None
    try:
        text = read_csv_text(path, spec.csv.separator, spec.csv.null_values)
    except CsvHeaderError as exc:
        raise InputError(f"{path}: {exc}") from exc
    bad = [(line, t, Reason.UNDECODABLE_ROW) for line, t in text.undecodable]
    bad += [(line, t, Reason.MALFORMED_ROW) for line, t in text.malformed]
    rows = text.lines - 2  # 0-based record index, header excluded
    return Source(path, text.table, rows, [(line - 2, t, why) for line, t, why in bad], text.blank)


# --- mapping -------------------------------------------------------------------------------


@dataclass(frozen=True)
class MappedFile:
    """One file's mapped records and its count of blank lines."""

    mapped: Mapped
    blank: int


def map_table(src: Source, spec: TableSpec, source: str) -> MappedFile:
    """Canonical columns for every row of one file, plus its malformed lines."""
    _check_columns(src, spec)
    t = src.table
    cols = spec.columns
    arrays: dict[str, pa.Array] = {}
    reason = pa.nulls(t.num_rows, pa.string())
    for name in COLUMN_NAMES:
        spec_value = getattr(cols, name)
        if name == "ts":
            arrays[name], ts_reason = _ts(t, spec_value)
            reason = pc.coalesce(reason, ts_reason)
        elif name == "type":
            arrays[name], type_reason = _type(t, spec_value)
            reason = pc.coalesce(reason, type_reason)
        elif name == "props" and isinstance(spec_value, JsonSource):
            arrays[name] = _json(t, spec_value.json_columns)
        else:
            arrays[name] = _text(t, spec_value)
    ts_type = arrays["ts"].type
    mapped = pa.table(arrays)
    rows = src.rows
    if src.malformed:
        extra = pa.table(
            {
                n: pa.nulls(len(src.malformed), ts_type if n == "ts" else pa.string())
                for n in COLUMN_NAMES
            }
        )
        mapped = pa.concat_tables([mapped, extra])
        reason = pa.concat_arrays(
            [reason, pa.array([str(why) for _, _, why in src.malformed], pa.string())]
        )
        rows = np.concatenate([rows, np.array([i for i, _, _ in src.malformed], dtype=np.int64)])
    malformed_text = [text for _, text, _ in src.malformed]
    n_rows = t.num_rows
    unit = unit_of(cols.value)
    factor = None
    if unit is not None:
        factor = pa.array(np.full(mapped.num_rows, UNIT_FACTOR[unit]), pa.float64())

    def records(idx: np.ndarray) -> pa.Array:
        out: list[str] = []
        good = idx[idx < n_rows]
        parsed = t.take(pa.array(good, pa.int64())).to_pylist() if len(good) else []
        it = iter(parsed)
        for i in idx:
            if i < n_rows:
                out.append(json.dumps(next(it), ensure_ascii=False, default=str))
            else:
                out.append(malformed_text[i - n_rows])
        return pa.array(out, pa.string())

    lines = None if src.path.suffix.lower() == ".parquet" else rows + 2  # header = line 1
    part = Mapped(
        table=mapped,
        reason=reason,
        rows=rows,
        records=records,
        source=source,
        lines=lines,
        factor=factor,
    )
    return MappedFile(part, src.blank)


def _referenced(spec: TableSpec) -> set[str]:
    names: set[str] = set()
    for name in COLUMN_NAMES:
        value = getattr(spec.columns, name)
        if isinstance(value, ColumnSource | TypeColumnSource):
            names.add(value.column)
        elif isinstance(value, TemplateSource):
            names.update(value.fields)
        elif isinstance(value, DateOffsetSource):
            names.add(value.date)
            if value.offset_ms:
                names.add(value.offset_ms)
        elif isinstance(value, EpochSource):
            names.add(value.epoch)
        elif isinstance(value, JsonSource):
            names.update(value.json_columns)
    return names


def _check_columns(src: Source, spec: TableSpec) -> None:
    missing = sorted(_referenced(spec) - set(src.table.column_names))
    if missing:
        raise InputError(
            f"{src.path}: columns {', '.join(missing)} used by mapping table {spec.name!r} "
            f"are missing (file has: {', '.join(src.table.column_names)})"
        )


def _col_text(t: pa.Table, name: str) -> pa.Array:
    arr = t.column(name).combine_chunks()
    return arr if arr.type == pa.string() else pc.cast(arr, pa.string())


def _text(t: pa.Table, source: ColumnSource | ConstSource | TemplateSource | None) -> pa.Array:
    n = t.num_rows
    if source is None:
        return pa.nulls(n, pa.string())
    if isinstance(source, ColumnSource):
        return _col_text(t, source.column)
    if isinstance(source, ConstSource):
        const = source.const if isinstance(source.const, str) else repr(source.const)
        return pa.array([const] * n, pa.string())
    parts: list[pa.Array | str] = []
    for literal, field, _, _ in string.Formatter().parse(source.template):
        if literal:
            parts.append(literal)
        if field is not None:
            parts.append(_col_text(t, field))
    if not any(isinstance(p, pa.Array) for p in parts):
        return pa.array(["".join(p for p in parts if isinstance(p, str))] * n, pa.string())
    return pc.binary_join_element_wise(*parts, "")


def _type(t: pa.Table, source: ConstSource | TypeColumnSource) -> tuple[pa.Array, pa.Array]:
    n = t.num_rows
    if isinstance(source, ConstSource):
        return pa.array([str(source.const)] * n, pa.string()), pa.nulls(n, pa.string())
    names = _col_text(t, source.column)
    keys = pa.array(list(source.values), pa.string())
    types = pa.array([v.value for v in source.values.values()], pa.string())
    index = pc.index_in(names, value_set=keys)
    mapped = pc.take(types, index)
    unknown = pc.and_(pc.is_valid(names), pc.is_null(index))
    # unknown names keep their original text in the quarantine's `type` column
    out = pc.if_else(unknown, names, mapped)
    return out, pc.if_else(unknown, Reason.UNKNOWN_EVENT_NAME.value, _NULL_TEXT)


def _ts(
    t: pa.Table, source: ColumnSource | DateOffsetSource | EpochSource
) -> tuple[pa.Array, pa.Array]:
    n = t.num_rows
    if isinstance(source, ColumnSource):  # typed or ISO text: the validator's rules apply
        return t.column(source.column).combine_chunks(), pa.nulls(n, pa.string())
    if isinstance(source, EpochSource):
        text = _col_text(t, source.epoch)
        number = cast_or_null(text, pa.float64())
        us = pc.round(pc.multiply(number, float(_EPOCH_US[source.unit])))
        finite = pc.and_(pc.is_finite(us), pc.less(pc.abs(us), 9.2e18))
        us = pc.if_else(finite, us, pa.scalar(None, pa.float64()))
        ts = pc.cast(pc.cast(us, pa.int64()), TS_TYPE)
        return ts, _bad(text, ts)
    date_text = _col_text(t, source.date)
    day = pc.strptime(date_text, format=source.date_format, unit="us", error_is_null=True)
    if source.offset_ms is not None:
        offset_text = _col_text(t, source.offset_ms)
        offset = cast_or_null(offset_text, pa.int64())
        local = pc.add(day, pc.cast(offset, pa.duration("ms")))
        present = pc.and_(pc.is_valid(date_text), pc.is_valid(offset_text))
    else:
        local, present = day, pc.is_valid(date_text)
    ts = pc.cast(
        pc.assume_timezone(local, source.timezone, ambiguous="earliest", nonexistent="earliest"),
        TS_TYPE,
    )
    bad = pc.and_(present, pc.is_null(ts))
    return ts, pc.if_else(bad, Reason.TS_UNPARSEABLE.value, _NULL_TEXT)


def _bad(text: pa.Array, parsed: pa.Array) -> pa.Array:
    bad = pc.and_(pc.is_valid(text), pc.is_null(parsed))
    return pc.if_else(bad, Reason.TS_UNPARSEABLE.value, _NULL_TEXT)


def _json(t: pa.Table, columns: list[str]) -> pa.Array:
    rows = t.select(columns).to_pylist()
    return pa.array([json.dumps(r, ensure_ascii=False, default=str) for r in rows], pa.string())


def _restrict(
    part: MappedFile, table_name: str, parts: list[tuple[TableSpec, MappedFile]]
) -> tuple[MappedFile, int]:
    """Drop (and count) rows whose session is absent from the named table's rows."""
    others = [p.mapped for spec, p in parts if spec.name == table_name]
    if not others:
        raise InputError(
            f"only_sessions_of: {table_name!r}: no input file matched table {table_name!r}"
        )
    sessions = pa.concat_arrays(
        [pc.drop_null(p.table["session_id"].combine_chunks()) for p in others]
    )
    mapped = part.mapped
    sid = mapped.table["session_id"].combine_chunks()
    keep = pc.or_(pc.is_null(sid), pc.is_in(sid, value_set=pc.unique(sessions)))
    keep = pc.or_(keep, pc.is_valid(mapped.reason))  # malformed rows are quarantined, not skipped
    mask = keep.to_numpy(zero_copy_only=False)
    index = np.flatnonzero(mask)
    return MappedFile(mapped.take(index), part.blank), int(len(mask) - len(index))
