"""Arrow tables of a simulation run: events (canonical schema), users (latent), oracle.

The engine collects plain tuples (cheap to append in the hot loop); these functions turn
them into columns once, at the end, and write them with pyarrow.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from core.layout import Layout
from features.events import COLUMN_NAMES, EVENT_SCHEMA, TS_TYPE, empty_events
from features.simulator.population import USER_COLUMNS, User

# One emitted event: (user index, event_id, session_id, ts in epoch microseconds, type,
# step, target, value, props). User-level columns are filled from the user at the end.
EventRow = tuple[int, str, str, int, str, str | None, str | None, float | None, str | None]

ORACLE_SCHEMA = pa.schema(
    [
        pa.field("session_id", pa.string(), nullable=False),
        pa.field("step", pa.string(), nullable=False),
        pa.field("step_visit", pa.int64(), nullable=False),
        pa.field("ts_from", TS_TYPE, nullable=False),
        pa.field("p_abandon", pa.float64(), nullable=False),
        pa.field("need", pa.string(), nullable=False),
    ]
)
# One oracle change: (session_id, step, step_visit, ts in epoch microseconds, p_abandon,
# need). `need` is the latent need still open ("none" once helped), for evaluation only.
OracleRow = tuple[str, str, int, int, float, str]

OUTCOME_COLUMNS: tuple[tuple[str, pa.DataType], ...] = (
    ("sessions", pa.int64()),
    ("completed", pa.bool_()),
    ("furthest_step", pa.string()),
    ("triggers_shown", pa.int64()),
)
USERS_SCHEMA = pa.schema(
    [
        ("user_id", pa.string()),
        ("archetype", pa.string()),
        ("is_bot", pa.bool_()),
        ("device", pa.string()),
        ("tz", pa.string()),
        ("channel", pa.string()),
        ("user_agent", pa.string()),
        ("confusion", pa.float64()),
        ("motivation", pa.float64()),
        ("distraction", pa.float64()),
        ("receptivity", pa.float64()),
        ("annoyance", pa.float64()),
        ("speed", pa.float64()),
        ("return_prob", pa.float64()),
        ("break_prob", pa.float64()),
        ("arrival", TS_TYPE),
        ("assistive", pa.bool_()),
        ("assistive_flagged", pa.bool_()),
        *OUTCOME_COLUMNS,
    ]
)
_USER_FIELDS = ("user_id", "user_agent", "tz", "device", "channel")


def events_table(rows: Sequence[EventRow], users: Mapping[int, User] | Sequence[User]) -> pa.Table:
    """Rows grouped by user, each user's in emission order (which is time order).

    A user's rows are contiguous already unless a policy run interleaved users; sorting by
    user (stable) keeps the table the same however the scheduler interleaved them.
    `users[i]` must be the user of index i for every user index in `rows`.
    """
    if not rows:
        return empty_events()
    uidx, event_id, session_id, ts, etype, step, target, value, props = zip(*rows, strict=True)
    uidx_np = np.fromiter(uidx, dtype=np.int64, count=len(rows))
    columns: dict[str, pa.Array] = {
        "event_id": pa.array(event_id, pa.string()),
        "anonymous_id": pa.nulls(len(rows), pa.string()),
        "session_id": pa.array(session_id, pa.string()),
        "ts": pa.array(ts, pa.int64()).view(TS_TYPE),
        "type": pa.array(etype, pa.string()),
        "step": pa.array(step, pa.string()),
        "target": pa.array(target, pa.string()),
        "value": pa.array(value, pa.float64()),
        "props": pa.array(props, pa.string()),
    }
    present, inverse = np.unique(uidx_np, return_inverse=True)
    which = pa.array(inverse)  # an Arrow index: take() with a numpy one is 20x slower
    owners = [users[int(i)] for i in present]
    for name in _USER_FIELDS:
        columns[name] = pc.take(pa.array([getattr(u, name) for u in owners], pa.string()), which)
    # the flag is on the events of flagged assistive users only; others leave it unknown (null)
    flags = pa.array([True if u.assistive_flagged else None for u in owners], pa.bool_())
    columns["assistive"] = pc.take(flags, which)
    table = pa.Table.from_arrays([columns[n] for n in COLUMN_NAMES], schema=EVENT_SCHEMA)
    if np.any(np.diff(uidx_np) < 0):
        table = table.take(pa.array(np.argsort(uidx_np, kind="stable")))
    return table


def oracle_table(rows: Sequence[OracleRow]) -> pa.Table:
    """Oracle changes ordered by session, step, visit and time (asof-join ready)."""
    if not rows:
        return ORACLE_SCHEMA.empty_table()
    session_id, step, visit, ts, p, need = zip(*rows, strict=True)
    table = pa.Table.from_arrays(
        [
            pa.array(session_id, pa.string()),
            pa.array(step, pa.string()),
            pa.array(visit, pa.int64()),
            pa.array(ts, pa.int64()).view(TS_TYPE),
            pa.array(p, pa.float64()),
            pa.array(need, pa.string()),
        ],
        schema=ORACLE_SCHEMA,
    )
    return table.sort_by([("session_id", "ascending"), ("ts_from", "ascending")])


def users_table(
    users: Sequence[User], outcomes: Sequence[tuple[int, bool, str | None, int]]
) -> pa.Table:
    """Latent traits and realised outcomes per user (evaluation only, never a feature)."""
    columns: dict[str, list] = {name: [getattr(u, name) for u in users] for name in USER_COLUMNS}
    columns["arrival"] = [round(u.arrival * 1_000_000) for u in users]
    for (name, _), values in zip(OUTCOME_COLUMNS, zip(*outcomes, strict=True), strict=True):
        columns[name] = list(values)
    arrays = []
    for field in USERS_SCHEMA:
        if field.name == "arrival":
            arrays.append(pa.array(columns["arrival"], pa.int64()).view(TS_TYPE))
        else:
            arrays.append(pa.array(columns[field.name], field.type))
    return pa.Table.from_arrays(arrays, schema=USERS_SCHEMA)


def output_paths(layout: Layout) -> dict[str, Path]:
    """Where `intent simulate` writes its tables."""
    return {
        "events": layout.raw / "sim" / "events.parquet",
        "users": layout.raw / "sim" / "users.parquet",
        "oracle": layout.oracle / "oracle.parquet",
    }


def write_tables(tables: dict[str, pa.Table], layout: Layout) -> dict[str, Path]:
    """Write each table to its path (parents created, files replaced)."""
    paths = output_paths(layout)
    for name, table in tables.items():
        path = paths[name]
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path)
    return paths
