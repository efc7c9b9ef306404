"""Step-attempt plans (property tests): well-formed timelines, and the latent need shows in
behaviour only as tendencies."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st
from sim_helpers import START, Configs

from features.simulator.behaviour import (
    AWAY,
    FINALIZE,
    Attempt,
    final_entries,
    plan_attempt,
)
from features.simulator.config import Need
from features.simulator.population import PopulationPicks, draw_user
from features.simulator.randomness import Purpose, UserStreams

CFGS = Configs.load()
CFG = CFGS.sim
STEPS = CFGS.funnel.steps
PICKS = PopulationPicks.of(CFG.population)


def _user(seed: int):
    rng = UserStreams(seed, 0).stream(Purpose.USER)

    user = draw_user(
        CFG, PICKS, 0, datetime(START.year, START.month, START.day, tzinfo=UTC), 7, rng
    )
    return replace(user, is_bot=False, speed=1.0)


def _attempt(step_index: int, need: Need, away: bool, u: float) -> Attempt:
    return Attempt(
        step=STEPS[step_index],
        index=step_index,
        need=need,
        away=away,
        base=-2.0,
        need_shift=CFG.abandon.need[need],
        away_shift=CFG.abandon.away,
        helped_shift=CFG.response.helped_logit,
        u=u,
    )


@settings(max_examples=150, deadline=None)
@given(
    st.integers(0, 2**32 - 1),
    st.integers(0, len(STEPS) - 1),
    st.sampled_from(list(Need)),
    st.booleans(),
    st.floats(0, 0.999),
)
def test_plans_are_well_formed_timelines(seed, step_index, need, away, u) -> None:
    user = _user(seed)
    attempt = _attempt(step_index, need, away, u)
    rng = UserStreams(seed, 1).stream(Purpose.ATTEMPT)
    previous = STEPS[step_index - 1] if step_index else None
    plan = plan_attempt(CFG, attempt, user, previous, rng)
    assert plan[-1][5] & FINALIZE and sum(e[5] & FINALIZE != 0 for e in plan) == 1
    assert all(e[0] > 0 for e in plan[:-1]) and plan[-1][0] >= 0
    assert sum(e[5] & AWAY != 0 for e in plan) == int(away)
    for _gap, etype, step, _target, value, _tag, note in plan:
        if etype == "scroll":
            assert 0 <= value <= 100
        assert step in (None, previous)
        assert note is None
    final = final_entries(CFG, attempt, user, plan[-1][0], plan[-1][5], rng)
    assert final[-1][1] in ("step_complete", "exit")
    assert (final[-1][1] == "exit") == (u < attempt.p())


def _symptoms(need: Need, n: int = 400) -> dict[str, float]:
    counts: dict[str, int] = {}
    for seed in range(n):
        rng = UserStreams(seed, 2).stream(Purpose.ATTEMPT)
        plan = plan_attempt(CFG, _attempt(2, need, False, 0.5), _user(seed), STEPS[1], rng)
        for etype in {e[1] for e in plan} | (
            {"long_gap"} if max(e[0] for e in plan) >= 12 else set()
        ):
            counts[etype] = counts.get(etype, 0) + 1
    return {k: v / n for k, v in counts.items()}


def test_needs_show_as_tendencies_not_certainties() -> None:
    fine, form, lost, doubt = (_symptoms(n) for n in (Need.NONE, Need.FORM, Need.LOST, Need.DOUBT))
    assert form.get("cta_fail", 0) > fine.get("cta_fail", 0) + 0.5
    assert lost.get("back", 0) > fine.get("back", 0) + 0.25
    assert doubt.get("hover", 0) > fine.get("hover", 0) + 0.25
    assert doubt.get("long_gap", 0) > fine.get("long_gap", 0) + 0.3
    # ... and none of them is a sure sign either way
    signs = ("cta_fail", "back", "hover", "help_open", "field_error", "long_gap")
    for symptoms in (fine, form, lost, doubt):
        assert all(symptoms.get(sign, 0) < 0.95 for sign in signs), symptoms
    assert fine.get("long_gap", 0) > 0.05  # people who are fine pause too
