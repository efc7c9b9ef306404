"""Hand-made events and paths for the ingestion tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa

from features.events import COLUMN_NAMES, EVENT_SCHEMA

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
NOW = datetime(2025, 3, 10, tzinfo=UTC)  # a week after T0: nothing in the tests is "future"
DIGINETICA = REPO / "tests" / "data" / "diginetica"
# the shop funnel (browse / cart / checkout) overlaid on the shipped configs, for Diginetica
ECOMMERCE_CONFIGS = (REPO / "configs" / "examples" / "ecommerce", REPO / "configs")
SEGMENT_FIXTURE = REPO / "tests" / "fixtures" / "segment" / "onboarding.jsonl"


def event(i: int | str, seconds: float = 0.0, **fields: Any) -> dict[str, Any]:
    """A valid canonical event dict `e<i>` at T0 + seconds; keyword fields override."""
    row: dict[str, Any] = dict.fromkeys(COLUMN_NAMES)
    row.update(
        event_id=f"e{i}",
        user_id="u1",
        ts=T0 + timedelta(seconds=seconds),
        type="view",
        step="welcome",
    )
    row.update(fields)
    return row


def typed(rows: list[dict[str, Any]]) -> pa.Table:
    """Rows as a canonical (typed) table."""
    return pa.Table.from_pylist(rows, schema=EVENT_SCHEMA)


def loose(rows: list[dict[str, Any]], ts_as_text: bool = False) -> pa.Table:
    """Rows as a table of nullable columns (bad values allowed); ts as ISO text if asked."""
    schema = pa.schema([f.with_nullable(True) for f in EVENT_SCHEMA])
    if ts_as_text:
        schema = schema.set(schema.get_field_index("ts"), pa.field("ts", pa.string()))
        rows = [
            {**r, "ts": r["ts"].isoformat() if isinstance(r["ts"], datetime) else r["ts"]}
            for r in rows
        ]
    return pa.Table.from_pylist(rows, schema=schema)
