"""Offline replay: history folded through `features.signals`, exactly as the live path does.

Each session's events (sorted) go through `signals.update` one by one; before each event
`pause_moments` reports the pause checkpoints the gap reached, after it `event_moments`
the moments the event set off, and after the last event the checkpoints of a user who went
idle for good (the dispatcher would still call). No signal is computed here: this module
only decides *when* to call the one definition and records what it returned.

Besides decision points and session snapshots the replay records two facts the aggregates
need and only the state machine knows: step visits (enter -> leave) and the interaction
gaps it closed. Sessions are independent, so the work splits across processes by session.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from itertools import repeat
from multiprocessing import get_context
from operator import itemgetter

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from features.config import SignalsConfig
from features.signals import (
    SNAPSHOT_FIELDS,
    Ev,
    Moment,
    SessionState,
    event_moments,
    new_state,
    pause_moments,
    snapshot,
    update,
)

# The canonical order of a session's events: arrival order never matters once sorted, and
# ties on `ts` are broken by the idempotency key so every run folds them identically.
SORT_KEYS: tuple[str, ...] = ("session_id", "ts", "event_id")
REPLAY_COLUMNS: tuple[str, ...] = ("session_id", "ts", "type", "step", "target", "value")

DECISION_SCHEMA = pa.schema(
    [
        ("session_id", pa.string()),
        ("step", pa.string()),
        ("moment", pa.string()),
        ("episode", pa.string()),
        ("request_ts", pa.float64()),
    ]
)
SNAPSHOT_SCHEMA = pa.schema(
    [("session_id", pa.string()), ("ts", pa.float64())]
    + [(name, pa.float64()) for name in SNAPSHOT_FIELDS]
)
VISIT_SCHEMA = pa.schema(
    [
        ("session_id", pa.string()),
        ("step", pa.string()),
        ("step_visit", pa.int64()),
        ("entered_at", pa.float64()),
        ("left_at", pa.float64()),
        ("completed", pa.bool_()),
    ]
)
GAP_SCHEMA = pa.schema(
    [
        ("session_id", pa.string()),
        ("step", pa.string()),
        ("ts", pa.float64()),
        ("gap_s", pa.float64()),
    ]
)


@dataclass(slots=True)
class SessionReplay:
    """What one session's replay produced.

    `snapshots` holds one `(ts, row)` per distinct decision time plus the last state: the
    state after every event with a timestamp <= ts, which is what the server has stored
    when the dispatcher calls at ts.
    """

    session_id: str
    state: SessionState
    moments: list[Moment] = field(default_factory=list)
    snapshots: list[tuple[float, dict[str, float]]] = field(default_factory=list)
    visits: list[tuple[str, int, float, float, bool]] = field(default_factory=list)
    gaps: list[tuple[str | None, float, float]] = field(default_factory=list)


def replay_session(session_id: str, events: Iterable[Ev], cfg: SignalsConfig) -> SessionReplay:
    """Fold one session's sorted events and collect decision points, snapshots and facts."""
    state = new_state(session_id)
    out = SessionReplay(session_id, state)
    moments, snaps, visits, gaps = out.moments, out.snapshots, out.visits, out.gaps
    pending = math.nan  # time of event moments waiting for every event at that time
    entered = math.nan
    for ev in events:
        ts = ev.ts
        if ts > pending:
            snaps.append((pending, snapshot(state)))
            pending = math.nan
        due = pause_moments(state, ts, cfg)
        if due:
            row = snapshot(state)
            for moment in due:
                moments.append(moment)
                snaps.append((moment.ts, row))
        step, visit = state.step, state.step_visits
        update(state, ev, cfg)
        if state.step_visits != visit or state.step != step:
            if step is not None:
                visits.append((step, visit, entered, ts, step in state.completed))
            entered = state.step_entered_at
        gap = state.last_gap_s
        if gap == gap:  # not NaN: this event closed a gap
            gaps.append((state.step, ts, gap))
        found = event_moments(state, ev, cfg)
        if found:
            moments.extend(found)
            pending = ts
    if state.events == 0:
        return out
    last = state.last_event_at
    if not math.isnan(pending) or not snaps or snaps[-1][0] != last:
        snaps.append((last, snapshot(state)))
    if state.step is not None:
        visits.append((state.step, state.step_visits, entered, last, state.step in state.completed))
    due = pause_moments(state, math.inf, cfg)
    if due:
        row = snapshot(state)
        for moment in due:
            moments.append(moment)
            snaps.append((moment.ts, row))
    return out


# --- batches ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplayTables:
    """Columnar results of replaying many sessions (schemas above)."""

    decisions: pa.Table
    snapshots: pa.Table
    visits: pa.Table
    gaps: pa.Table
    sessions: int
    events: int

    @classmethod
    def concat(cls, parts: Sequence[ReplayTables]) -> ReplayTables:
        """One result from the results of disjoint session sets."""
        return cls(
            decisions=_concat([p.decisions for p in parts], DECISION_SCHEMA),
            snapshots=_concat([p.snapshots for p in parts], SNAPSHOT_SCHEMA),
            visits=_concat([p.visits for p in parts], VISIT_SCHEMA),
            gaps=_concat([p.gaps for p in parts], GAP_SCHEMA),
            sessions=sum(p.sessions for p in parts),
            events=sum(p.events for p in parts),
        )


def _concat(tables: list[pa.Table], schema: pa.Schema) -> pa.Table:
    return pa.concat_tables(tables) if tables else schema.empty_table()


def sort_events(events: pa.Table) -> pa.Table:
    """Events in replay order (session, time, event id)."""
    return events.sort_by([(key, "ascending") for key in SORT_KEYS])


def session_bounds(sorted_events: pa.Table) -> np.ndarray:
    """Row offsets where each session starts, plus the end (len = sessions + 1)."""
    n = sorted_events.num_rows
    if n == 0:
        return np.zeros(1, dtype=np.int64)
    codes = pc.dictionary_encode(sorted_events.column("session_id")).combine_chunks().indices
    codes = codes.to_numpy(zero_copy_only=False)
    starts = np.flatnonzero(np.diff(codes)) + 1
    return np.concatenate([[0], starts, [n]]).astype(np.int64)


def replay_sorted(sorted_events: pa.Table, cfg: SignalsConfig) -> ReplayTables:
    """Replay every session of an already sorted table in this process."""
    bounds = session_bounds(sorted_events)
    t = sorted_events
    ts_us = pc.cast(t.column("ts"), pa.int64()).to_numpy()
    ts = (ts_us / 1e6).tolist()  # the same float an aware datetime's .timestamp() gives
    sids = t.column("session_id").to_pylist()
    types = t.column("type").to_pylist()
    steps = t.column("step").to_pylist()
    targets = t.column("target").to_pylist()
    values = t.column("value").to_pylist()

    # per-row session ids and session-free rows, extended per session (C-level, cheap)
    dec_sid: list[str] = []
    dec_rows: list[Moment] = []
    snap_sid: list[str] = []
    snap_rows: list[tuple[float, dict[str, float]]] = []
    vis_sid: list[str] = []
    vis_rows: list[tuple] = []
    gap_sid: list[str] = []
    gap_rows: list[tuple] = []
    for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
        sid = sids[lo]
        evs = map(Ev, ts[lo:hi], types[lo:hi], steps[lo:hi], targets[lo:hi], values[lo:hi])
        r = replay_session(sid, evs, cfg)
        dec_sid.extend(repeat(sid, len(r.moments)))
        dec_rows.extend(r.moments)
        snap_sid.extend(repeat(sid, len(r.snapshots)))
        snap_rows.extend(r.snapshots)
        vis_sid.extend(repeat(sid, len(r.visits)))
        vis_rows.extend(r.visits)
        gap_sid.extend(repeat(sid, len(r.gaps)))
        gap_rows.extend(r.gaps)
    dec = {
        "session_id": dec_sid,
        "step": [m.step for m in dec_rows],
        "moment": [m.type.value for m in dec_rows],
        "episode": [m.episode for m in dec_rows],
        "request_ts": [m.ts for m in dec_rows],
    }
    snap_cols: dict[str, Sequence] = {"session_id": snap_sid, "ts": [at for at, _ in snap_rows]}
    values_of = itemgetter(*SNAPSHOT_FIELDS)
    rows = [values_of(row) for _, row in snap_rows]
    snap_cols |= dict(zip(SNAPSHOT_FIELDS, _transpose(rows, len(SNAPSHOT_FIELDS)), strict=True))
    vis = {"session_id": vis_sid} | dict(
        zip(VISIT_SCHEMA.names[1:], _transpose(vis_rows, 5), strict=True)
    )
    gap = {"session_id": gap_sid} | dict(
        zip(GAP_SCHEMA.names[1:], _transpose(gap_rows, 3), strict=True)
    )
    return ReplayTables(
        decisions=pa.table(dec, schema=DECISION_SCHEMA),
        snapshots=pa.table(snap_cols, schema=SNAPSHOT_SCHEMA),
        visits=pa.table(vis, schema=VISIT_SCHEMA),
        gaps=pa.table(gap, schema=GAP_SCHEMA),
        sessions=len(bounds) - 1,
        events=t.num_rows,
    )


def _transpose(rows: list[tuple], width: int) -> list[Sequence]:
    """Columns of a list of equal-width tuples (empty columns when there are no rows)."""
    return list(zip(*rows, strict=True)) if rows else [[] for _ in range(width)]


def chunks(sorted_events: pa.Table, target_events: int) -> Iterator[pa.Table]:
    """Slices of about `target_events` rows that never split a session."""
    bounds = session_bounds(sorted_events)
    n = sorted_events.num_rows
    start = 0
    while start < n:
        # the first session boundary at or after start + target (or the end)
        i = int(np.searchsorted(bounds, start + max(target_events, 1), side="left"))
        stop = int(bounds[min(i, len(bounds) - 1)])
        yield sorted_events.slice(start, stop - start)
        start = stop


def replay_events(
    events: pa.Table,
    cfg: SignalsConfig,
    *,
    workers: int = 1,
    chunk_events: int = 50_000,
    progress: Callable[[int], None] | None = None,
    start_method: str = "fork",
) -> ReplayTables:
    """Replay every session in `events` (canonical columns, any order).

    `workers` > 1 replays session chunks in that many processes (forked by default: a
    spawned worker re-imports the stack, which costs more than it saves on small data);
    `progress` is called with the number of events of each finished chunk.
    """
    sorted_events = sort_events(events.select([*REPLAY_COLUMNS, "event_id"]))
    sorted_events = sorted_events.select(list(REPLAY_COLUMNS))
    parts: list[ReplayTables] = []
    pieces = list(chunks(sorted_events, chunk_events))
    if workers <= 1 or len(pieces) <= 1:
        for piece in pieces:
            parts.append(replay_sorted(piece, cfg))
            if progress is not None:
                progress(piece.num_rows)
    else:
        ctx = get_context(start_method)
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            futures = [pool.submit(replay_sorted, piece, cfg) for piece in pieces]
            for piece, future in zip(pieces, futures, strict=True):
                parts.append(future.result())
                if progress is not None:
                    progress(piece.num_rows)
    return ReplayTables.concat(parts)
