"""Step statistics of the data's first day: same-day fallback rows, flagged, point in time."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pyarrow.compute as pc
from hypothesis import given, settings
from hypothesis import strategies as st
from pipeline_factory import no_bots, session, table

from features.pipeline.aggregates import STEP_FALLBACK, STEP_STATS_SCHEMA
from features.pipeline.build import build_tables

DAY0 = datetime(2016, 2, 14, tzinfo=UTC)


def visit(sid: str, start_s: float, seconds: float = 10) -> list[dict]:
    rows = [(0, "view", "browse"), (seconds, "click", "browse", "link"), (seconds + 1, "exit")]
    return session(sid, rows, user_id=sid, base=DAY0 + timedelta(seconds=start_s))


def test_one_day_of_data_has_flagged_same_day_step_stats(configs) -> None:
    hour = 3600
    events = table(visit("a", 1 * hour), visit("b", 5 * hour, 100), visit("c", 9 * hour))
    steps = build_tables(events, no_bots(events), configs).step_stats
    assert steps.schema == STEP_STATS_SCHEMA
    assert steps.num_rows > 0  # the regular daily rows alone would be empty here
    assert set(steps[STEP_FALLBACK].to_pylist()) == {1}
    gap = configs.events.session_gap_minutes * 60
    every = configs.aggregates.step_fallback_every_minutes * 60
    rows = steps.to_pylist()
    for row in rows:
        at = (row["event_timestamp"] - DAY0).total_seconds()
        assert at % every == 0 and 0 < at < 86_400
        known = sum(
            start + s + 1 + gap < at for start, s in ((hour, 10), (5 * hour, 100), (9 * hour, 10))
        )
        assert row["step_sessions"] == known
    last = rows[-1]
    # a (11 s) and b (101 s); c is not known over before the data ends
    assert last["step_typical_time_on_step_s"] == 56.0


def test_second_day_uses_regular_rows_and_first_day_keeps_its_fallback(configs) -> None:
    events = table(visit("a", 3600), visit("b", 86_400 + 3600))
    steps = build_tables(events, no_bots(events), configs).step_stats
    flags = {
        ts: flag
        for ts, flag in zip(
            steps["event_timestamp"].to_pylist(), steps[STEP_FALLBACK].to_pylist(), strict=True
        )
    }
    assert flags[DAY0 + timedelta(days=1)] == 0  # the midnight row over day 0
    assert all(flag == 1 for ts, flag in flags.items() if ts < DAY0 + timedelta(days=1))
    assert all(flag == 0 for ts, flag in flags.items() if ts >= DAY0 + timedelta(days=1))


def test_fallback_rows_never_repeat_the_midnight_row(configs) -> None:
    for every in (60, 7 * 60, 24 * 60):
        aggregates = configs.aggregates.model_copy(update={"step_fallback_every_minutes": every})
        cfg = dataclasses.replace(configs, aggregates=aggregates)
        events = table(visit("a", 600), visit("b", 86_400 * 2))
        steps = build_tables(events, no_bots(events), cfg).step_stats  # checks unique keys
        fallback = steps.filter(pc.equal(steps[STEP_FALLBACK], 1))
        assert fallback.num_rows == -(-24 * 60 // every) - 1


@settings(max_examples=25, deadline=None)
@given(starts=st.lists(st.integers(0, 80_000), min_size=1, max_size=6, unique=True))
def test_each_fallback_row_counts_exactly_the_sessions_known_over_before_it(
    configs, starts
) -> None:
    events = table(*(visit(f"s{i}", start) for i, start in enumerate(starts)))
    steps = build_tables(events, no_bots(events), configs).step_stats
    gap = configs.events.session_gap_minutes * 60
    ends = [start + 11 + gap for start in starts]
    data_end = max(starts) + 11
    for row in steps.to_pylist():
        at = (row["event_timestamp"] - DAY0).total_seconds()
        assert at <= data_end  # never a row after the data
        day0_ends = [e for e in ends if e < 86_400 and e <= data_end]
        if row[STEP_FALLBACK]:
            assert row["step_sessions"] == sum(e < at for e in day0_ends)
