"""The event stream: canonical, valid, ordered, and shaped like an onboarding funnel."""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from datetime import timedelta

import pyarrow.compute as pc
from sim_helpers import Configs, epoch_seconds

from features.events import EVENT_SCHEMA, Event, EventType


def test_schema_ids_and_sample_rows_are_valid(small_run) -> None:
    events = small_run.events
    assert events.schema.equals(EVENT_SCHEMA)
    assert events.num_rows > 5_000
    assert pc.count_distinct(events["event_id"]).as_py() == events.num_rows
    # every 37th row plus every row of a rare type, through the single-event model
    rows = events.to_pylist()
    by_type: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_type[row["type"]].append(row)
    sample = rows[::37] + [r for t, rs in by_type.items() if len(rs) < 500 for r in rs]
    for row in sample:
        Event.model_validate(row)
    # the onboarding simulator has no shop: add_to_cart comes only from real e-commerce data;
    # key events only from the assistive persona, off in the reference world
    assert {str(t) for t in EventType} - set(by_type) <= {
        "identify",
        "trigger_shown",
        "trigger_outcome",
        "add_to_cart",
        "key",
    }


def test_values_and_targets(cfgs: Configs, small_run) -> None:
    events = small_run.events
    scroll = events.filter(pc.equal(events["type"], "scroll"))
    assert pc.min(scroll["value"]).as_py() >= 0 and pc.max(scroll["value"]).as_py() <= 100
    others = events.filter(pc.not_equal(events["type"], "scroll"))
    assert pc.min(others["value"]).as_py() >= 0
    clicks = events.filter(pc.equal(events["type"], "click"))
    assert cfgs.sim.cta_target in set(clicks["target"].to_pylist())
    assert cfgs.sim.cta_target in cfgs.signals.primary_targets
    hovers = events.filter(pc.equal(events["type"], "hover"))
    assert cfgs.sim.help_target in set(hovers["target"].to_pylist())
    assert cfgs.sim.help_target in cfgs.signals.help_targets


def _sessions(events):
    ordered = events.sort_by(
        [("session_id", "ascending"), ("ts", "ascending"), ("event_id", "ascending")]
    )
    out: dict[str, list[tuple[float, str, str | None, str]]] = defaultdict(list)
    ts = epoch_seconds(ordered["ts"])
    for at, sid, etype, step, eid in zip(
        ts,
        ordered["session_id"].to_pylist(),
        ordered["type"].to_pylist(),
        ordered["step"].to_pylist(),
        ordered["event_id"].to_pylist(),
        strict=True,
    ):
        out[sid].append((at, etype, step, eid))
    return out


def test_sessions_are_ordered_and_well_formed(cfgs: Configs, small_run) -> None:
    steps = cfgs.funnel.steps
    for sid, evs in _sessions(small_run.events).items():
        # event ids sort like time within a session (the replay's tie-break)
        assert [e[3] for e in evs] == sorted(e[3] for e in evs), sid
        assert evs[0][1] == "view", sid
        assert evs[-1][1] in ("exit", "goal"), sid
        assert sum(e[1] in ("exit", "goal") for e in evs) == 1, sid
        completed = [steps.index(e[2]) for e in evs if e[1] == "step_complete"]
        assert completed == sorted(completed) and len(set(completed)) == len(completed), sid
        if evs[-1][1] == "goal":
            assert completed and completed[-1] == len(steps) - 1, sid


def test_users_come_back_on_later_days_and_resume(cfgs: Configs, small_run) -> None:
    steps = cfgs.funnel.steps
    sessions = _sessions(small_run.events)
    by_user: dict[str, list[str]] = defaultdict(list)
    for sid in sessions:
        by_user[sid.rsplit("-", 1)[0]].append(sid)
    resumed = 0
    for sids in by_user.values():
        sids.sort(key=lambda s: int(s.rsplit("-", 1)[1]))
        for before, after in itertools.pairwise(sids):
            done = [steps.index(e[2]) for e in sessions[before] if e[1] == "step_complete"]
            first_step = steps.index(sessions[after][0][2])
            expected = max(done) + 1 if done else first_step
            assert first_step >= expected, (before, after)
            assert sessions[after][0][0] > sessions[before][-1][0]
            resumed += 1
    assert resumed > 40
    users = small_run.users
    assert pc.max(users["sessions"]).as_py() >= 3
    days_apart = [
        sessions[s[1]][0][0] - sessions[s[0]][-1][0] for s in by_user.values() if len(s) > 1
    ]
    assert max(days_apart) > timedelta(days=2).total_seconds()


def test_events_stay_in_the_period(small_run) -> None:
    ts = small_run.events["ts"]
    assert pc.min(ts).as_py() >= small_run.start
    # sessions start before the end and run on for minutes at most
    assert pc.max(ts).as_py() <= small_run.end + timedelta(hours=2)


def test_exit_intent_precedes_most_abandonments_and_some_returns(small_run) -> None:
    leaving = returning = 0
    abandoned = 0
    for evs in _sessions(small_run.events).values():
        types = [e[1] for e in evs]
        if types[-1] == "exit":
            abandoned += 1
            leaving += "exit_intent" in types[-3:]
        returning += any(t == "exit_intent" for t in types[:-3])
    assert leaving / abandoned > 0.6
    assert returning > 20  # tab hidden during an off-task pause, then back


def test_trigger_events_carry_the_decision(capped_run) -> None:
    result, _policy = capped_run
    events = result.events
    shown = events.filter(pc.equal(events["type"], "trigger_shown")).to_pylist()
    outcomes = events.filter(pc.equal(events["type"], "trigger_outcome")).to_pylist()
    assert len(shown) > 50 and len(shown) == len(outcomes)
    answer = {json.loads(o["props"])["decision_id"]: o for o in outcomes}
    for s in shown:
        props = json.loads(s["props"])
        assert set(props) == {"decision_id", "moment", "arm"} and props["arm"] == "test"
        o = answer[props["decision_id"]]
        assert o["target"] in ("accepted", "dismissed")
        assert o["ts"] > s["ts"] and o["session_id"] == s["session_id"]
    targets = {s["target"] for s in shown}
    assert targets <= {
        "tooltip",
        "walkthrough",
        "micro_video",
        "guide",
        "contextual_tip",
        "live_chat",
    }
