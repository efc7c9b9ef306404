"""The assistive persona: present, flagged, pointer-free, never a bot, never given pause help."""

from __future__ import annotations

import pytest
from sim_helpers import REPO_CONFIGS, START, Configs

from core.policy_config import PolicyConfig
from core.settings import load_config
from core.vocabulary import ActionType
from features.config import EventsConfig
from features.ingest.bots import bot_signals
from features.simulator import simulate
from features.simulator.assistive import cohort_report
from features.simulator.hook import Intervention, MomentContext
from loop.engine_policy import EnginePolicy
from serving.caps import MemoryCapStore
from serving.config import ColdStart, ExplainConfig
from serving.decision_log import memory_log
from serving.engine import DecisionEngine, Runtime

USERS, DAYS, SEED = 240, 7, 11
SHARE = 0.25  # far above the shipped share, so a small run has a cohort to measure


class Recording:
    """The real decision engine (rules, no model), remembering every moment and answer."""

    def __init__(self, engine: DecisionEngine) -> None:
        self.inner = EnginePolicy(engine)
        self.calls: list[tuple[MomentContext, Intervention]] = []

    def decide(self, ctx: MomentContext) -> Intervention:
        answer = self.inner.decide(ctx)
        self.calls.append((ctx, answer))
        return answer

    def observe(self, decision_id, outcome, now) -> None:
        self.inner.observe(decision_id, outcome, now)


@pytest.fixture(scope="module")
def run(cfgs: Configs):
    sim = cfgs.sim.model_copy(
        update={"assistive": cfgs.sim.assistive.model_copy(update={"share": SHARE})}
    )
    policy_cfg = load_config(PolicyConfig, REPO_CONFIGS / PolicyConfig.file_name)
    engine = DecisionEngine(
        policy_cfg,
        cfgs.signals,
        runtime=Runtime(None, None, "rules", "test", ""),
        caps=MemoryCapStore(policy_cfg.caps),
        log=memory_log(),
        explain=ExplainConfig(top_k=3, candidates=6),
        cold_start=ColdStart.UNKNOWN_USER_AND_SESSION,
    )
    policy = Recording(engine)
    result = simulate(sim, cfgs.signals, cfgs.funnel, USERS, DAYS, SEED, start=START, policy=policy)
    return result, policy, policy_cfg


def _cohorts(result) -> dict[str, set[str]]:
    users = result.users.to_pandas()
    users = users[~users["is_bot"]]
    flagged = users["assistive"] & users["assistive_flagged"]
    return {
        "flagged": set(users.loc[flagged, "user_id"]),
        "inferred": set(users.loc[users["assistive"] & ~flagged, "user_id"]),
        "other": set(users.loc[~users["assistive"], "user_id"]),
    }


def test_persona_appears_flags_some_and_navigates_by_keyboard(run) -> None:
    result, _, _ = run
    cohorts = _cohorts(result)
    assert all(cohorts.values())  # flagged, inferred (unflagged) and other users all present
    events = result.events.to_pandas()
    flagged = events["user_id"].isin(cohorts["flagged"])
    inferred = events["user_id"].isin(cohorts["inferred"])
    assert events.loc[flagged, "assistive"].eq(True).all()
    assert events.loc[~flagged, "assistive"].isna().all()  # the unflagged carry no flag
    mine = flagged | inferred
    # keyboard / screen reader: no pointer events at all, key events in every session
    assert not events.loc[mine, "type"].isin(["scroll", "hover"]).any()
    keyed = events.loc[mine & (events["type"] == "key"), "session_id"].unique()
    assert set(keyed) == set(events.loc[mine, "session_id"])
    assert events.loc[~mine, "type"].isin(["scroll", "hover"]).any()
    assert not (events.loc[~mine, "type"] == "key").any()


def test_assistive_cohorts_have_no_bot_false_positives(run, cfgs: Configs) -> None:
    result, _, _ = run
    bots = load_config(EventsConfig, REPO_CONFIGS / EventsConfig.file_name).bots
    report = cohort_report(result.events, result.users, bots, cfgs.signals)
    for cohort in ("flagged", "inferred", "other"):
        assert report.loc[cohort, "sessions"] > 0
        assert report.loc[cohort, "bot_false_positive_rate"] == 0.0
    # the evidence without the flag: no scroll or hover at all in every assistive session
    scores = bot_signals(result.events.drop_columns(["assistive"]), bots, cfgs.signals)
    mine = set(result.users.filter(result.users["assistive"])["user_id"].to_pylist())
    owners = result.events.select(["session_id", "user_id"]).to_pandas().drop_duplicates()
    theirs = owners.loc[owners["user_id"].isin(mine), "session_id"]
    enough = scores.loc[theirs][scores.loc[theirs, "events"] >= bots.min_events]
    assert len(enough) > 0 and (enough["no_scroll_hover"] == 1.0).all()
    assert scores.loc[theirs, "assistive"].all()  # inferred from behaviour alone
    # bots are not mistaken for assistive technology: they stay flagged
    robots = set(result.users.filter(result.users["is_bot"])["user_id"].to_pylist())
    theirs = owners.loc[owners["user_id"].isin(robots), "session_id"]
    assert len(theirs) > 0 and not scores.loc[theirs, "assistive"].any()
    assert scores.loc[theirs, "score"].equals(bot_signals(result.events, bots).loc[theirs, "score"])


def test_no_pause_help_and_no_video_for_assistive_sessions(run) -> None:
    """Flagged or not: the engine reads every assistive user's session as assistive."""
    result, policy, policy_cfg = run
    cohorts = _cohorts(result)
    hesitation = {m.value for m in policy_cfg.assistive.hesitation_moments}
    for cohort in ("flagged", "inferred"):
        mine = [(c, a) for c, a in policy.calls if c.user_id in cohorts[cohort]]
        assert any(c.moment.type.value in hesitation for c, _ in mine)  # pauses did happen
        for ctx, answer in mine:
            assert answer.action not in policy_cfg.assistive.excluded_actions
            if ctx.moment.type.value in hesitation:
                assert answer.action == ActionType.NONE
    others = [
        a
        for c, a in policy.calls
        if c.user_id in cohorts["other"] and c.moment.type.value in hesitation
    ]
    assert any(a.action != ActionType.NONE for a in others)  # the control: others get pause help
