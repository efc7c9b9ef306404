"""Live session state: the same fold as offline replay, dedup, late events, derived sessions."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

import pytest

from features.ingest.sessionize import session_key
from features.signals import replay, snapshot
from serving.sessions import (
    LiveEvent,
    MemorySessionStore,
    SqliteSessionStore,
    state_from_json,
    state_to_json,
)
from serving.sessions_redis import RedisSessionStore

GAP_S = 1800.0


def ev(event_id, ts, type_, step="welcome", target=None, value=None, session="s1", user="u1"):
    return LiveEvent(event_id, session, user, None, ts, type_, step, target, value)


EVENTS = [
    ev("e1", 100.0, "view"),
    ev("e2", 102.0, "click", target="faq"),
    ev("e3", 104.0, "scroll", value=35.0),
    ev("e4", 109.0, "cta_fail", target="cta"),
    ev("e5", 130.0, "view", step="profile"),
    ev("e6", 131.0, "hover", step="profile", target="help", value=4.0),
]


def _factory(kind: str, request, tmp_path: Path, signals_cfg):
    """A store of `kind`; calling the result again reopens the same state (a restart)."""
    if kind == "redis":
        url, prefix = request.getfixturevalue("redis_url"), request.getfixturevalue("redis_prefix")

    def make():
        if kind == "memory":
            return MemorySessionStore(signals_cfg, GAP_S)
        if kind == "redis":
            return RedisSessionStore(url, prefix, signals_cfg, GAP_S)
        return SqliteSessionStore(tmp_path / "sessions.db", signals_cfg, GAP_S)

    return make


REDIS = pytest.param("redis", marks=pytest.mark.redis)


@pytest.fixture(params=["memory", "sqlite", REDIS])
def make_store(request, tmp_path: Path, signals_cfg):
    return _factory(request.param, request, tmp_path, signals_cfg)


@pytest.fixture(params=["sqlite", REDIS])
def make_durable(request, tmp_path: Path, signals_cfg):
    """The stores whose state outlives the process."""
    return _factory(request.param, request, tmp_path, signals_cfg)


def test_live_state_equals_offline_replay(make_store, signals_cfg) -> None:
    store = make_store()
    result = store.apply(list(reversed(EVENTS[:3])))  # order inside a batch does not matter
    assert result.accepted == ["e1", "e2", "e3"]
    store.apply(EVENTS[3:])
    offline = replay("s1", [e.ev() for e in EVENTS], signals_cfg, user_id="u1")
    live = store.get("s1")
    assert snapshot(live) == pytest.approx(snapshot(offline), nan_ok=True)
    assert live.user_id == "u1" and live.completed == offline.completed


def test_duplicates_and_late_events_are_reported_not_applied(make_store) -> None:
    store = make_store()
    store.apply(EVENTS[:4])
    before = snapshot(store.get("s1"))
    result = store.apply([EVENTS[1], ev("late", 101.0, "click", target="cta")])
    assert result.duplicates == ["e2"]
    assert [e.event_id for e in result.late] == ["late"]
    assert result.accepted == []
    assert snapshot(store.get("s1")) == pytest.approx(before, nan_ok=True)
    # the late event's id is taken: a retry is a duplicate, not a second quarantine
    assert store.apply([ev("late", 101.0, "click")]).duplicates == ["late"]


def test_touched_sessions_carry_their_snapshot(make_store) -> None:
    result = make_store().apply([*EVENTS[:2], ev("x1", 50.0, "view", session="s2")])
    assert set(result.touched) == {"s1", "s2"}
    snap, ts = result.touched["s1"]
    assert ts == 102.0 and snap["interactions"] == 2.0


def test_sessions_are_derived_by_inactivity(make_store) -> None:
    store = make_store()
    first = [ev("a1", 1000.0, "view", session=None), ev("a2", 1500.0, "click", session=None)]
    result = store.apply(first)
    sid = session_key("u1", 1000 * 1_000_000)
    assert set(result.touched) == {sid}
    # within the gap: same session; after it: a new one keyed by its first event
    same = store.apply([ev("a3", 1500.0 + GAP_S, "click", session=None)])
    assert set(same.touched) == {sid}
    later = 1500.0 + GAP_S + GAP_S + 1
    fresh = store.apply([ev("a4", later, "view", session=None)])
    assert set(fresh.touched) == {session_key("u1", round(later * 1_000_000))}


def test_state_survives_a_restart(make_durable) -> None:
    store = make_durable()
    store.apply(EVENTS[:3])
    store.close()
    reopened = make_durable()
    assert reopened.get("s1").interactions == 3  # view, click, scroll
    assert reopened.apply([EVENTS[0]]).duplicates == ["e1"]
    assert reopened.get("nope") is None
    reopened.close()


def test_state_json_round_trip(signals_cfg) -> None:
    state = replay("s1", [e.ev() for e in EVENTS], signals_cfg)
    state.fired.add("pause")
    back = state_from_json(state_to_json(state))
    assert back.completed == state.completed and back.fired == state.fired
    assert snapshot(back) == pytest.approx(snapshot(state), nan_ok=True)
    empty = state_from_json(state_to_json(replay("s", [], signals_cfg)))
    assert math.isnan(empty.started_at)


def test_state_json_keeps_nan_and_reads_states_written_by_json(signals_cfg) -> None:
    """orjson writes NaN as null: every float field must read it back as NaN, and a state
    stored before the switch (json's bare `NaN` tokens) must still load."""
    import json
    from dataclasses import asdict

    state = replay("s1", [e.ev() for e in EVENTS[:2]], signals_cfg)
    state.completed.add("welcome")
    assert math.isnan(state.last_gap_s) or math.isnan(state.last_scroll_at)
    back = state_from_json(state_to_json(state))
    old = {k: sorted(v) if isinstance(v, set) else v for k, v in asdict(state).items()}
    from_old = state_from_json(json.dumps(old))
    for loaded in (back, from_old):
        for name, value in asdict(state).items():
            got = getattr(loaded, name)
            if isinstance(value, float) and math.isnan(value):
                assert isinstance(got, float) and math.isnan(got), name
            else:
                assert got == value, name


def test_sqlite_batches_larger_than_one_query_dedup_and_load_every_session(
    tmp_path: Path, signals_cfg
) -> None:
    """The SQLite store reads a batch's seen ids and sessions in chunked IN queries."""
    n = 2500  # more ids and sessions than one chunk of host parameters
    batch = [ev(f"x{i}", 100.0 + i, "view", session=f"s{i % 1200}") for i in range(n)]
    store = SqliteSessionStore(tmp_path / "sessions.db", signals_cfg, GAP_S)
    assert len(store.apply(batch[:1500]).accepted) == 1500
    again = store.apply(batch)
    assert len(again.duplicates) == 1500 and len(again.accepted) == 1000
    assert store.get("s0").events == 3 and store.get("s1199").events == 2
    assert _rows(tmp_path / "sessions.db", "seen_events") == n
    store.close()


def _rows(path: Path, table: str) -> int:
    with sqlite3.connect(path) as con:
        return con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def test_retention_forgets_old_sessions_and_never_refolds_their_events(
    tmp_path: Path, signals_cfg
) -> None:
    """Bounded storage: ids, sessions and actors older than the retention go; an event that
    old comes back late (quarantined by the server), never folded into a fresh state."""
    retention = 10 * GAP_S
    path = tmp_path / "s.db"
    store = SqliteSessionStore(path, signals_cfg, GAP_S, retention_s=retention)
    store.apply(EVENTS[:3])
    store.apply([ev("x1", 200.0, "view", session=None, user="u9")])  # a derived session
    assert _rows(path, "seen_events") == 4 and _rows(path, "actors") == 1
    later = 200.0 + retention + 1  # every event above is now older than the retention
    store.apply([ev("n1", later, "view", session="s2", user="u2")])
    assert store.get("s1") is None  # forgotten with its ids and the derived actor
    assert _rows(path, "seen_events") == 1 and _rows(path, "actors") == 0
    replayed = store.apply([EVENTS[0], EVENTS[3]])  # e1 again, e4 never seen: both too old
    assert [e.event_id for e in replayed.late] == ["e1", "e4"]
    assert not replayed.accepted and store.get("s1") is None
    store.close()
    reopened = SqliteSessionStore(path, signals_cfg, GAP_S, retention_s=retention)
    assert [e.event_id for e in reopened.apply([EVENTS[1]]).late] == ["e2"]  # horizon kept
    fresh = reopened.apply([ev("n2", later + 5, "click", session="s2", user="u2")])
    assert fresh.accepted == ["n2"] and reopened.get("s2").interactions == 2


def test_retention_must_outlast_a_session_gap(tmp_path: Path, signals_cfg) -> None:
    with pytest.raises(ValueError, match="must exceed the inactivity gap"):
        SqliteSessionStore(tmp_path / "s.db", signals_cfg, GAP_S, retention_s=GAP_S / 2)
