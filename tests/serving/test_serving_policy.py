"""Policy: bands, content by moment, escalation, cohort / arm overrides, config validation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from serving_helpers import REPO_CONFIGS

from core.policy_config import PolicyConfig, ThresholdOverrides
from core.settings import ConfigError, load_config, parse_config
from core.vocabulary import ActionType, MomentType
from serving.policy import (
    ACTION_INTENSITY,
    Policy,
    band_of,
    matching_cohorts,
    model_policy,
    resolve,
)

scores = st.floats(0, 1)
moments = st.sampled_from(list(MomentType))
signal_values = st.fixed_dictionaries(
    {},
    optional={
        "pause_s": st.floats(0, 120),
        "scroll_depth": st.floats(0, 100),
        "cta_fails": st.floats(0, 10),
        "click_rate": st.floats(0, 1),
    },
)


def raw_policy() -> dict:
    import yaml

    return yaml.safe_load((REPO_CONFIGS / "policy.yaml").read_text())


def test_default_bands_resolve_the_documents_gaps(policy_cfg) -> None:
    bands = resolve(policy_cfg, []).bands
    assert band_of(0.0, bands).name == "routine"
    assert band_of(0.39, bands).name == "routine"
    assert band_of(0.45, bands).name == "uncertain"  # gap 0.4-0.5: no trigger
    assert band_of(0.5, bands).name == "mild"
    assert band_of(0.75, bands).name == "mild"  # gap 0.7-0.8: contextual help
    assert band_of(0.8, bands).name == "high"
    assert band_of(1.0, bands).name == "high"


@pytest.mark.parametrize(
    ("score", "moment", "signals", "action"),
    [
        (0.3, "pause", {"pause_s": 40.0}, ActionType.NONE),
        (0.6, "pause", {"pause_s": 14.0}, ActionType.CONTEXTUAL_TIP),
        (0.6, "pause", {"pause_s": 40.0}, ActionType.CONTEXTUAL_TIP),  # no escalation in mild
        (0.85, "pause", {"pause_s": 40.0}, ActionType.LIVE_CHAT),  # escalation in high
        (0.85, "pause", {"pause_s": 20.0}, ActionType.CONTEXTUAL_TIP),
        (0.6, "shallow_scroll", {"scroll_depth": 10.0}, ActionType.WALKTHROUGH),
        (0.6, "shallow_scroll", {"scroll_depth": 35.0}, ActionType.GUIDE),
        (0.6, "cta_fail", {"cta_fails": 3.0}, ActionType.TOOLTIP),
        (0.6, "low_click_rate", {}, ActionType.MICRO_VIDEO),  # moment default
        (0.6, "backtrack", {}, ActionType.GUIDE),
        (0.6, "help_hover", {}, ActionType.CONTEXTUAL_TIP),
    ],
)
def test_model_policy_table(policy_cfg, score, moment, signals, action) -> None:
    out = model_policy(
        score, MomentType(moment), "funding", signals, resolve(policy_cfg, []), policy_cfg
    )
    assert out.action == action
    assert out.reasons[0].kind == "band"
    if action != ActionType.NONE:
        assert out.content == f"{action.value}.{moment}.funding"
    else:
        assert out.content is None


def test_model_policy_without_a_moment_does_nothing(policy_cfg) -> None:
    out = model_policy(0.95, None, "funding", {}, resolve(policy_cfg, []), policy_cfg)
    assert out.action == ActionType.NONE
    assert out.reasons[-1].name == "no_moment"


@given(scores, scores, moments, signal_values)
def test_higher_score_never_less_intensive(policy_cfg, a, b, moment, signals) -> None:
    th = resolve(policy_cfg, [])
    low = model_policy(min(a, b), moment, "welcome", signals, th, policy_cfg)
    high = model_policy(max(a, b), moment, "welcome", signals, th, policy_cfg)
    assert ACTION_INTENSITY[high.action] >= ACTION_INTENSITY[low.action]


@given(scores, moments, signal_values, st.booleans(), st.sampled_from(["desktop", "mobile"]))
def test_monotone_under_every_cohort_and_arm(policy_cfg, s, moment, signals, returning, device):
    policy = Policy(policy_cfg)
    cohorts = matching_cohorts(policy_cfg.cohorts, device, None, returning)
    arms = [
        [(f"{e.name}.{a.name}", a.overrides)]
        for layer in policy_cfg.experiments.layers
        for e in layer.experiments
        for a in e.arms
    ]
    for arm in [[], *arms]:
        th = policy.thresholds(cohorts, arm)
        base = model_policy(s, moment, "w", signals, th, policy_cfg)
        higher = model_policy(min(1.0, s + 0.1), moment, "w", signals, th, policy_cfg)
        assert ACTION_INTENSITY[higher.action] >= ACTION_INTENSITY[base.action]


def test_cohort_and_arm_overrides_apply_in_order(policy_cfg) -> None:
    policy = Policy(policy_cfg)
    mobile = matching_cohorts(policy_cfg.cohorts, "mobile", None, None)
    assert [c.name for c in mobile] == ["mobile"]
    both = matching_cohorts(policy_cfg.cohorts, "mobile", None, True)
    assert [c.name for c in both] == ["mobile", "returning"]
    assert matching_cohorts(policy_cfg.cohorts, None, None, None) == ()

    th = policy.thresholds(mobile, [])
    assert {b.name: b.upper for b in th.bands}["uncertain"] == 0.45
    assert next(r for r in th.signal_table if r.name == "pause_tip").threshold == 15
    th = policy.thresholds(both, [])
    assert {b.name: b.upper for b in th.bands}["uncertain"] == 0.55  # later cohort wins
    arm = [("earlier_pause_tip.pause_10s", ThresholdOverrides(rules={"pause_tip": 10}))]
    th = policy.thresholds(mobile, arm)
    assert next(r for r in th.signal_table if r.name == "pause_tip").threshold == 10  # arm last
    assert policy.thresholds(mobile, arm) is th  # cached


def config_error(raw: dict) -> str:
    with pytest.raises(ConfigError) as err:
        parse_config(PolicyConfig, raw, source="policy.yaml")
    return str(err.value)


def test_bands_must_be_ordered_end_at_one_and_never_lose_intensity() -> None:
    raw = raw_policy()
    raw["bands"][1]["upper"] = 0.3
    assert "uppers must increase" in config_error(raw)
    raw = raw_policy()
    raw["bands"][-1]["upper"] = 0.95
    assert "must end at 1.0" in config_error(raw)
    raw = raw_policy()
    raw["bands"][3]["intensity"] = "none"
    assert "must not decrease" in config_error(raw)


def test_overrides_must_name_known_bands_and_rules_and_stay_valid() -> None:
    raw = raw_policy()
    raw["cohorts"][0]["overrides"]["bands"] = {"mid": 0.4}
    assert "unknown bands mid" in config_error(raw)
    raw = raw_policy()
    raw["cohorts"][0]["overrides"]["rules"] = {"pause_tpi": 4}
    assert "unknown rules pause_tpi" in config_error(raw)
    raw = raw_policy()
    raw["cohorts"][0]["overrides"]["bands"] = {"uncertain": 0.85}  # past "mild" (0.8)
    assert "cohort mobile" in config_error(raw)


def test_other_policy_mistakes_are_named() -> None:
    raw = raw_policy()
    del raw["moment_defaults"]["help_hover"]
    assert "missing moments: help_hover" in config_error(raw)
    raw = raw_policy()
    raw["content_key"] = "{action}.{screen}"
    assert "content_key" in config_error(raw)
    raw = raw_policy()
    raw["caps"]["default_tz"] = "Mars/Olympus"
    assert "unknown time zone" in config_error(raw)
    raw = raw_policy()
    raw["signal_table"].append(dict(raw["signal_table"][0]))
    assert "duplicate rule names" in config_error(raw)
    raw = raw_policy()
    raw["experiments"]["layers"][0]["experiments"][0]["share"] = 1.5
    assert "share" in config_error(raw)
    raw = raw_policy()
    raw["cohorts"].append({"name": "all", "overrides": {}})
    assert "at least one of device" in config_error(raw)


def test_shipped_policy_loads() -> None:
    cfg = load_config(PolicyConfig, REPO_CONFIGS / "policy.yaml")
    assert cfg.experiments.holdout.share == 0.05
    assert cfg.caps.max_per_day == 2 and cfg.caps.max_per_episode == 1
