"""Aggregates are point-in-time correct: a row at time t never depends on anything after t."""

from __future__ import annotations

import json
from datetime import timedelta

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pipeline_factory import T0, at, no_bots, session, table

from features.events import EVENT_SCHEMA
from features.pipeline.aggregates import STEP_STATS_SCHEMA, user_feature_names, user_stats_schema
from features.pipeline.build import build_tables

DAY = 86_400


def until(tab: pa.Table, bound) -> pa.Table:
    """Rows with event_timestamp <= bound, in a canonical order."""
    keys = [c for c in ("user_id", "step") if c in tab.column_names]
    rows = tab.filter(
        pc.less_equal(
            tab["event_timestamp"], pa.scalar(bound, tab.schema.field("event_timestamp").type)
        )
    )
    return rows.sort_by([(k, "ascending") for k in [*keys, "event_timestamp"]])


def assert_same(a: pa.Table, b: pa.Table) -> None:
    assert a.num_rows == b.num_rows
    for name in a.column_names:
        left, right = a[name].to_pylist(), b[name].to_pylist()
        assert left == right or all(
            x == y or (x != x and y != y) for x, y in zip(left, right, strict=True)
        ), name


@pytest.fixture(scope="module")
def full(quiet_sim, configs):
    events = quiet_sim.events
    return events, build_tables(events, no_bots(events), configs)


@settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(cut=st.floats(min_value=0.3, max_value=0.95))
def test_rows_up_to_t_are_the_same_when_the_data_stops_at_t(full, configs, cut) -> None:
    events, tables = full
    ts = events["ts"]
    lo, hi = pc.min(ts).value, pc.max(ts).value
    t = pa.scalar(int(lo + cut * (hi - lo)), ts.type)
    truncated = events.filter(pc.less_equal(ts, t))
    short = build_tables(truncated, no_bots(truncated), configs)
    bound = pc.max(truncated["ts"]).as_py()
    for name in ("user_stats", "step_stats"):
        early = until(getattr(tables, name), bound)
        assert early.num_rows > 0, name
        assert_same(early, until(getattr(short, name), bound))


def test_a_planted_session_changes_only_later_rows(full, configs) -> None:
    events, tables = full
    user = tables.user_stats["user_id"][0].as_py()
    first = pc.min(events["ts"]).as_py()
    planted_at = first + timedelta(days=2)
    rows = [(0, "view", "profile"), (3, "help_open", "profile", "help"), (9, "exit", "profile")]
    plant = table(session("planted", rows, user_id=user, base=planted_at))
    again = build_tables(
        pa.concat_tables([events, plant.cast(EVENT_SCHEMA)]),
        no_bots(pa.concat_tables([events, plant])),
        configs,
    )
    before = planted_at
    assert_same(until(tables.user_stats, before), until(again.user_stats, before))
    assert_same(until(tables.step_stats, before), until(again.step_stats, before))
    mine = again.user_stats.filter(pc.equal(again.user_stats["user_id"], user))
    after = mine.filter(
        pc.greater(
            mine["event_timestamp"], pa.scalar(before, mine.schema.field("event_timestamp").type)
        )
    )
    assert max(after["user_help_opens_30d"].to_pylist()) >= 1  # the plant does show up later


def test_step_stats_use_only_days_before_the_snapshot(configs) -> None:
    def visit(sid: str, day: int, seconds: float) -> list[dict]:
        rows = [
            (0, "view", "profile"),
            (seconds, "click", "profile", "link"),
            (seconds + 1, "exit", "profile"),
        ]
        return session(sid, rows, user_id=sid, base=T0 + timedelta(days=day))

    events = table(visit("d0", 0, 10), visit("d2", 2, 1000), visit("end", 30, 10))
    steps = build_tables(events, no_bots(events), configs).step_stats
    assert steps.schema == STEP_STATS_SCHEMA
    by_day = {
        ts.date(): (n, t)
        for ts, n, t in zip(
            steps["event_timestamp"].to_pylist(),
            steps["step_sessions"].to_pylist(),
            steps["step_typical_time_on_step_s"].to_pylist(),
            strict=True,
        )
    }
    d = lambda k: (T0 + timedelta(days=k)).date()  # noqa: E731
    assert by_day[d(1)] == (1, 11.0)  # day 0 only
    assert by_day[d(2)] == (1, 11.0)  # day 2 is not visible at its own midnight
    assert by_day[d(3)][0] == 2 and by_day[d(3)][1] == pytest.approx((11 + 1001) / 2)
    window = configs.aggregates.step_window_days
    assert by_day[d(window + 1)][0] == 1  # day 0 left the trailing window
    assert by_day[d(window + 3)][0] == 0 and by_day[d(window + 3)][1] is None
    assert max(by_day) <= d(30)  # never a snapshot after the data ends


def test_user_rows_at_session_end_and_when_it_leaves_each_window(configs) -> None:
    rows = [
        (0, "view", "welcome"),
        (2, "click", "welcome", "cta"),
        (3, "step_complete", "welcome"),
        (4, "view", "profile"),
        (10, "help_open", "profile", "help"),
        (11, "trigger_shown", "profile", "contextual_tip"),
        (12, "trigger_outcome", "profile", "accepted"),
        (20, "exit", "profile"),
    ]
    events = table(
        session("s1", rows, user_id="u", device="mobile"),
        session(
            "s2",
            [(0, "view", "welcome"), (1, "exit", "welcome")],
            user_id="u",
            device="desktop",
            base=T0 + timedelta(days=3),
        ),
        session("other", [(0, "view", "welcome")], user_id="z", base=T0 + timedelta(days=40)),
    )
    users = build_tables(events, no_bots(events), configs).user_stats
    assert users.schema == user_stats_schema(configs.aggregates)
    mine = users.filter(pc.equal(users["user_id"], "u")).to_pylist()
    gap = timedelta(minutes=configs.events.session_gap_minutes)
    end1, end2 = at(20) + gap, at(1, T0 + timedelta(days=3)) + gap
    times = [r["event_timestamp"] for r in mine]
    assert times == sorted(
        {
            end1,
            end1 + timedelta(days=1),
            end2,
            end2 + timedelta(days=1),
            end1 + timedelta(days=7),
            end2 + timedelta(days=7),
            end1 + timedelta(days=30),
            end2 + timedelta(days=30),
        }
    )
    first = mine[0]
    assert first["user_sessions_1d"] == 1 and first["user_steps_completed_1d"] == 1
    assert first["user_help_opens_7d"] == 1 and first["user_triggers_shown_7d"] == 1
    assert first["user_triggers_accepted_7d"] == 1 and first["user_abandonments_30d"] == 1
    assert first["user_furthest_step_30d"] == 1  # profile
    assert first["user_device"] == "mobile" and first["user_first_seen_at"] == at(0).timestamp()
    after_1d = mine[1]
    assert after_1d["user_sessions_1d"] == 0 and after_1d["user_sessions_7d"] == 1
    assert after_1d["user_furthest_step_1d"] == -1 and after_1d["user_typical_pause_s_1d"] is None
    second = mine[2]
    assert second["user_sessions_7d"] == 2 and second["user_device"] == "desktop"
    assert second["user_abandonments_7d"] == 2  # both ended on an incomplete step
    last = mine[-1]
    assert last["user_sessions_30d"] == 0
    assert set(user_feature_names(configs.aggregates)) <= set(users.column_names)
    assert json.dumps(sorted(users.column_names))  # plain names, nothing nested
