"""Exploration with logged propensities (serving.bandit in the decision engine): every
decision logs its eligible set and propensity; exploration never reaches the global holdout
and never shows more than the caps allow."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from serving_helpers import REPO_CONFIGS, decision_row

from core.bandit import BanditConfig, Exploration
from core.settings import load_config
from core.vocabulary import ActionType, MomentType
from serving.bandit import ActionSelector, explore, uniform
from serving.caps import MemoryCapStore
from serving.config import ColdStart, ExplainConfig
from serving.decision import DecisionRequest
from serving.decision_log import DECISION_COLUMNS, memory_log, sqlite_log
from serving.engine import DecisionEngine, Runtime
from serving.experiments import assign
from serving.sessions import MemorySessionStore

NOW = 1_741_000_000.0
DAY = 86_400.0


@pytest.fixture(scope="module")
def bandit_cfg() -> BanditConfig:
    return load_config(BanditConfig, REPO_CONFIGS / "bandit.yaml")


def exploring(cfg: BanditConfig, epsilon: float) -> BanditConfig:
    return cfg.model_copy(update={"exploration": Exploration(epsilon=epsilon, salt="test")})


def engine_with(policy_cfg, signals_cfg, selector: ActionSelector | None, log=None):
    return DecisionEngine(
        policy_cfg,
        signals_cfg,
        runtime=Runtime(None, None, "rules", "test"),
        caps=MemoryCapStore(policy_cfg.caps),
        log=log or memory_log(),
        explain=ExplainConfig(top_k=3, candidates=6),
        cold_start=ColdStart.UNKNOWN_USER_AND_SESSION,
        sessions=MemorySessionStore(signals_cfg, 1800.0),
        selector=selector,
    )


def users(policy_cfg, holdout: bool, n: int) -> list[str]:
    found, i = [], 0
    while len(found) < n:
        uid = f"user-{i}"
        if assign(uid, policy_cfg.experiments).holdout == holdout:
            found.append(uid)
        i += 1
    return found


MOMENT_SIGNALS = {
    MomentType.PAUSE: {"pause_s": 14.0},
    MomentType.SHALLOW_SCROLL: {"scroll_depth": 10.0},
    MomentType.CTA_FAIL: {"cta_fails": 4.0},
    MomentType.LOW_CLICK_RATE: {"click_rate": 0.1},
    MomentType.BACKTRACK: {"backs": 2.0},
    MomentType.HELP_HOVER: {"help_hover_s": 3.0},
}


def req(user_id: str, now: float, moment: MomentType, episode: str) -> DecisionRequest:
    return DecisionRequest(
        user_id=user_id,
        session_id=f"{user_id}-s",
        step="identity_verification",
        now=now,
        moment=moment,
        signals=MOMENT_SIGNALS[moment],
        episode=episode,
        tz="UTC",
    )


def test_deterministic_decisions_log_propensity_one_and_the_eligible_set(
    policy_cfg, signals_cfg, bandit_cfg, tmp_path: Path
) -> None:
    log = sqlite_log(tmp_path / "d.db", synchronous="off", batch_max=8)
    engine = engine_with(policy_cfg, signals_cfg, ActionSelector(bandit_cfg), log)
    uid = users(policy_cfg, False, 1)[0]
    d = engine.decide(req(uid, NOW, MomentType.CTA_FAIL, "e1"))
    assert d.action == ActionType.TOOLTIP and d.propensity == 1.0
    assert d.eligible == ("none", *(a.value for a in bandit_cfg.actions[MomentType.CTA_FAIL]))
    frame = engine.log.decisions()
    engine.close()
    row = frame.set_index("decision_id").loc[d.decision_id]
    assert row["propensity"] == 1.0
    assert json.loads(row["eligible_actions"]) == list(d.eligible)


def test_the_table_choice_joins_the_eligible_set_when_not_listed(bandit_cfg) -> None:
    assert bandit_cfg.eligible(MomentType.BACKTRACK, "live_chat")[-1] == "live_chat"
    assert bandit_cfg.eligible(None, "none") == ("none",)


def test_an_older_sqlite_log_gains_the_new_columns(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    later = ("propensity", "eligible_actions", "shadow_score", "shadow_version")
    old = [c for c in DECISION_COLUMNS if c not in later]
    with sqlite3.connect(path) as con:
        cols = ", ".join(f"{c} {DECISION_COLUMNS[c][0]}" for c in old)
        con.execute(f"CREATE TABLE decisions ({cols})")
        con.execute(
            f"INSERT INTO decisions VALUES ({', '.join('?' * len(old))})",
            [decision_row("old-1")[c] for c in old],
        )
    log = sqlite_log(path, synchronous="off", batch_max=1)
    log.append_decision(decision_row("new-1") | {"propensity": 0.25, "eligible_actions": "[]"})
    frame = log.decisions().set_index("decision_id")
    log.close()
    assert frame.loc["new-1", "propensity"] == 0.25
    assert frame.loc["old-1", "propensity"] is None or frame["propensity"].isna()["old-1"]


@given(
    epsilon=st.floats(0.0, 1.0),
    n=st.integers(1, 7),
    u_e=st.floats(0.0, 1.0, exclude_max=True),
    u_a=st.floats(0.0, 1.0, exclude_max=True),
)
def test_epsilon_greedy_propensity_is_the_probability_of_the_draw(epsilon, n, u_e, u_a) -> None:
    eligible = [f"a{i}" for i in range(n)]
    action, p, explored = explore("a0", eligible, epsilon, u_e, u_a)
    assert action in eligible
    # the probability of `action` under the mixture, written out independently
    expected = (1 - epsilon) * (action == "a0") + epsilon / n if epsilon > 0 and n > 1 else 1.0
    assert p == pytest.approx(expected)
    assert explored == (epsilon > 0 and n > 1 and u_e < epsilon)
    if not explored:
        assert action == "a0"


def test_uniform_draws_are_deterministic_and_spread() -> None:
    draws = [uniform("s", f"k{i}") for i in range(2000)]
    assert draws == [uniform("s", f"k{i}") for i in range(2000)]
    assert 0.45 < sum(draws) / len(draws) < 0.55
    assert uniform("s", "k1") != uniform("t", "k1")


decision_plans = st.lists(
    st.tuples(
        st.integers(0, 5),  # which user
        st.floats(0, 3 * DAY),  # when
        st.sampled_from(list(MomentType)),
        st.integers(0, 3),  # episode
    ),
    min_size=1,
    max_size=60,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(plan=decision_plans, epsilon=st.sampled_from([0.2, 0.6, 1.0]))
def test_exploration_never_reaches_the_holdout_nor_passes_the_caps(
    policy_cfg, signals_cfg, bandit_cfg, plan, epsilon
) -> None:
    selector = ActionSelector(exploring(bandit_cfg, epsilon))
    engine = engine_with(policy_cfg, signals_cfg, selector)
    people = users(policy_cfg, False, 3) + users(policy_cfg, True, 3)
    held = set(people[3:])
    shown_per_day: Counter = Counter()
    shown_per_episode: Counter = Counter()
    for who, offset, moment, ep in sorted(plan, key=lambda p: p[1]):
        uid = people[who]
        d = engine.decide(req(uid, NOW + offset, moment, f"{moment}-{ep}"))
        assert d.would_action.value in d.eligible
        assert 0 < d.propensity <= 1
        if uid in held:
            assert d.action == ActionType.NONE and d.propensity == 1.0
            assert not any(r.kind == "bandit" for r in d.reasons)
            continue
        n = len(d.eligible)
        assert d.propensity == pytest.approx(1 - epsilon + epsilon / n) or d.propensity == (
            pytest.approx(epsilon / n)
        )
        if d.action != ActionType.NONE:
            day = int((NOW + offset) // DAY)
            shown_per_day[(uid, day)] += 1
            if d.action != ActionType.LIVE_CHAT:  # live chat bypasses the episode cap
                shown_per_episode[(uid, f"{moment}-{ep}")] += 1
    engine.close()
    assert all(v <= policy_cfg.caps.max_per_day for v in shown_per_day.values())
    assert all(v <= policy_cfg.caps.max_per_episode for v in shown_per_episode.values())


def test_exploration_visits_every_eligible_action(policy_cfg, signals_cfg, bandit_cfg) -> None:
    engine = engine_with(policy_cfg, signals_cfg, ActionSelector(exploring(bandit_cfg, 1.0)))
    uid = users(policy_cfg, False, 1)[0]
    chosen = Counter(
        engine.decide(req(uid, NOW + i * DAY, MomentType.PAUSE, f"e{i}")).would_action.value
        for i in range(200)
    )
    engine.close()
    assert set(chosen) == {"none", *(a.value for a in bandit_cfg.actions[MomentType.PAUSE])}


# --- the learned policy in the engine ------------------------------------------------------

LIMIT_MS = 60_000.0  # the online read budget of these tests: never the thing under test


class KnownUsers:
    """An online reader that knows every user (so the model, not the rules, scores)."""

    def read(self, user_id: str, session_id: str, step: str, now_epoch: float):
        return {"pause_s": 3.0, "scroll_depth": 10.0, "cta_fails": 4.0}, True, False


def always_trigger_policy(models_dir: Path, cfg: BanditConfig) -> None:
    """A learned policy that prefers a trigger to `none` in every context."""
    import pandas as pd

    from core.bandit import Context
    from training.policy.data import BanditLog
    from training.policy.learn import manifest_for, train_vw, write_artefact

    rows, contexts = [], []
    for i in range(600):
        moment = list(MomentType)[i % len(MomentType)].value
        eligible = cfg.eligible(MomentType(moment), "none")
        chosen = eligible[i % len(eligible)]
        reward = 0.0 if chosen == "none" else 1.0
        rows.append(
            {
                "user_id": f"u{i}",
                "ts": pd.Timestamp("2025-03-01", tz="UTC"),
                "chosen": chosen,
                "propensity": 1 / len(eligible),
                "eligible": eligible,
                "model_scored": True,
                "reward": reward,
            }
        )
        contexts.append(Context((("moment", moment),), ()))
    log = BanditLog(pd.DataFrame(rows), contexts, 0)
    ws = train_vw(log, cfg)
    write_artefact(ws, models_dir, manifest_for(log, cfg, len(rows)), version="t1")
    ws.finish()


def test_the_learned_policy_decides_under_the_caps_and_the_holdout(
    policy_cfg, signals_cfg, bandit_cfg, bundle, tmp_path: Path
) -> None:
    from serving.bandit import build_selector
    from serving.feature_read import BudgetedReader

    always_trigger_policy(tmp_path, bandit_cfg)
    learned = bandit_cfg.model_copy(
        update={"learned": bandit_cfg.learned.model_copy(update={"enabled": True})}
    )
    selector = build_selector(learned, tmp_path)
    engine = DecisionEngine(
        policy_cfg,
        signals_cfg,
        runtime=Runtime(
            bundle, BudgetedReader(KnownUsers(), LIMIT_MS, 1, inline=True), "bundle", "t"
        ),
        caps=MemoryCapStore(policy_cfg.caps),
        log=memory_log(),
        explain=ExplainConfig(top_k=3, candidates=6),
        cold_start=ColdStart.UNKNOWN_USER_AND_SESSION,
        sessions=MemorySessionStore(signals_cfg, 1800.0),
        selector=selector,
    )
    uid, held = users(policy_cfg, False, 1)[0], users(policy_cfg, True, 1)[0]
    decisions = [
        engine.decide(req(who, NOW + 600 * i, MomentType.CTA_FAIL, f"e{i}"))
        for i in range(8)
        for who in (uid, held)
    ]
    engine.close()
    mine = [d for d in decisions if d.request.user_id == uid]
    assert all(d.fallback_reason is None for d in mine)  # the model scored: learned decides
    assert all(d.would_action != ActionType.NONE for d in mine)
    assert all(d.propensity == 1.0 for d in decisions)  # no exploration configured
    shown = [d for d in mine if d.action != ActionType.NONE]
    assert len(shown) == policy_cfg.caps.max_per_day  # the same day: the cap holds
    assert all(d.cap_reason == "daily" for d in mine if d.action == ActionType.NONE)
    assert all(d.action == ActionType.NONE for d in decisions if d.request.user_id == held)


@pytest.mark.parametrize("may_add", [False, True])
def test_the_learned_policy_adds_triggers_only_when_allowed(bandit_cfg, tmp_path, may_add) -> None:
    from core.bandit import context_features
    from serving.bandit import build_selector

    always_trigger_policy(tmp_path, bandit_cfg)
    learned = bandit_cfg.learned.model_copy(update={"enabled": True, "may_add_triggers": may_add})
    selector = build_selector(bandit_cfg.model_copy(update={"learned": learned}), tmp_path)
    ctx = context_features(
        moment="pause",
        step="welcome",
        band="routine",
        score=0.1,
        device="mobile",
        channel="organic",
        signals={"pause_s": 13.0},
        cfg=bandit_cfg.context,
    )
    kw = dict(moment=MomentType.PAUSE, context=ctx, holdout=False, model_scored=True, key="k")
    quiet = selector.choose(table_action="none", escalated=False, **kw)
    assert (quiet.action != "none") == may_add
    assert quiet.propensity == 1.0
    # where the table triggers, the policy chooses which help
    loud = selector.choose(table_action="contextual_tip", escalated=False, **kw)
    assert loud.chooser == "learned" and loud.action != "none"
    # an escalation that fired is kept
    kept = selector.choose(table_action="live_chat", escalated=True, **kw)
    assert kept.action == "live_chat" and kept.chooser == "table"
    selector.close()
