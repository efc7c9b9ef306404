"""Offline replay on hand-made sessions: which decision points each detector yields."""

from __future__ import annotations

import math

import pyarrow.compute as pc
import pytest
from pipeline_factory import epoch, evs, same_rows, session, table

from core.vocabulary import MomentType
from features.pipeline.replay import replay_events, replay_session

PAUSE = MomentType.PAUSE


def moments(rows, cfg):
    """(type, seconds after T0) of every decision point of one session."""
    r = replay_session("s", evs(rows), cfg)
    return [(m.type, round(m.ts - epoch(0), 3)) for m in r.moments]


def test_pause_checkpoints_between_events_and_after_the_last(signals_cfg) -> None:
    rows = [(0, "view", "profile"), (40, "click", "profile", "link"), (60, "scroll", "profile")]
    # 0 -> 40: both checkpoints (12, 30); 40 -> 60: only 12 (52); idle after 60: 72 and 90
    assert moments(rows, signals_cfg) == [
        (PAUSE, 12),
        (PAUSE, 30),
        (PAUSE, 52),
        (PAUSE, 72),
        (PAUSE, 90),
    ]


def test_no_pause_after_exit_or_on_a_completed_step(signals_cfg) -> None:
    ended = [(0, "view", "profile"), (5, "click", "profile", "link"), (6, "exit", "profile")]
    assert moments(ended, signals_cfg) == []
    done = [(0, "view", "profile"), (1, "step_complete", "profile"), (100, "view", "funding")]
    # the 99 s between completing profile and the next screen is no pause; funding idles after
    assert moments(done, signals_cfg) == [(PAUSE, 112), (PAUSE, 130)]


def test_system_events_inside_a_gap_do_not_repeat_checkpoints(signals_cfg) -> None:
    rows = [
        (0, "view", "profile"),
        (12.05, "trigger_shown", "profile", "contextual_tip"),
        (20, "trigger_outcome", "profile", "dismissed"),
        (45, "click", "profile", "link"),
        (46, "exit", "profile"),
    ]
    r = replay_session("s", evs(rows), signals_cfg)
    assert [(m.type, round(m.ts - epoch(0), 3)) for m in r.moments] == [(PAUSE, 12), (PAUSE, 30)]
    assert len({m.episode for m in r.moments}) == 1  # one pause episode, two checkpoints


def test_cta_fail_fires_once_per_step_visit(signals_cfg) -> None:
    fail = ("cta_fail", "profile", "cta")
    rows = [(0, "view", "profile"), (1, *fail), (2, *fail), (3, *fail), (4, *fail)]
    rows += [(5, "view", "welcome"), (6, "view", "profile"), (7, *fail), (8, *fail), (9, *fail)]
    r = replay_session("s", evs(rows), signals_cfg)
    fails = [m for m in r.moments if m.type == MomentType.CTA_FAIL]
    assert [round(m.ts - epoch(0)) for m in fails] == [3, 9]
    assert [m.episode for m in fails] == ["cta_fail@profile#1", "cta_fail@profile#2"]


@pytest.mark.parametrize(("depth", "expected"), [(20.0, 1), (60.0, 0)])
def test_shallow_scroll_before_exit_intent(signals_cfg, depth, expected) -> None:
    rows = [
        (0, "view", "profile"),
        (2, "scroll", "profile", None, depth),
        (3, "exit_intent", "profile"),
    ]
    found = [t for t, _ in moments(rows, signals_cfg) if t == MomentType.SHALLOW_SCROLL]
    assert len(found) == expected


def test_low_click_rate_once_enough_interactions(signals_cfg) -> None:
    rows = [(0, "view", "profile"), (1, "click", "profile", "cta")]
    rows += [(2 + i, "scroll", "profile", None, 10.0 * i) for i in range(6)]  # 8 interactions
    found = [s for t, s in moments(rows, signals_cfg) if t == MomentType.LOW_CLICK_RATE]
    assert found == [7]  # 1 click / 8 interactions < 20 %, first reached at the 8th


def test_backtrack_only_when_rapid(signals_cfg) -> None:
    rapid = [(0, "view", "profile"), (2, "back", "profile"), (3, "view", "welcome")]
    slow = [(0, "view", "profile"), (2, "scroll", "profile", None, 90.0), (9, "back", "profile")]
    assert (MomentType.BACKTRACK, 2) in moments(rapid, signals_cfg)
    assert all(t != MomentType.BACKTRACK for t, _ in moments(slow, signals_cfg))


def test_help_hover_accumulates_on_help_targets(signals_cfg) -> None:
    rows = [
        (0, "view", "profile"),
        (1, "hover", "profile", "link", 5.0),  # not a help target
        (2, "hover", "profile", "help", 2.0),
        (3, "hover", "profile", "faq", 1.5),  # 3.5 s of help hover: fires here
        (4, "hover", "profile", "help", 4.0),  # once per visit
    ]
    found = [s for t, s in moments(rows, signals_cfg) if t == MomentType.HELP_HOVER]
    assert found == [3]


def test_no_event_moments_on_a_completed_step(signals_cfg) -> None:
    fail = ("cta_fail", "profile", "cta")
    rows = [
        (0, "view", "profile"),
        (1, "step_complete", "profile"),
        (2, *fail),
        (3, *fail),
        (4, *fail),
    ]
    assert moments(rows, signals_cfg) == []


def test_snapshot_at_a_decision_includes_every_event_of_that_instant(signals_cfg) -> None:
    fail = ("cta_fail", "profile", "cta")
    rows = [
        (0, "view", "profile"),
        (1, *fail),
        (2, *fail),
        (3, *fail),
        (3, "field_error", "profile"),
    ]
    r = replay_session("s", evs(rows), signals_cfg)
    assert r.moments[0].type == MomentType.CTA_FAIL
    snaps = dict(r.snapshots)
    row = snaps[epoch(3)]
    assert row["cta_fails"] == 3 and row["field_errors"] == 1 and row["events"] == 5
    # one row per decision time plus the last state: times are unique
    assert len(snaps) == len(r.snapshots)


def test_visits_and_gaps_come_from_the_state_machine(signals_cfg) -> None:
    rows = [
        (0, "view", "welcome"),
        (3, "click", "welcome", "cta"),
        (4, "step_complete", "welcome"),
        (10, "view", "profile"),
        (25, "scroll", "profile", None, 30.0),
        (26, "exit", "profile"),
    ]
    r = replay_session("s", evs(rows), signals_cfg)
    assert [(step, visit, done) for step, visit, _, _, done in r.visits] == [
        ("welcome", 1, True),
        ("profile", 1, False),
    ]
    assert [round(left - entered) for _, _, entered, left, _ in r.visits] == [10, 16]
    # gaps close on interactions within one visit: 0->3 and 10->25 (exit is no interaction)
    assert [(step, gap) for step, _, gap in r.gaps] == [("welcome", 3.0), ("profile", 15.0)]


def test_table_replay_matches_session_replay(signals_cfg) -> None:
    a = [(0, "view", "profile"), (40, "click", "profile", "link")]
    b = [(0, "view", "welcome"), (1, "back", "welcome"), (2, "exit", "welcome")]
    events = table(session("a", a), session("b", b, user_id="u2"))
    out = replay_events(events, signals_cfg)
    assert out.sessions == 2 and out.events == 5
    per_session = {
        sid: [m.ts for m in replay_session(sid, evs(rows), signals_cfg).moments]
        for sid, rows in (("a", a), ("b", b))
    }
    for sid, times in per_session.items():
        mine = out.decisions.filter(pc.equal(out.decisions["session_id"], sid))
        assert mine.column("request_ts").to_pylist() == times
    assert not any(math.isnan(v) for v in out.snapshots.column("events").to_pylist())


def test_two_processes_give_the_same_tables(signals_cfg, quiet_sim) -> None:
    one = replay_events(quiet_sim.events, signals_cfg, workers=1, chunk_events=2_000)
    two = replay_events(quiet_sim.events, signals_cfg, workers=2, chunk_events=2_000)
    assert one.decisions.num_rows > 100
    for name in ("decisions", "snapshots", "visits", "gaps"):
        assert same_rows(getattr(one, name), getattr(two, name)), name
