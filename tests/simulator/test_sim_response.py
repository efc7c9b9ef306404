"""The intervention response model (property tests): help needs a need, a match and a
welcome; every earlier trigger today makes the next one less welcome and costlier."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sim_helpers import Configs

from core.vocabulary import ActionType
from features.simulator.config import Need
from features.simulator.randomness import Purpose, UserStreams
from features.simulator.response import respond

CFG = Configs.load().sim.response
SHOWN = [a for a in ActionType if a != ActionType.NONE]

actions = st.sampled_from(SHOWN)
needs = st.sampled_from(list(Need))
seeds = st.integers(min_value=0, max_value=2**32 - 1)
unit = st.floats(min_value=0, max_value=1)


def _respond(seed: int, **kwargs):
    rng = UserStreams(seed, 0).stream(Purpose.RESPONSE)
    return respond(CFG, rng=rng, **kwargs)


@settings(max_examples=200, deadline=None)
@given(seeds, actions, needs, st.booleans(), unit, st.floats(0, 3), st.integers(0, 6))
def test_fatigue_never_makes_a_trigger_cheaper_or_more_helpful(
    seed, action, need, mistimed, receptivity, annoyance, shown_today
) -> None:
    kwargs = dict(
        action=action, need=need, mistimed=mistimed, receptivity=receptivity, annoyance=annoyance
    )
    now = _respond(seed, shown_today=shown_today, **kwargs)
    later = _respond(seed, shown_today=shown_today + 1, **kwargs)
    assert later.cost >= now.cost
    assert not (later.helped and not now.helped)
    assert not (later.accepted and not now.accepted)


@settings(max_examples=200, deadline=None)
@given(seeds, actions, needs, st.booleans(), unit, st.floats(0, 3), st.integers(0, 6))
def test_help_needs_a_need_and_acceptance(
    seed, action, need, mistimed, receptivity, annoyance, shown_today
) -> None:
    r = _respond(
        seed,
        action=action,
        need=need,
        mistimed=mistimed,
        receptivity=receptivity,
        annoyance=annoyance,
        shown_today=shown_today,
    )
    if r.helped:
        assert need != Need.NONE and r.accepted and r.cost == 0
    else:
        assert r.cost >= 0
    if need == Need.NONE:
        assert not r.helped and r.cost == pytest.approx(
            CFG.intrusiveness[action] * annoyance * (1 + CFG.fatigue * shown_today)
        )
    assert r.reaction_s > 0


@settings(max_examples=100, deadline=None)
@given(seeds, actions, needs, unit, st.integers(0, 4))
def test_mistimed_help_never_helps_more(seed, action, need, receptivity, shown_today) -> None:
    kwargs = dict(action=action, need=need, receptivity=receptivity, annoyance=1.0)
    timely = _respond(seed, mistimed=False, shown_today=shown_today, **kwargs)
    late = _respond(seed, mistimed=True, shown_today=shown_today, **kwargs)
    assert not (late.helped and not timely.helped)


@pytest.mark.parametrize(
    ("need", "matched", "mismatched"),
    [
        (Need.FORM, ActionType.TOOLTIP, ActionType.WALKTHROUGH),
        (Need.LOST, ActionType.WALKTHROUGH, ActionType.TOOLTIP),
        (Need.DOUBT, ActionType.LIVE_CHAT, ActionType.WALKTHROUGH),
    ],
)
def test_matched_actions_help_far_more_often(need, matched, mismatched) -> None:
    def rate(action: ActionType) -> float:
        return (
            sum(
                _respond(
                    s,
                    action=action,
                    need=need,
                    mistimed=False,
                    receptivity=0.8,
                    annoyance=1.0,
                    shown_today=0,
                ).helped
                for s in range(2_000)
            )
            / 2_000
        )

    assert rate(matched) > rate(mismatched) + 0.4


def test_none_is_not_a_response() -> None:
    with pytest.raises(ValueError, match="NONE"):
        _respond(
            1,
            action=ActionType.NONE,
            need=Need.FORM,
            mistimed=False,
            receptivity=1,
            annoyance=1,
            shown_today=0,
        )
