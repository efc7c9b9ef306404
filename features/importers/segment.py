"""Segment / RudderStack spec messages (JSON lines) -> canonical events.

Handles the spec's `track`, `page`, `screen` and `identify` calls: `messageId`, `userId` /
`anonymousId`, `timestamp`, `event`, `properties`, `context.userAgent`, `context.timezone`,
`context.device.type`, `context.campaign` (where each lives is the mapping's `fields`).
Track event names become event types through the mapping's `track` table. Lines that are
not JSON objects, calls the mapping does not cover (group, alias) and unknown event names
go to the quarantine with the original line.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from features.events import COLUMN_NAMES
from features.importers.common import ImportResult, Mapped, finish
from features.importers.mapping import ConstSource, PathSource, SegmentMapping, SegmentRule
from features.validate import Reason

_OVERRIDABLE = ("step", "target", "value")


def import_segment(path: Path, mapping: SegmentMapping) -> ImportResult:
    """Read a JSON-lines file of Segment messages (blank lines are not records)."""
    path = Path(path)
    with path.open("rb") as handle:
        return map_messages(handle, mapping, source=f"{mapping.name}:{path.name}")


def map_messages(
    lines: Iterable[bytes | str], mapping: SegmentMapping, source: str
) -> ImportResult:
    """Map raw lines; `row` in the quarantine is the 0-based line index."""
    columns: dict[str, list[Any]] = {name: [] for name in COLUMN_NAMES}
    paths = _field_paths(mapping)
    reasons: list[str | None] = []
    rows: list[int] = []
    originals: list[str] = []
    for index, line in enumerate(lines):
        text = line.decode("utf-8", "replace") if isinstance(line, bytes) else line
        if not text.strip():
            continue
        row, reason = _map_line(line, mapping, paths)
        for name in COLUMN_NAMES:
            columns[name].append(row.get(name))
        reasons.append(reason)
        rows.append(index)
        originals.append(text.rstrip("\r\n"))
    table = pa.table({name: pa.array(columns[name], pa.string()) for name in COLUMN_NAMES})
    records = np.array(originals, dtype=object)
    part = Mapped(
        table=table,
        reason=pa.array(reasons, pa.string()),
        rows=np.array(rows, dtype=np.int64),
        records=lambda idx: pa.array(records[idx].tolist(), pa.string()),
        source=source,
    )
    return finish([part])


def _field_paths(mapping: SegmentMapping) -> list[tuple[str, list[tuple[str, ...]]]]:
    """Each column's candidate paths, split once (the per-line loop is the hot path)."""
    return [
        (name, [tuple(path.split(".")) for path in getattr(mapping.fields, name)])
        for name in COLUMN_NAMES
        if name != "type"
    ]


def _map_line(
    line: bytes | str, mapping: SegmentMapping, paths: list[tuple[str, list[tuple[str, ...]]]]
) -> tuple[dict[str, str | None], str | None]:
    try:
        message = json.loads(line)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError
        return {}, Reason.MALFORMED_JSON.value
    if not isinstance(message, dict):
        return {}, Reason.MALFORMED_JSON.value
    row = {name: _text(_first(message, candidates)) for name, candidates in paths}
    call = message.get("type")
    if call == "track":
        name = message.get("event")
        rule = mapping.track.get(name) if isinstance(name, str) else None
        if rule is None:
            row["type"] = _text(name)
            return row, Reason.UNKNOWN_EVENT_NAME.value
    else:
        rule = mapping.calls.get(call) if isinstance(call, str) else None
        if rule is None:
            row["type"] = _text(call)
            return row, Reason.UNSUPPORTED_CALL.value
    return _apply(row, rule, message), None


def _apply(row: dict[str, str | None], rule: SegmentRule, message: dict[str, Any]) -> dict:
    row["type"] = rule.type.value
    for name in _OVERRIDABLE:
        source = getattr(rule, name)
        if isinstance(source, PathSource):
            row[name] = _text(_get(message, tuple(source.path.split("."))))
        elif isinstance(source, ConstSource):
            row[name] = _text(source.const)
    return row


def _get(message: dict[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = message
    for part in path:
        if type(node) is not dict:  # JSON objects decode to plain dicts
            return None
        node = node.get(part)
    return node


def _first(message: dict[str, Any], paths: list[tuple[str, ...]]) -> Any:
    for path in paths:
        value = _get(message, path)
        if value is not None:
            return value
    return None


def _text(value: Any) -> str | None:
    """Text as is; numbers, booleans, objects and lists as JSON."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)
