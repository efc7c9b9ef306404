"""Segment / RudderStack spec messages (JSON lines) -> canonical events.

Handles the spec's `track`, `page`, `screen` and `identify` calls: `messageId`, `userId` /
`anonymousId`, `timestamp` / `originalTimestamp`, `event`, `name`, `properties`,
`context.page`, `context.userAgent`, `context.timezone`, `context.device.type`,
`context.campaign` (where each lives is the mapping's `fields`). Track event names become
event types through the mapping's `track` table. Lines that are not JSON objects, calls the
mapping does not cover (group, alias) and unknown event names go to the quarantine with the
original line and its line number; blank lines and the mapping's `ignore_track` names are
counted as skipped, so every line of the file is accounted for.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from features.events import COLUMN_NAMES
from features.ingest.importers.common import ImportResult, Mapped, finish
from features.ingest.importers.mapping import (
    UNIT_FACTOR,
    ConstSource,
    PathSource,
    SegmentMapping,
    SegmentRule,
    unit_of,
)
from features.ingest.importers.steps import check_targets
from features.ingest.validate import Reason

_OVERRIDABLE = ("step", "target", "value")
_IGNORED = "ignored"  # `_map_line`'s reason for an `ignore_track` name (skipped, not kept)
SKIP_BLANK = "blank line"
SKIP_IGNORED = "ignored track event"


def import_segment(
    path: Path, mapping: SegmentMapping, steps: Collection[str] | None = None
) -> ImportResult:
    """Read a JSON-lines file of Segment messages.

    `steps` (the funnel's) quarantines events whose step, after the mapping's `steps`, the
    funnel does not have (`unknown_step`); None skips that rule.
    """
    path = Path(path)
    if steps is not None:
        check_targets(mapping.steps, steps, f"mapping {mapping.name!r}")
    with path.open("rb") as handle:
        return map_messages(handle, mapping, source=f"{mapping.name}:{path.name}", steps=steps)


def map_messages(
    lines: Iterable[bytes | str],
    mapping: SegmentMapping,
    source: str,
    steps: Collection[str] | None = None,
) -> ImportResult:
    """Map raw lines; `row` in the quarantine is the 0-based line index, `line` 1-based."""
    columns: dict[str, list[Any]] = {name: [] for name in COLUMN_NAMES}
    paths = field_paths(mapping)
    reasons: list[str | None] = []
    rows: list[int] = []
    factors: list[float | None] = []
    originals: list[str] = []
    skipped: Counter[str] = Counter()
    for index, line in enumerate(lines):
        text = line.decode("utf-8", "replace") if isinstance(line, bytes) else line
        if not text.strip():
            skipped[SKIP_BLANK] += 1
            continue
        row, reason, factor = _map_line(line, mapping, paths)
        if reason == _IGNORED:
            skipped[SKIP_IGNORED] += 1
            continue
        for name in COLUMN_NAMES:
            columns[name].append(row.get(name))
        reasons.append(reason)
        rows.append(index)
        factors.append(factor)
        originals.append(text.rstrip("\r\n"))
    table = pa.table({name: pa.array(columns[name], pa.string()) for name in COLUMN_NAMES})
    records = np.array(originals, dtype=object)
    row_index = np.array(rows, dtype=np.int64)
    part = Mapped(
        table=table,
        reason=pa.array(reasons, pa.string()),
        rows=row_index,
        records=lambda idx: pa.array(records[idx].tolist(), pa.string()),
        source=source,
        lines=row_index + 1,
        factor=pa.array(factors, pa.float64()),
    )
    return finish([part], dict(skipped), step_map=mapping.steps, steps=steps)


def field_paths(mapping: SegmentMapping) -> list[tuple[str, list[tuple[str, ...]]]]:
    """Each column's candidate paths, split once (the per-line loop is the hot path)."""
    return [
        (name, [tuple(path.split(".")) for path in getattr(mapping.fields, name)])
        for name in COLUMN_NAMES
        if name != "type"
    ]


def _map_line(
    line: bytes | str, mapping: SegmentMapping, paths: list[tuple[str, list[tuple[str, ...]]]]
) -> tuple[dict[str, str | None], str | None, float | None]:
    """(canonical columns as text, reason or None, unit factor of `value` or None)."""
    try:
        message = json.loads(line)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError
        return {}, Reason.MALFORMED_JSON.value, None
    if not isinstance(message, dict):
        return {}, Reason.MALFORMED_JSON.value, None
    row = {name: _text(first_present(message, candidates)) for name, candidates in paths}
    call = message.get("type")
    if call == "track":
        name = message.get("event")
        rule = mapping.track.get(name) if isinstance(name, str) else None
        if rule is None:
            if name in mapping.ignore_track:
                return row, _IGNORED, None
            row["type"] = _text(name)
            return row, Reason.UNKNOWN_EVENT_NAME.value, None
    else:
        rule = mapping.calls.get(call) if isinstance(call, str) else None
        if rule is None:
            row["type"] = _text(call)
            return row, Reason.UNSUPPORTED_CALL.value, None
    unit = unit_of(rule.value)
    return _apply(row, rule, message), None, None if unit is None else UNIT_FACTOR[unit]


def _apply(row: dict[str, str | None], rule: SegmentRule, message: dict[str, Any]) -> dict:
    row["type"] = rule.type.value
    for name in _OVERRIDABLE:
        source = getattr(rule, name)
        if isinstance(source, PathSource):
            row[name] = _text(get_path(message, tuple(source.path.split("."))))
        elif isinstance(source, ConstSource):
            row[name] = _text(source.const)
    return row


def get_path(message: dict[str, Any], path: tuple[str, ...]) -> Any:
    """The value at a split dotted path (None when any part is absent)."""
    node: Any = message
    for part in path:
        if type(node) is not dict:  # JSON objects decode to plain dicts
            return None
        node = node.get(part)
    return node


def first_present(message: dict[str, Any], paths: list[tuple[str, ...]]) -> Any:
    """The value of the first path present (the mapping's `fields` order)."""
    for path in paths:
        value = get_path(message, path)
        if value is not None:
            return value
    return None


def _text(value: Any) -> str | None:
    """Text as is; numbers, booleans, objects and lists as JSON."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)
