"""Fixtures of the simulator tests: configs and a few shared runs (session scope: they are
read-only, and simulating once keeps the area's tests fast)."""

from __future__ import annotations

import pytest
from sim_helpers import START, Configs, TestPolicy, matched_action

from features.simulator import SimulationResult, simulate


@pytest.fixture(scope="session")
def cfgs() -> Configs:
    return Configs.load()


@pytest.fixture(scope="session")
def small_run(cfgs: Configs) -> SimulationResult:
    """400 users over two weeks, no policy."""
    return simulate(cfgs.sim, cfgs.signals, cfgs.funnel, 400, 14, 3, start=START)


@pytest.fixture(scope="session")
def capped_run(cfgs: Configs) -> tuple[SimulationResult, TestPolicy]:
    """400 users under a matched policy capped at 2 a day, one per episode."""
    policy = TestPolicy(matched_action, per_day=2)
    result = simulate(cfgs.sim, cfgs.signals, cfgs.funnel, 400, 14, 3, start=START, policy=policy)
    return result, policy
