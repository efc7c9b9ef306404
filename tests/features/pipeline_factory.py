"""Hand-made canonical event tables for the feature-pipeline tests."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa

from features.events import EVENT_SCHEMA

T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)  # a Monday morning, UTC


def at(seconds: float, base: datetime = T0) -> datetime:
    """T0 + seconds, as an aware datetime."""
    return base + timedelta(seconds=seconds)


def epoch(seconds: float, base: datetime = T0) -> float:
    """Epoch seconds of T0 + seconds (what the state machine uses)."""
    return at(seconds, base).timestamp()


Row = tuple  # (seconds after T0, type, step, target, value)


def session(
    session_id: str,
    rows: Iterable[Row],
    *,
    user_id: str | None = "u1",
    anonymous_id: str | None = None,
    device: str | None = "desktop",
    channel: str | None = "organic",
    base: datetime = T0,
) -> list[dict]:
    """Canonical event dicts for one session from compact rows."""
    out = []
    for i, row in enumerate(rows):
        seconds, etype, step, target, value = (*row, None, None, None)[:5]
        out.append(
            {
                "event_id": f"{session_id}-{i:04d}",
                "user_id": user_id,
                "anonymous_id": anonymous_id,
                "session_id": session_id,
                "ts": at(seconds, base),
                "type": etype,
                "step": step,
                "target": target,
                "value": value,
                "user_agent": "Mozilla/5.0",
                "tz": "Europe/Paris",
                "device": device,
                "channel": channel,
                "props": json.dumps({}),
            }
        )
    return out


def table(*sessions: Sequence[dict]) -> pa.Table:
    """One canonical table from several sessions' rows."""
    rows = [row for s in sessions for row in s]
    return pa.Table.from_pylist(rows, schema=EVENT_SCHEMA)


def no_bots(events: pa.Table, flagged: Iterable[str] = ()) -> pa.Table:
    """Bot scores for every session of `events`; `flagged` ones are bots."""
    ids = sorted(set(events.column("session_id").to_pylist()))
    bad = set(flagged)
    return pa.table(
        {
            "session_id": ids,
            "bot_score": [1.0 if s in bad else 0.0 for s in ids],
            "is_bot": [s in bad for s in ids],
        }
    )


REPO_CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def evs(rows: Iterable[Row], base: datetime = T0) -> list:
    """Signals events (`Ev`) from compact rows, times as epoch seconds."""
    from features.signals import Ev

    out = []
    for row in rows:
        seconds, etype, step, target, value = (*row, None, None, None)[:5]
        out.append(Ev(epoch(seconds, base), etype, step, target, value))
    return out


def same_rows(a: pa.Table, b: pa.Table) -> bool:
    """Equal schemas and values, NaN equal to NaN (Arrow's `equals` says NaN != NaN)."""
    return a.schema == b.schema and a.to_pandas().equals(b.to_pandas())
