"""With no triggers the funnel matches the source document's case study (pre-trigger)."""

from __future__ import annotations

from sim_helpers import START, Configs

from features.simulator import simulate
from features.simulator.summary import funnel_summary


def test_default_funnel_matches_the_case_study(cfgs: Configs) -> None:
    # a seed the defaults were not fitted on, a few thousand users over a month
    result = simulate(cfgs.sim, cfgs.signals, cfgs.funnel, 4_000, 30, 2024, start=START)
    summary = funnel_summary(result.events, result.users, cfgs.funnel)
    cal = cfgs.sim.calibration
    assert summary.humans > 3_500
    assert abs(summary.completion_rate - cal.completion_rate) <= cal.tolerance
    assert abs(summary.dropoff(cal.dropoff_step) - cal.dropoff_rate) <= cal.tolerance
    # identity verification is where users are lost; the other steps lose a few each
    worst = max(summary.steps, key=lambda s: s.dropoff)
    assert worst.step == cal.dropoff_step
    for stats in summary.steps:
        target = cal.step_dropoff[stats.step]
        assert abs(stats.dropoff - target) <= cal.tolerance, stats
