"""Fixtures of the offline feature-pipeline tests: configs and one small simulation."""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pytest
from pipeline_factory import REPO_CONFIGS

from core.layout import Layout
from core.vocabulary import ActionType, Outcome
from features.config import SignalsConfig
from features.pipeline.build import PipelineConfigs
from features.signals import snapshot
from features.simulator.hook import Intervention, MomentContext


@pytest.fixture(scope="session")
def configs() -> PipelineConfigs:
    """Every config the build reads, from the repo's configs/."""
    return PipelineConfigs.load(Layout.under(REPO_CONFIGS.parent))


@pytest.fixture(scope="session")
def signals_cfg(configs: PipelineConfigs) -> SignalsConfig:
    return configs.signals


class RecordingPolicy:
    """A dispatcher that records what it saw at every call and shows a tip every `every`
    calls (0: never), so system events (trigger_shown / trigger_outcome) enter the data."""

    def __init__(self, every: int = 0) -> None:
        self.every = every
        self.calls: list[tuple[str, str, str, float, dict[str, float]]] = []

    def decide(self, ctx: MomentContext) -> Intervention:
        m = ctx.moment
        self.calls.append((ctx.session_id, str(m.type), m.episode, ctx.now, snapshot(ctx.state)))
        show = self.every > 0 and len(self.calls) % self.every == 0
        action = ActionType.CONTEXTUAL_TIP if show else ActionType.NONE
        return Intervention(action, f"{ctx.session_id}:{ctx.now:.6f}")

    def observe(self, decision_id: str, outcome: Outcome, now: float) -> None:
        return None


@dataclass(frozen=True)
class Simulated:
    """One simulation run and what its dispatcher saw."""

    events: pa.Table
    oracle: pa.Table
    policy: RecordingPolicy


def _simulate(configs: PipelineConfigs, users: int, days: int, seed: int, every: int):
    from core.settings import load_config
    from features.simulator import SimulatorConfig, simulate

    policy = RecordingPolicy(every)
    result = simulate(
        load_config(SimulatorConfig, REPO_CONFIGS / SimulatorConfig.file_name),
        configs.signals,
        configs.funnel,
        users=users,
        days=days,
        seed=seed,
        policy=policy,
    )
    return Simulated(result.events, result.oracle, policy)


@pytest.fixture(scope="session")
def quiet_sim(configs: PipelineConfigs) -> Simulated:
    """200 simulated users over 5 days; the dispatcher is called but never shows anything."""
    return _simulate(configs, users=200, days=5, seed=11, every=0)


@pytest.fixture(scope="session")
def busy_sim(configs: PipelineConfigs) -> Simulated:
    """200 simulated users over 5 days; every 3rd call shows a tip (system events in data)."""
    return _simulate(configs, users=200, days=5, seed=12, every=3)
