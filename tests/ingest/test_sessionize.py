"""Sessions derived by inactivity: the gap boundary, actors, determinism, given ids."""

from __future__ import annotations

import pyarrow as pa
from ingest_factory import NOW, T0, event, typed

from features.ingest.sessionize import SESSION_PREFIX, derive_sessions, session_key
from features.ingest.validate import validate_events

GAP_S = 30 * 60


def _sessions(table: pa.Table) -> dict[str, str]:
    return dict(zip(table["event_id"].to_pylist(), table["session_id"].to_pylist(), strict=True))


def test_gap_boundary_exactly_the_gap_continues(events_cfg) -> None:
    assert events_cfg.session_gap_minutes == 30
    rows = [
        event(1, 0),
        event(2, GAP_S),  # exactly 30 min after e1: same session
        event(3, 2 * GAP_S + 0.000001),  # 30 min + 1 us after e2: a new session
        event(4, 2 * GAP_S + 10),
    ]
    sessions = _sessions(validate_events(typed(rows), events_cfg, NOW).valid)
    assert sessions["e1"] == sessions["e2"]
    assert sessions["e3"] == sessions["e4"] != sessions["e1"]
    assert all(s.startswith(SESSION_PREFIX) for s in sessions.values())


def test_actors_are_separate_and_anonymous_ids_follow_their_user(events_cfg) -> None:
    rows = [
        event(1, 0, user_id=None, anonymous_id="dev-1"),  # before identification
        event(2, 60, user_id="u1", anonymous_id="dev-1"),  # identify: dev-1 is u1
        event(3, 120, user_id="u1"),
        event(4, 60, user_id="u2"),
        event(5, 70, user_id=None, anonymous_id="dev-9"),  # never identified
        event(6, 80, user_id=None, anonymous_id="u2"),  # a device id equal to a user id
    ]
    sessions = _sessions(validate_events(typed(rows), events_cfg, NOW).valid)
    assert sessions["e1"] == sessions["e2"] == sessions["e3"]
    assert len({sessions["e1"], sessions["e4"], sessions["e5"], sessions["e6"]}) == 4


def test_ids_are_deterministic_and_order_independent(events_cfg) -> None:
    rows = [event(i, i * 100, user_id=f"u{i % 3}") for i in range(12)]
    first = _sessions(validate_events(typed(rows), events_cfg, NOW).valid)
    again = _sessions(validate_events(typed(rows[::-1]), events_cfg, NOW).valid)
    assert first == again
    assert first["e0"] == session_key("u\x1fu0", int(T0.timestamp() * 1_000_000))


def test_given_session_ids_are_kept_and_not_counted(events_cfg) -> None:
    rows = [event(1, 0, session_id="app-s1"), event(2, 3 * GAP_S, session_id="app-s1"), event(3)]
    result = validate_events(typed(rows), events_cfg, NOW)
    sessions = _sessions(result.valid)
    assert sessions["e1"] == sessions["e2"] == "app-s1"  # the source owns its sessions
    assert sessions["e3"].startswith(SESSION_PREFIX)
    assert result.summary.sessions_derived == 1


def test_derive_sessions_counts_and_leaves_complete_tables_alone() -> None:
    full = typed([event(1, session_id="s"), event(2, session_id="t")])
    assert derive_sessions(full, 30) == (full, 0)
    gaps = [0, 10, 10 + 31 * 60, 10 + 62 * 60]
    table = typed([event(i, s) for i, s in enumerate(gaps)])
    filled, made = derive_sessions(table, 30)
    assert made == 3
    assert filled["session_id"].null_count == 0
    _, made_with_longer_gap = derive_sessions(table, 60)
    assert made_with_longer_gap == 1
