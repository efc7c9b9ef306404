"""Live session state for POST /events: dedup by event id, fold with `features.signals.update`.

The server keeps one `SessionState` per session, updated by the exact function offline replay
uses, so the snapshot it pushes to Feast is the row training saw. Events are applied in
timestamp order; an event older than its session's last one cannot be folded any more (the
state has moved on) and is returned as *late*, for the caller to quarantine - never dropped
silently. A batch is applied atomically: dedup marks and states commit together. Events without a
session id get one as the batch path derives it (`features.ingest.sessionize`: a new session after
the configured inactivity, id from the actor and the session's first timestamp).

Stores: `MemorySessionStore` (one process), `SqliteSessionStore` (one machine, any number of
workers), `serving.sessions_redis.RedisSessionStore` (replicas); all fold with `fold`.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Protocol

import orjson

from features.config import SignalsConfig
from features.ingest.sessionize import session_key
from features.signals import Ev, SessionState, new_state, snapshot, update
from serving.sqlite_wal import connect_wal

_SET_FIELDS = ("completed", "left_incomplete", "fired")


@dataclass(frozen=True, slots=True)
class LiveEvent:
    """The slice of a validated event the live state needs."""

    event_id: str
    session_id: str | None  # None: derived by inactivity
    user_id: str | None
    anonymous_id: str | None
    ts: float  # epoch seconds
    type: str
    step: str | None
    target: str | None
    value: float | None
    assistive: bool = False  # the event carried the assistive-technology flag
    user_agent: str | None = None  # for the assistive user-agent hint (features.signals)

    def ev(self) -> Ev:
        return Ev(self.ts, self.type, self.step, self.target, self.value, self.user_agent)

    @property
    def actor(self) -> str:
        return self.user_id or self.anonymous_id or ""


# actor -> (current session id, ts of its last event)
ActorSessions = Callable[[str], tuple[str, float] | None]


@dataclass
class ApplyResult:
    accepted: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    late: list[LiveEvent] = field(default_factory=list)
    # session id -> (snapshot, timestamp of its last event), for the Feast push
    touched: dict[str, tuple[dict[str, float], float]] = field(default_factory=dict)


@functools.cache
def _layout() -> tuple[tuple[str, ...], tuple[int, ...], tuple[int, ...]]:
    """SessionState's field names in constructor order, and the positions of its set fields
    (stored as lists) and float fields (null -> NaN)."""
    names = tuple(f.name for f in fields(SessionState))
    sets = tuple(names.index(name) for name in _SET_FIELDS)
    floats = tuple(i for i, f in enumerate(fields(SessionState)) if f.type in ("float", float))
    return names, sets, floats


def _sets_as_lists(value: object) -> list:
    if isinstance(value, set | frozenset):
        return sorted(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


def state_to_json(state: SessionState) -> str:
    """A SessionState as JSON text: an object of its fields, sets as sorted lists. orjson
    (several times faster than `json`, the consumer's main cost) writes NaN as null; the
    float fields read null back as NaN (events are finite: no infinity to lose)."""
    return orjson.dumps(state, default=_sets_as_lists).decode()


def state_from_json(text: str | bytes) -> SessionState:
    """The inverse of `state_to_json`; also reads states written by `json` before (NaN as a
    bare `NaN` token, which orjson rejects)."""
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:
        data = json.loads(text)
    names, sets, floats = _layout()
    values = list(data.values()) if tuple(data) == names else [data[n] for n in names]
    for i in sets:
        values[i] = set(values[i])
    for i in floats:
        if values[i] is None:
            values[i] = math.nan
    return SessionState(*values)  # positional: ~15x cheaper than 40 keywords


def fold(
    events: Sequence[LiveEvent],
    load: Callable[[str], SessionState | None],
    mark_seen: Callable[[str], bool],
    actor_session: ActorSessions,
    cfg: SignalsConfig,
    gap_s: float,
    horizon: float = -math.inf,
) -> tuple[ApplyResult, dict[str, SessionState], dict[str, tuple[str, float]]]:
    """Apply events in timestamp order. `load(sid)` gives the stored state or None,
    `mark_seen(event_id)` returns False for an id seen before, `actor_session(actor)` the
    actor's current derived session. An event before `horizon` is late: the store may have
    forgotten its id and its session (retention), so it is never folded. Returns the result,
    the states an event was folded into (a session whose events were all late is unchanged:
    not written again) and the actors' derived sessions to store."""
    result = ApplyResult()
    states: dict[str, SessionState] = {}
    actors: dict[str, tuple[str, float]] = {}
    changed: set[str] = set()
    for event in sorted(events, key=lambda e: e.ts):
        if event.ts < horizon:
            result.late.append(event)
            continue
        if not mark_seen(event.event_id):
            result.duplicates.append(event.event_id)
            continue
        sid = event.session_id
        if sid is None:
            current = actors.get(event.actor) or actor_session(event.actor)
            if current is None or event.ts - current[1] > gap_s:
                sid = session_key(event.actor, round(event.ts * 1_000_000))
            else:
                sid = current[0]
            actors[event.actor] = (sid, max(event.ts, current[1] if current else event.ts))
        state = states.get(sid)
        if state is None:
            state = load(sid) or new_state(sid, event.user_id)
            states[sid] = state
        if not math.isnan(state.last_event_at) and event.ts < state.last_event_at:
            result.late.append(event)
            continue
        if state.user_id is None and event.user_id is not None:
            state.user_id = event.user_id
        update(state, event.ev(), cfg)
        state.assistive = state.assistive or event.assistive
        result.accepted.append(event.event_id)
        changed.add(sid)
    for sid, state in states.items():
        if not math.isnan(state.last_event_at):
            result.touched[sid] = (snapshot(state), state.last_event_at)
    return result, {sid: states[sid] for sid in changed}, actors


class SessionStoreUnavailable(RuntimeError):
    """The session store's backend did not answer (Redis down or hung): POST /events
    answers 503 with Retry-After; the client retries, and dedup by event id makes that safe."""


def check_retention(retention_s: float | None, gap_s: float) -> None:
    """A session must outlive its inactivity gap, or a derived session would be cut short."""
    if retention_s is not None and retention_s <= gap_s:
        raise ValueError(
            f"session retention ({retention_s:g} s) must exceed the inactivity gap ({gap_s:g} s)"
        )


class SessionStore(Protocol):
    def apply(self, events: Sequence[LiveEvent]) -> ApplyResult: ...

    def get(self, session_id: str) -> SessionState | None: ...

    def close(self) -> None: ...


class MemorySessionStore:
    def __init__(self, cfg: SignalsConfig, gap_s: float) -> None:
        self.cfg = cfg
        self.gap_s = gap_s
        self._states: dict[str, SessionState] = {}
        self._seen: set[str] = set()
        self._actors: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def apply(self, events: Sequence[LiveEvent]) -> ApplyResult:
        with self._lock:
            pending: set[str] = set()

            def mark(event_id: str) -> bool:
                if event_id in self._seen or event_id in pending:
                    return False
                pending.add(event_id)
                return True

            def load(sid: str) -> SessionState | None:
                stored = self._states.get(sid)
                return state_from_json(state_to_json(stored)) if stored else None

            result, states, actors = fold(
                events, load, mark, self._actors.get, self.cfg, self.gap_s
            )
            self._seen |= pending
            self._states.update(states)
            self._actors.update(actors)
            return result

    def get(self, session_id: str) -> SessionState | None:
        return self._states.get(session_id)

    def close(self) -> None:
        return None


_SCHEMA = """
CREATE TABLE IF NOT EXISTS seen_events (event_id TEXT PRIMARY KEY, ts REAL NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sessions (
    session_id TEXT PRIMARY KEY, state TEXT NOT NULL, updated_at REAL NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS actors (
    actor TEXT PRIMARY KEY, session_id TEXT NOT NULL, last_ts REAL NOT NULL) WITHOUT ROWID;
"""


# A pruning pass runs once the newest event time has moved this share of the retention on.
_PRUNE_EVERY = 0.1


class SqliteSessionStore:
    """Session states and seen event ids in one SQLite file; one transaction per batch.

    With `retention_s`, event ids, sessions and derived-session actors older than the newest
    event time minus `retention_s` are forgotten (pruned inside a batch's transaction), and
    an event older than that horizon is reported late instead of being folded - it could be
    a forgotten duplicate. Time is the events' own clock, so a replay prunes as it goes.
    """

    def __init__(
        self, path: Path, cfg: SignalsConfig, gap_s: float, retention_s: float | None = None
    ) -> None:
        check_retention(retention_s, gap_s)
        self.cfg = cfg
        self.gap_s = gap_s
        self.retention_s = retention_s
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._con = connect_wal(path, "normal", timeout_s=10.0)
        self._con.executescript(_SCHEMA)
        self._lock = threading.Lock()
        newest = self._con.execute("SELECT max(ts) FROM seen_events").fetchone()[0]
        self._newest = -math.inf if newest is None else float(newest)
        self._pruned_at = self._newest

    def _horizon(self, newest: float) -> float:
        return -math.inf if self.retention_s is None else newest - self.retention_s

    def _prune(self, con: sqlite3.Connection, newest: float) -> bool:
        """Forget what lies before the horizon at `newest`; True if a pass ran (at most one
        per `_PRUNE_EVERY` of the retention)."""
        if self.retention_s is None or newest - self._pruned_at < _PRUNE_EVERY * self.retention_s:
            return False
        horizon = self._horizon(newest)
        con.execute("DELETE FROM seen_events WHERE ts < ?", (horizon,))
        con.execute("DELETE FROM sessions WHERE updated_at < ?", (horizon,))
        con.execute("DELETE FROM actors WHERE last_ts < ?", (horizon,))
        return True

    def apply(self, events: Sequence[LiveEvent]) -> ApplyResult:
        con = self._con
        with self._lock:
            con.execute("BEGIN IMMEDIATE")
            try:
                by_id = {e.event_id: e for e in events}
                # one query each for the batch's ids and named sessions, not one per event
                seen = {
                    r[0] for r in _select_in(con, "event_id", "seen_events", "event_id", [*by_id])
                }
                named = {e.session_id for e in events if e.session_id is not None}
                rows = dict(
                    _select_in(con, "session_id, state", "sessions", "session_id", [*named])
                )
                pending: dict[str, float] = {}

                def mark(event_id: str) -> bool:
                    if event_id in seen or event_id in pending:
                        return False
                    pending[event_id] = by_id[event_id].ts
                    return True

                def load(sid: str) -> SessionState | None:
                    if sid in rows:
                        return state_from_json(rows[sid])
                    if sid in named:  # not stored yet
                        return None
                    row = con.execute(  # a derived session: known only once folded
                        "SELECT state FROM sessions WHERE session_id = ?", (sid,)
                    ).fetchone()
                    return state_from_json(row[0]) if row else None

                def actor_session(actor: str) -> tuple[str, float] | None:
                    row = con.execute(
                        "SELECT session_id, last_ts FROM actors WHERE actor = ?", (actor,)
                    ).fetchone()
                    return (row[0], row[1]) if row else None

                result, states, actors = fold(
                    events,
                    load,
                    mark,
                    actor_session,
                    self.cfg,
                    self.gap_s,
                    self._horizon(self._newest),
                )
                con.executemany("INSERT INTO seen_events VALUES (?, ?)", pending.items())
                con.executemany(
                    "INSERT INTO actors VALUES (?, ?, ?) ON CONFLICT (actor) DO UPDATE "
                    "SET session_id = excluded.session_id, last_ts = excluded.last_ts",
                    [(a, sid, ts) for a, (sid, ts) in actors.items()],
                )
                con.executemany(
                    "INSERT INTO sessions VALUES (?, ?, ?) ON CONFLICT (session_id) DO UPDATE "
                    "SET state = excluded.state, updated_at = excluded.updated_at",
                    [(sid, state_to_json(s), s.last_event_at) for sid, s in live_states(states)],
                )
                accepted = set(result.accepted)
                newest = max([self._newest, *(e.ts for e in events if e.event_id in accepted)])
                pruned = self._prune(con, newest)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            self._newest = newest
            if pruned:
                self._pruned_at = newest
        return result

    def get(self, session_id: str) -> SessionState | None:
        with self._lock:
            row = self._con.execute(
                "SELECT state FROM sessions WHERE session_id = ?", (session_id,)
            ).fetchone()
        return state_from_json(row[0]) if row else None

    def close(self) -> None:
        """Close once no call is running: closing a connection another thread is executing
        on crashes the interpreter (reads now run on the engine's pool)."""
        with contextlib.suppress(sqlite3.ProgrammingError):  # already closed
            self._con.interrupt()
        with self._lock:
            self._con.close()


# Host parameters per query: SQLite's limit is 32766 since 3.32, 999 before.
_IN_CHUNK = 900


def _select_in(
    con: sqlite3.Connection, columns: str, table: str, key: str, values: Sequence[str]
) -> list[tuple]:
    """`SELECT columns FROM table WHERE key IN values`, in chunks of `_IN_CHUNK`."""
    rows: list[tuple] = []
    for i in range(0, len(values), _IN_CHUNK):
        chunk = values[i : i + _IN_CHUNK]
        marks = ",".join("?" * len(chunk))
        rows += con.execute(f"SELECT {columns} FROM {table} WHERE {key} IN ({marks})", chunk)
    return rows


def live_states(states: dict[str, SessionState]) -> Iterable[tuple[str, SessionState]]:
    """The states that folded at least one event (the ones worth storing)."""
    return ((sid, s) for sid, s in states.items() if not math.isnan(s.last_event_at))
