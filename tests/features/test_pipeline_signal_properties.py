"""Property tests of the session signals and the offline replay on random sessions."""

from __future__ import annotations

import math
import random

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st
from pipeline_factory import epoch, same_rows, session, table

from features.events import EventType
from features.pipeline.replay import replay_events, replay_session
from features.signals import (
    DERIVED_FIELDS,
    SIGNAL_SPECS,
    SIGNALS,
    SNAPSHOT_COUNTERS,
    SNAPSHOT_FIELDS,
    USER_DERIVED_FIELDS,
    Ev,
    Scope,
    SessionState,
    SignalKind,
    derive,
    derive_user,
    new_state,
    signal_range,
    snapshot,
    update,
)

STEPS = ["welcome", "profile", "identity_verification"]
TARGETS = [None, "cta", "link", "help", "faq", "field"]
TYPES = [t.value for t in EventType if t != EventType.IDENTIFY]
# Within a step visit these only grow (scroll_depth is the max depth of the screen); the
# session's counters only grow. Both lists come from the signal table.
VISIT_COUNTERS = tuple(
    s.name
    for s in SIGNALS
    if s.kind is SignalKind.COUNTER
    and s.scope is Scope.STEP
    and s.reset is not None
    and s.name != "scroll_velocity"  # the latest scroll's speed, not a running total
)
SESSION_COUNTERS = tuple(
    s.name for s in SIGNALS if s.kind is SignalKind.COUNTER and s.scope is Scope.SESSION
)


def test_the_table_names_every_stored_and_derived_signal(signals_cfg) -> None:
    state = new_state("s")
    assert set(SNAPSHOT_FIELDS) <= set(SessionState.__slots__)
    assert VISIT_COUNTERS and SESSION_COUNTERS
    assert set(derive(snapshot(state), 0.0, signals_cfg)) == set(DERIVED_FIELDS)
    assert set(derive_user(0.0, 0.0)) == set(USER_DERIVED_FIELDS)
    assert len(SIGNAL_SPECS) == len(SIGNALS)  # names are unique


def _in_range(name: str, value: float) -> bool:
    low, high = signal_range(name)
    return math.isnan(value) or low <= value <= high


@st.composite
def sessions(draw, max_events: int = 40) -> list[tuple]:
    """Compact rows (seconds, type, step, target, value), non-decreasing times, ties included."""
    n = draw(st.integers(min_value=1, max_value=max_events))
    t = 0.0
    rows = []
    for _ in range(n):
        t += draw(st.sampled_from([0.0, 0.5, 1.0, 3.0, 8.0, 13.0, 31.0, 120.0]))
        etype = draw(st.sampled_from(TYPES))
        step = draw(st.sampled_from([*STEPS, None]))
        target = draw(st.sampled_from(TARGETS))
        if etype == EventType.SCROLL:
            value = draw(st.floats(min_value=0, max_value=100))
        else:
            value = draw(st.one_of(st.none(), st.floats(min_value=0, max_value=30)))
        rows.append((t, etype, step, target, value))
    return rows


def as_evs(rows: list[tuple]) -> list[Ev]:
    return [Ev(epoch(s), e, step, target, value) for s, e, step, target, value in rows]


@settings(max_examples=60, deadline=None)
@given(rows=sessions())
def test_entering_a_step_resets_what_the_table_says(signals_cfg, rows) -> None:
    state = new_state("s")
    for ev in as_evs(rows):
        update(state, ev, signals_cfg)
    before = snapshot(state)
    # a step_complete on another step enters it and folds nothing else
    update(state, Ev(rows[-1][0] + 1.0, EventType.STEP_COMPLETE, "elsewhere"), signals_cfg)
    after = snapshot(state)
    for spec in SIGNALS:
        if spec.kind is not SignalKind.COUNTER:
            continue
        if spec.scope is Scope.STEP and spec.reset is not None:
            assert after[spec.name] == spec.reset, spec.name
        elif spec.scope is Scope.SESSION and spec.name not in ("events", "steps_completed"):
            assert after[spec.name] == before[spec.name], spec.name


@settings(max_examples=150, deadline=None)
@given(rows=sessions())
def test_state_invariants_hold_after_every_event(signals_cfg, rows) -> None:
    state = new_state("s")
    before = snapshot(state)
    visit = (state.step, state.step_visits)
    for ev in as_evs(rows):
        update(state, ev, signals_cfg)
        snap = snapshot(state)
        assert 0.0 <= snap["scroll_depth"] <= 100.0
        for name in SNAPSHOT_COUNTERS:
            assert _in_range(name, snap[name]), name
        assert snap["max_pause_s"] >= 0.0 and snap["help_hover_s"] >= 0.0
        assert math.isnan(state.last_gap_s) or state.last_gap_s >= 0.0
        for name in SESSION_COUNTERS:
            assert snap[name] >= before[name], name
        if (state.step, state.step_visits) == visit:
            for name in VISIT_COUNTERS:
                assert snap[name] >= before[name], name
        visit = (state.step, state.step_visits)
        for lag in (0.0, 5.0, 40.0):
            signals = derive(snap, ev.ts + lag, signals_cfg, step_typical_pause_s=2.0)
            for name in ("pause_s", "time_on_step_s", "session_duration_s"):
                assert math.isnan(signals[name]) or signals[name] >= 0.0, name
            rate = signals["click_rate"]
            assert math.isnan(rate) or 0.0 <= rate <= 1.0
            for name, value in signals.items():
                assert _in_range(name, value), name
        before = snap


@settings(max_examples=150, deadline=None)
@given(rows=sessions())
def test_decision_points_are_well_formed(signals_cfg, rows) -> None:
    events = as_evs(rows)
    r = replay_session("s", events, signals_cfg)
    times = [at for at, _ in r.snapshots]
    assert len(times) == len(set(times))  # one stored state per instant
    stored = dict(r.snapshots)
    episodes = [(m.type, m.episode, m.ts) for m in r.moments]
    assert len(episodes) == len(set(episodes))  # no decision point twice
    for m in r.moments:
        assert m.ts >= events[0].ts and m.step is not None
        assert m.ts in stored
        # the state stored for a decision holds every event up to that instant, no later one
        assert stored[m.ts]["events"] == sum(1 for ev in events if ev.ts <= m.ts)


@settings(max_examples=60, deadline=None)
@given(rows=sessions(max_events=25), seed=st.integers(min_value=0, max_value=2**16))
def test_arrival_order_does_not_matter_once_sorted(signals_cfg, rows, seed) -> None:
    events = table(session("s1", rows), session("s2", rows[::2] or rows, user_id="u2"))
    order = list(range(events.num_rows))
    random.Random(seed).shuffle(order)
    shuffled = events.take(pa.array(order))
    a = replay_events(events, signals_cfg)
    b = replay_events(shuffled, signals_cfg)
    for name in ("decisions", "snapshots", "visits", "gaps"):
        assert same_rows(getattr(a, name), getattr(b, name)), name
