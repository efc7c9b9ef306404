"""The simulated closed loop with exploration on: the server's engine logs propensities and
eligible sets, and the log is learnable (bandit rows -> VW -> OPE) end to end."""

from __future__ import annotations

import json
import math
from datetime import date
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from core.bandit import BanditConfig
from core.layout import Layout
from core.settings import load_config
from features.pipeline.config import AggregatesConfig
from features.simulator.config import SimulatorConfig
from loop.config import LoopConfig, PolicySpec
from loop.evaluate import Setup, run_one
from loop.simstore import HistoryConfig
from serving.assemble import Configs
from serving.decision_log import sqlite_log
from training.policy.data import bandit_log
from training.policy.jobs import run_ope
from training.policy.learn import train_vw

REPO_CONFIGS = Path(__file__).resolve().parents[2] / "configs"
EPSILON = 0.5


def small_setup(layout: Layout, bundle_dir: Path, users: int, days: int) -> Setup:
    configs = Configs.load(layout)
    loop = load_config(LoopConfig, REPO_CONFIGS / LoopConfig.file_name).evaluation
    evaluation = loop.model_copy(
        update={"users": users, "days": days, "start_date": date(2025, 3, 1), "workers": 1}
    )
    history = HistoryConfig(
        signals=configs.signals,
        funnel=configs.funnel,
        aggregates=load_config(AggregatesConfig, layout=layout),
        session_gap_s=configs.events.session_gap_minutes * 60.0,
        user_ttl_s=30 * 86_400.0,
    )
    return Setup(
        layout=layout,
        configs=configs,
        simulator=load_config(SimulatorConfig, layout=layout),
        history=history,
        evaluation=evaluation,
        steps={},
        bundle_dir=bundle_dir,
    )


@pytest.fixture(scope="module")
def explored(tmp_path_factory, bundle_dir: Path):
    layout = Layout.under(tmp_path_factory.mktemp("explore"), configs=REPO_CONFIGS).ensure()
    setup = small_setup(layout, bundle_dir, users=200, days=7)
    spec = PolicySpec(name="explore", kind="model", caps=True, explore=EPSILON)
    result = run_one(setup, spec, 5, layout.data / "keep")
    log = sqlite_log(result.kept / "decisions.db", synchronous="normal", batch_max=1)
    try:
        decisions, outcomes = log.decisions(), log.outcomes()
    finally:
        log.close()
    return setup, decisions, outcomes, pq.read_table(result.kept / "events.parquet")


def test_a_simulated_month_logs_propensities_and_eligible_sets(explored) -> None:
    _, decisions, _, _ = explored
    at_moment = decisions[decisions["moment"].notna()]
    assert len(at_moment) > 100
    for row in at_moment.itertuples():
        eligible = json.loads(row.eligible_actions)
        assert row.would_action in eligible and "none" in eligible
        n = len(eligible)
        if row.holdout:
            assert row.propensity == 1.0 and row.action == "none"
        else:
            assert math.isclose(row.propensity, 1 - EPSILON + EPSILON / n) or math.isclose(
                row.propensity, EPSILON / n
            )
    explored_rows = at_moment[~at_moment["holdout"] & (at_moment["propensity"] < 0.5)]
    assert len(explored_rows) > 0.1 * len(at_moment)  # off-greedy draws happened


def test_the_explored_log_is_learnable_end_to_end(explored) -> None:
    setup, decisions, outcomes, events = explored
    cfg = load_config(BanditConfig, REPO_CONFIGS / "bandit.yaml")
    horizon = setup.configs.signals.label_horizon_minutes * 60.0
    rows = bandit_log(decisions, outcomes, events, horizon_s=horizon, cfg=cfg)
    assert rows.frame["propensity"].between(0, 1, inclusive="right").all()
    assert set(rows.frame["completed"].unique()) <= {0.0, 1.0}
    ws = train_vw(rows, cfg)
    ws.finish()
    result = run_ope(rows, cfg, None)
    none = result.estimates.query("candidate == 'none' and outcome == 'shown'")
    assert (none["value"] == 0).all()  # "none" never shows anything, by every estimator
    logged = result.estimates.query("candidate == 'logged' and outcome == 'shown'")["value"]
    assert float(logged.iloc[0]) == pytest.approx(rows.frame["shown"].mean())


def test_the_goal_outcome_credits_every_decision_with_the_users_onboarding(explored) -> None:
    setup, decisions, outcomes, events = explored
    base = load_config(BanditConfig, REPO_CONFIGS / "bandit.yaml")
    cfg = base.model_copy(update={"reward": base.reward.model_copy(update={"outcome": "goal"})})
    horizon = setup.configs.signals.label_horizon_minutes * 60.0
    rows = bandit_log(decisions, outcomes, events, horizon_s=horizon, cfg=cfg).frame
    per_user = rows.groupby("user_id")["completed"].nunique()
    assert (per_user == 1).all()  # one onboarding outcome per user
    pairs = zip(events["user_id"].to_pylist(), events["type"].to_pylist(), strict=True)
    goal_users = {u for u, t in pairs if t == "goal"}
    completed = rows.groupby("user_id")["completed"].first()
    assert {u for u, c in completed.items() if c == 1.0} == goal_users & set(completed.index)
