"""Same seed, same tables; a user's data depends on the seed and the user, nothing else."""

from __future__ import annotations

from datetime import UTC, datetime, time

import pyarrow.compute as pc
import pytest
from sim_helpers import START, Configs

from features.simulator import simulate
from features.simulator.hook import NoTriggers
from features.simulator.randomness import Purpose, UserStreams, Weighted


def test_same_seed_gives_identical_tables(cfgs: Configs, small_run) -> None:
    again = simulate(cfgs.sim, cfgs.signals, cfgs.funnel, 400, 14, 3, start=START)
    assert again.events.equals(small_run.events)
    assert again.users.equals(small_run.users)
    assert again.oracle.equals(small_run.oracle)


def test_another_seed_gives_other_data(cfgs: Configs, small_run) -> None:
    other = simulate(cfgs.sim, cfgs.signals, cfgs.funnel, 400, 14, 4, start=START)
    assert not other.events.equals(small_run.events)


def test_a_users_data_does_not_depend_on_the_other_users(cfgs: Configs, small_run) -> None:
    fewer = simulate(cfgs.sim, cfgs.signals, cfgs.funnel, 250, 14, 3, start=START)
    first = small_run.events.filter(pc.less(small_run.events["user_id"], "u000250"))
    assert fewer.events.equals(first)
    assert fewer.users.equals(small_run.users.slice(0, 250))


def test_a_policy_that_never_shows_changes_nothing(cfgs: Configs, small_run) -> None:
    """The detectors run and the policy is asked, but the users must not notice."""
    quiet = simulate(
        cfgs.sim, cfgs.signals, cfgs.funnel, 400, 14, 3, start=START, policy=NoTriggers()
    )
    assert quiet.events.equals(small_run.events)
    assert quiet.oracle.equals(small_run.oracle)


def test_default_period_ends_at_todays_utc_midnight(cfgs: Configs) -> None:
    assert cfgs.sim.start_date is None
    result = simulate(cfgs.sim, cfgs.signals, cfgs.funnel, 20, 3, 1)
    today = datetime.combine(datetime.now(UTC).date(), time(0), tzinfo=UTC)
    assert result.end == today
    assert (result.end - result.start).days == 3
    first = result.events["ts"].to_pylist()
    assert min(first) >= result.start


def test_streams_are_keyed_not_ordered() -> None:
    a = UserStreams(5, 17)
    x1 = a.stream(Purpose.ATTEMPT, 1, 2).uniform()
    x0 = a.stream(Purpose.ATTEMPT, 0, 2).uniform()
    b = UserStreams(5, 17)
    assert b.stream(Purpose.ATTEMPT, 0, 2).uniform() == x0
    assert b.stream(Purpose.ATTEMPT, 1, 2).uniform() == x1
    assert x0 != x1
    assert UserStreams(5, 18).stream(Purpose.ATTEMPT, 0, 2).uniform() != x0
    with pytest.raises(ValueError, match="out of range"):
        a.stream(Purpose.ATTEMPT, 0, 64)


def test_weighted_picks_never_pick_zero_weights() -> None:
    options = Weighted({"a": 0.0, "b": 1.0, "c": 0.0})
    rng = UserStreams(1, 1).stream(Purpose.USER)
    assert {rng.pick(options) for _ in range(200)} == {"b"}
    with pytest.raises(ValueError):
        Weighted({"a": 0.0})


def test_bad_sizes_are_clear_errors(cfgs: Configs) -> None:
    with pytest.raises(ValueError, match="users must be >= 1"):
        simulate(cfgs.sim, cfgs.signals, cfgs.funnel, 0, 3, 1)
    with pytest.raises(ValueError, match="days must be >= 1"):
        simulate(cfgs.sim, cfgs.signals, cfgs.funnel, 5, 0, 1)
