"""Rules fallback: the heuristic score (monotone, bounded) and the signal table."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.heuristic import HeuristicConfig, heuristic_score
from core.policy_config import SignalRule
from core.vocabulary import ActionType, MomentType
from serving.policy import resolve, rules_policy
from serving.rules import detect_moment, first_hit, holds, score_signals

depths = st.floats(0, 100)
pauses = st.floats(0, 3600)
clicks = st.floats(0, 50)


def test_heuristic_weights_from_the_source_document(policy_cfg) -> None:
    h = policy_cfg.heuristic
    assert (h.weights.scroll, h.weights.delay, h.weights.secondary_clicks) == (0.3, 0.5, 0.2)
    # the dispatcher's example: 30 % depth, 14 s pause, no secondary clicks
    expected = 0.3 * (1 - 30 / 100) + 0.5 * (14 / 30) + 0.2 * 0
    assert heuristic_score(30, 14, 0, h) == pytest.approx(expected)
    assert heuristic_score(0, 1000, 100, h) == pytest.approx(1.0)
    assert heuristic_score(100, 0, 0, h) == 0.0
    # missing signals contribute nothing
    assert score_signals({}, h) == 0.0
    assert score_signals({"pause_s": 30.0}, h) == pytest.approx(0.5)


def test_heuristic_vectorised_equals_scalar(policy_cfg) -> None:
    h = policy_cfg.heuristic
    d = np.array([10.0, np.nan, 80.0])
    p = np.array([5.0, 20.0, np.nan])
    c = np.array([0.0, 3.0, 9.0])
    vec = heuristic_score(d, p, c, h)
    assert vec.shape == (3,)
    for i in range(3):
        assert vec[i] == pytest.approx(heuristic_score(d[i], p[i], c[i], h))


signal_floats = st.floats(allow_nan=True, allow_infinity=True)


@given(st.lists(st.tuples(signal_floats, signal_floats, signal_floats), min_size=1, max_size=20))
def test_scalar_path_is_bit_identical_to_the_vectorised_one(policy_cfg, rows) -> None:
    """The server scores plain floats in Python, training scores arrays in numpy: one formula."""
    h = policy_cfg.heuristic
    d, p, c = (np.array(col, dtype=np.float64) for col in zip(*rows, strict=True))
    vec = heuristic_score(d, p, c, h)
    for i, (di, pi, ci) in enumerate(rows):
        scalar = heuristic_score(di, pi, ci, h)
        assert isinstance(scalar, float)
        assert scalar == vec[i], (di, pi, ci)  # exact, not approx


@given(depths, depths, pauses, clicks)
def test_shallower_scroll_never_lowers(policy_cfg, a: float, b: float, p: float, c: float):
    h = policy_cfg.heuristic
    shallow, deep = min(a, b), max(a, b)
    assert heuristic_score(shallow, p, c, h) >= heuristic_score(deep, p, c, h)


@given(pauses, pauses, depths, clicks)
def test_longer_pause_never_lowers(policy_cfg, a: float, b: float, d: float, c: float):
    h = policy_cfg.heuristic
    assert heuristic_score(d, max(a, b), c, h) >= heuristic_score(d, min(a, b), c, h)


@given(clicks, clicks, depths, pauses)
def test_more_secondary_clicks_never_lower(policy_cfg, a: float, b: float, d: float, p: float):
    h = policy_cfg.heuristic
    assert heuristic_score(d, p, max(a, b), h) >= heuristic_score(d, p, min(a, b), h)


@given(st.floats(-1e6, 1e6), st.floats(-1e6, 1e6), st.floats(-1e6, 1e6))
def test_score_stays_in_unit_interval(policy_cfg, d: float, p: float, c: float):
    assert 0.0 <= heuristic_score(d, p, c, policy_cfg.heuristic) <= 1.0


def test_heuristic_config_rejects_weights_not_summing_to_one() -> None:
    with pytest.raises(ValueError, match="sum to 1"):
        HeuristicConfig(
            weights={"scroll": 0.3, "delay": 0.3, "secondary_clicks": 0.2},
            scroll_full_depth=100,
            delay_full_s=30,
            secondary_clicks_full=5,
        )


@pytest.mark.parametrize(
    ("moment", "signals", "rule", "action"),
    [
        ("pause", {"pause_s": 12.0}, "pause_tip", ActionType.CONTEXTUAL_TIP),
        ("pause", {"pause_s": 29.9}, "pause_tip", ActionType.CONTEXTUAL_TIP),
        ("pause", {"pause_s": 30.0}, "pause_live_chat", ActionType.LIVE_CHAT),
        ("shallow_scroll", {"scroll_depth": 39.0}, "scroll_guide", ActionType.GUIDE),
        ("shallow_scroll", {"scroll_depth": 14.0}, "scroll_walkthrough", ActionType.WALKTHROUGH),
        ("cta_fail", {"cta_fails": 3.0}, "cta_fail_tooltip", ActionType.TOOLTIP),
        ("low_click_rate", {"click_rate": 0.19}, "low_click_rate_video", ActionType.MICRO_VIDEO),
    ],
)
def test_signal_table_of_the_source_document(policy_cfg, moment, signals, rule, action) -> None:
    th = resolve(policy_cfg, [])
    out = rules_policy(0.5, MomentType(moment), "welcome", signals, th, policy_cfg)
    assert out.action == action
    assert out.reasons[0].name == rule  # the rule that fired is the reason
    assert out.content == f"{action.value}.{moment}.welcome"


@pytest.mark.parametrize(
    ("moment", "signals"),
    [
        ("pause", {"pause_s": 11.9}),
        ("shallow_scroll", {"scroll_depth": 40.0}),
        ("cta_fail", {"cta_fails": 2.0}),
        ("low_click_rate", {"click_rate": 0.2}),
        ("pause", {}),  # signal missing: no rule holds
        ("backtrack", {"pause_s": 100.0}),  # no rule for this moment
    ],
)
def test_no_rule_no_trigger(policy_cfg, moment, signals) -> None:
    out = rules_policy(
        0.9, MomentType(moment), "welcome", signals, resolve(policy_cfg, []), policy_cfg
    )
    assert out.action == ActionType.NONE
    assert out.reasons[0].name == "no_rule"


@given(pauses, pauses)
def test_rules_longer_pause_never_less_intensive(policy_cfg, a: float, b: float) -> None:
    from serving.policy import ACTION_INTENSITY

    th = resolve(policy_cfg, [])

    def level(p: float) -> int:
        out = rules_policy(0.0, MomentType.PAUSE, "s", {"pause_s": p}, th, policy_cfg)
        return ACTION_INTENSITY[out.action]

    assert level(max(a, b)) >= level(min(a, b))


def test_holds_and_first_hit() -> None:
    rule = SignalRule(
        name="r",
        moments=["pause"],
        signal="pause_s",
        op=">=",
        threshold=12,
        action="contextual_tip",
    )
    assert holds(rule, 12.0) and not holds(rule, 11.99)
    assert not holds(rule, None) and not holds(rule, math.nan)
    assert first_hit([rule], MomentType.PAUSE, {"pause_s": 20.0}).value == 20.0
    assert first_hit([rule], MomentType.CTA_FAIL, {"pause_s": 20.0}) is None
    assert first_hit([rule], None, {"pause_s": 20.0}) is None
    with pytest.raises(ValueError, match="unknown signal"):
        SignalRule(
            name="x", moments=["pause"], signal="pauze_s", op=">", threshold=1, action="guide"
        )
    with pytest.raises(ValueError, match="other than none"):
        SignalRule(
            name="x", moments=["pause"], signal="pause_s", op=">", threshold=1, action="none"
        )


def test_detect_moment_when_the_dispatcher_sent_none(policy_cfg) -> None:
    rules = [*policy_cfg.escalation, *policy_cfg.signal_table]
    assert detect_moment(rules, {"pause_s": 40.0}) == MomentType.PAUSE
    assert detect_moment(rules, {"cta_fails": 4.0, "pause_s": 1.0}) == MomentType.CTA_FAIL
    assert detect_moment(rules, {"pause_s": 1.0}) is None
