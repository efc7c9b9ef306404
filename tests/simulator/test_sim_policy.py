"""The policy hook: called exactly at detected moments, in time order; interventions change
what users do - matched help raises completion, unneeded and repeated triggers lower it."""

from __future__ import annotations

import pyarrow.compute as pc
import pytest
from sim_helpers import (
    MISMATCHED,
    START,
    Configs,
    TestPolicy,
    humans,
    matched_action,
    replay,
)

from core.vocabulary import Outcome
from features.simulator import simulate
from features.simulator.hook import NoTriggers
from features.simulator.summary import funnel_summary

USERS, DAYS, SEED = 1_000, 30, 99


def test_policy_is_called_exactly_at_detected_moments(cfgs: Configs, capped_run) -> None:
    result, policy = capped_run
    calls = sorted(
        (c.session_id, str(c.moment.type), c.moment.episode, c.now) for c in policy.calls
    )
    found = sorted(
        (p.session_id, str(p.moment.type), p.moment.episode, p.moment.ts)
        for p in replay(result.events, cfgs.signals)
    )
    assert len(calls) > 300
    assert calls == found
    # the scheduler answers all users' requests in time order, with the live state
    times = [c.now for c in policy.calls]
    assert times == sorted(times)
    assert all(c.moment.ts == c.now and c.state.session_id == c.session_id for c in policy.calls)


def test_every_shown_intervention_is_observed_twice(capped_run) -> None:
    _, policy = capped_run
    shown = {f"d{i + 1}" for i, c in enumerate(policy.calls)} & {d for d, _, _ in policy.observed}
    reactions = [
        (d, o) for d, o, _ in policy.observed if o in (Outcome.ACCEPTED, Outcome.DISMISSED)
    ]
    results = [
        (d, o) for d, o, _ in policy.observed if o in (Outcome.STEP_COMPLETED, Outcome.ABANDONED)
    ]
    assert len(reactions) == len(shown) == len({d for d, _ in reactions})
    assert {d for d, _ in results} == shown
    accepted = sum(o == Outcome.ACCEPTED for _, o in reactions)
    assert 0.1 < accepted / len(reactions) < 0.9


def test_prior_events_are_the_users_earlier_sessions(capped_run) -> None:
    _, policy = capped_run
    later = [c for c in policy.calls if not c.session_id.endswith("-1")]
    assert later
    for ctx in later[:20]:
        prior = ctx.prior_events()
        assert prior.num_rows > 0
        assert set(prior["user_id"].to_pylist()) == {ctx.user_id}
        assert ctx.session_id not in set(prior["session_id"].to_pylist())
    first = next(c for c in policy.calls if c.session_id.endswith("-1"))
    assert first.prior_events().num_rows == 0


@pytest.fixture(scope="module")
def outcomes(cfgs: Configs) -> dict[str, tuple[float, float, int]]:
    """Completion, drop-off at identity verification and triggers shown per policy, all on
    the same seed (common random numbers pair the users)."""
    policies = {
        "none": NoTriggers(),
        "matched_always": TestPolicy(matched_action),
        "matched_capped": TestPolicy(matched_action, per_day=2),
        "mismatched_always": TestPolicy(lambda ctx: MISMATCHED[ctx.moment.type]),
    }
    out = {}
    for name, policy in policies.items():
        result = simulate(
            cfgs.sim, cfgs.signals, cfgs.funnel, USERS, DAYS, SEED, start=START, policy=policy
        )
        summary = funnel_summary(result.events, result.users, cfgs.funnel)
        shown = result.events.filter(pc.equal(result.events["type"], "trigger_shown")).num_rows
        out[name] = (
            summary.completion_rate,
            summary.dropoff(cfgs.sim.calibration.dropoff_step),
            shown,
        )
        assert len(humans(result)) == summary.humans
    return out


@pytest.mark.slow
def test_matched_help_raises_completion(outcomes) -> None:
    base, base_drop, _ = outcomes["none"]
    always, always_drop, always_shown = outcomes["matched_always"]
    capped, capped_drop, capped_shown = outcomes["matched_capped"]
    assert always > base + 0.01 and always_drop < base_drop
    assert capped > base + 0.05 and capped_drop < base_drop - 0.05
    # over-triggering hurts: twice the triggers, less completion than the capped policy
    assert always_shown > 1.5 * capped_shown
    assert capped > always + 0.02


@pytest.mark.slow
def test_unmatched_triggers_lower_completion(outcomes) -> None:
    base, _, _ = outcomes["none"]
    wrong, _, shown = outcomes["mismatched_always"]
    assert shown > USERS
    assert wrong < base - 0.03
