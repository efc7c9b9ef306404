"""The efficacy report's numbers on a hand-made decision log whose answers are known."""

from __future__ import annotations

import math

import pytest
from loop_helpers import T0, completion_events, decision_row, log_of

from features.pipeline.labels import completion_events as completions_of
from loop.efficacy import efficacy, labelled_decisions
from loop.stats import (
    minimum_detectable_effect,
    newcombe_difference,
    two_proportion_ztest,
    wilson,
)

HORIZON = 1800.0
CONTROL, EARLY = "earlier_pause_tip=control", "earlier_pause_tip=pause_10s"


@pytest.fixture(scope="module")
def known():
    """40 held-out users (20 complete), 60 treated users in two arms (20/30 and 25/30
    complete; one more completes after the horizon), half of the treated accept; one capped
    rules decision that completes; one decision censored at the end of the data."""
    rows, outcomes, done = [], [], []
    # onboarding goal: 10 of 40 held-out users, 30 of the 62 others
    goals = [(f"h{i}", T0 + 5000) for i in range(10)] + [(f"t{i}", T0 + 5000) for i in range(30)]
    for i in range(40):
        ts = T0 + 60 * i
        rows.append(
            decision_row(f"h{i}", f"h{i}", ts, action="none", would="contextual_tip", holdout=True)
        )
        if i < 20:
            done.append((f"h{i}", ts + 600))
    for i in range(60):
        ts = T0 + 60 * i + 5
        rows.append(decision_row(f"t{i}", f"t{i}", ts, arm=CONTROL if i < 30 else EARLY))
        if i < 30:
            outcomes.append((f"t{i}", "accepted", ts + 3))
        if i < 20 or 30 <= i < 55:
            done.append((f"t{i}", ts + 600))
        if i == 55:
            done.append((f"t{i}", ts + HORIZON + 600))  # too late: not completed
    rows.append(
        decision_row(
            "c0",
            "c0",
            T0 + 10,
            action="none",
            would="contextual_tip",
            capped=True,
            cap_reason="daily",
            source="rules",
        )
    )
    done.append(("c0", T0 + 100))
    end = T0 + 86_400
    done.append(("late", end))  # the last event: defines the end of the data
    rows.append(decision_row("z0", "z0", end - 300))  # horizon past the data, no completion
    log = log_of(rows, outcomes)
    frame = labelled_decisions(
        log.decisions(),
        log.outcomes(),
        completions_of(completion_events(done, goals=goals)),
        horizon_s=HORIZON,
        data_end=end,
    )
    from loop_helpers import loop_config

    cfg = loop_config().report
    return frame, efficacy(frame, cfg), cfg


def test_labels_follow_the_horizon_and_censoring(known) -> None:
    frame, _, _ = known
    by = frame.set_index("decision_id")["completed"]
    assert by["h0"] == 1 and by["h25"] == 0
    assert by["t55"] == 0  # completed 40 min later: outside the 30 min horizon
    assert by["c0"] == 1
    assert math.isnan(by["z0"])  # censored, never guessed


def test_overall_rates_lift_and_caps(known) -> None:
    _, eff, _ = known
    o = eff.overall
    assert (o.decisions, o.users, o.shown, o.capped, o.censored) == (102, 102, 61, 1, 1)
    assert o.trigger_rate.value == pytest.approx(61 / 62)
    assert o.acceptance.value == pytest.approx(30 / 61)
    assert o.completion.value == pytest.approx(46 / 61)
    assert o.holdout_completion.value == pytest.approx(20 / 40)
    assert o.completion == wilson(46, 61, 0.95)
    assert o.lift.value == pytest.approx(46 / 61 - 0.5)
    assert o.lift.lo < o.lift.value < o.lift.hi
    assert o.lift.excludes(0.0)
    caps = eff.caps.set_index("cap")["triggers"].to_dict()
    assert caps == {"shown (not capped)": 61, "daily": 1}


def test_segments_by_arm_and_version(known) -> None:
    _, eff, _ = known
    arms = {r.value: r for r in eff.tables["arm"]}
    assert set(arms) == {"(none)", CONTROL, EARLY, "all"}
    assert arms[CONTROL].completion.value == pytest.approx(20 / 30)
    assert arms[EARLY].completion.value == pytest.approx(25 / 30)
    assert arms[CONTROL].holdout_completion.value == pytest.approx(0.5)  # vs the whole holdout
    versions = {r.value: r for r in eff.tables["version"]}
    assert versions["rules"].decisions == 1 and versions["rules"].capped == 1
    assert versions["3"].shown == 61
    # segments too small for a lift get none (min_decisions), never a guess
    assert math.isnan(versions["rules"].lift.value)


def test_experiment_analysis_known_answer(known) -> None:
    _, eff, cfg = known
    [arm] = eff.experiments
    assert (arm.experiment, arm.arm, arm.control) == ("earlier_pause_tip", "pause_10s", "control")
    assert (arm.users, arm.control_users) == (30, 30)
    ref = two_proportion_ztest(25, 30, 20, 30)
    assert arm.z == pytest.approx(ref.z) and arm.p_value == pytest.approx(ref.p_value)
    assert arm.difference.value == pytest.approx(25 / 30 - 20 / 30)
    assert arm.mde == pytest.approx(minimum_detectable_effect(30, 30, 2 / 3, cfg.alpha, cfg.power))
    assert arm.p_value > cfg.alpha  # 30 users per arm cannot tell 17 points apart


def test_lift_by_action_compares_like_with_like(known) -> None:
    """Held-out decisions are grouped by the action they would have got."""
    _, eff, _ = known
    rows = {r.value: r for r in eff.tables["would_action"]}
    assert set(rows) == {"contextual_tip", "all"}
    assert rows["contextual_tip"].holdout_completion.value == pytest.approx(0.5)


def test_user_level_onboarding_completion(known) -> None:
    _, eff, cfg = known
    u = eff.users
    assert (u.users, u.holdout_users) == (62, 40)
    assert u.completion.value == pytest.approx(30 / 62)
    assert u.holdout_completion.value == pytest.approx(10 / 40)
    assert u.difference == newcombe_difference(30, 62, 10, 40, cfg.confidence)
    assert u.difference.excludes(0.0)
