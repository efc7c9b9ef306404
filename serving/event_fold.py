"""Applying validated events: live session state, Feast push, quarantine of the rest.

One path for every way events arrive - `POST /events` and the stream consumer
(`intent consume`) - so both dedup, fold, push and quarantine the same way. Everything here
blocks (SQLite / Redis / Feast / parquet): the server calls it off the event loop.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from core.layout import Layout
from serving.sessions import ApplyResult, LiveEvent, SessionStore

log = logging.getLogger("intent.serving")


@dataclass(frozen=True)
class Applied:
    """What `apply_valid` did: the store's result, ids repeated within the batch, the push
    outcome (None: no store that takes pushes, False: the push failed)."""

    result: ApplyResult
    repeated: list[str]
    pushed: bool | None

    @property
    def duplicates(self) -> list[str]:
        return [*self.result.duplicates, *self.repeated]


def live_event(e: Any) -> LiveEvent:
    """The slice of a validated `EventIn` the live state folds."""
    return LiveEvent(
        e.event_id,
        e.session_id,
        e.user_id,
        e.anonymous_id,
        e.ts.timestamp(),
        str(e.type),
        e.step,
        e.target,
        e.value,
        bool(e.assistive),
        e.user_agent,
    )


def apply_valid(
    sessions: SessionStore,
    reader: Any,
    layout: Layout,
    valid: Sequence[Any],
    source: str,
) -> Applied:
    """Fold valid events into the live state (one store transaction), quarantine the late
    ones under `source`, push the touched sessions. Duplicates within the batch count once."""
    seen: set[str] = set()
    unique, repeated = [], []
    for e in valid:
        if e.event_id in seen:
            repeated.append(e.event_id)
        else:
            unique.append(e)
        seen.add(e.event_id)
    result = sessions.apply([live_event(e) for e in unique])
    if result.late:
        late_ids = {e.event_id for e in result.late}
        quarantine_late(layout, [e for e in unique if e.event_id in late_ids], source)
    return Applied(result, repeated, push_touched(reader, result.touched))


def push_touched(reader: Any, touched: dict[str, tuple[dict[str, float], float]]) -> bool | None:
    """Push each touched session's snapshot to the online store; a failure is logged and
    reported (False), never raised: the live state is already stored."""
    if reader is None or not getattr(reader, "can_push", hasattr(reader, "push_session")):
        return None
    try:
        for sid, (snap, ts) in touched.items():
            reader.push_session(sid, snap, datetime.fromtimestamp(ts, UTC))
    except Exception as exc:
        log.warning("session push to the online store failed: %s", type(exc).__name__)
        return False
    return True


def _prefix(source: str) -> str:
    """`api:/events` -> `api`, `stream:intent:events` -> `stream` (quarantine file names)."""
    return source.split(":", 1)[0]


def quarantine_late(layout: Layout, events: list[Any], source: str) -> None:
    """Late events (older than their session's state) with reason `late_event`."""
    import numpy as np
    import pyarrow as pa

    from features.events import EVENT_SCHEMA, event_to_row
    from features.ingest.event_store import write_quarantine
    from features.ingest.validate import quarantine_rows

    table = pa.Table.from_pylist([event_to_row(e) for e in events], schema=EVENT_SCHEMA)
    n = table.num_rows
    rows = quarantine_rows(
        table, np.arange(n), pa.array(["late_event"] * n), pa.array([source] * n)
    )
    write_quarantine(layout, rows, f"{_prefix(source)}-events")


def quarantine_rejected(layout: Layout, items: list[Any], rejected: list[Any], source: str) -> None:
    """Rejected events as their original text, with the reason (`<prefix>-rejected-events-*`)."""
    import numpy as np
    import pyarrow as pa

    from features.events import COLUMN_NAMES
    from features.ingest.event_store import write_quarantine
    from features.ingest.validate import quarantine_rows

    def text(value: Any) -> str | None:
        if value is None:
            return None
        return value if isinstance(value, str) else json.dumps(value)

    columns = {
        name: pa.array(
            [text(item.get(name)) if isinstance(item, dict) else None for item in items],
            pa.string(),
        )
        for name in COLUMN_NAMES
    }
    table = pa.table(columns)
    n = table.num_rows
    rows = quarantine_rows(
        table,
        np.arange(n),
        pa.array([r.reason for r in rejected]),
        pa.array([source] * n),
        records=pa.array([json.dumps(item, default=str) for item in items], pa.string()),
        positions=np.array([r.index for r in rejected]),
    )
    write_quarantine(layout, rows, f"{_prefix(source)}-rejected-events")
