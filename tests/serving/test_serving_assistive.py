"""Accessibility: assistive sessions never get hesitation (pause) help or auto-playing video."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from test_serving_engine import NOW, make_engine, request, user

from core.policy_config import AssistiveConfig
from core.vocabulary import ActionType, MomentType
from serving.assistive import guard
from serving.policy import Policy, model_policy, rules_policy
from serving.schemas import EventIn, ScoreRequest
from serving.sessions import LiveEvent

moments = st.none() | st.sampled_from(list(MomentType))
signal_values = st.fixed_dictionaries(
    {},
    optional={
        "pause_s": st.floats(0, 120),
        "scroll_depth": st.floats(0, 100),
        "cta_fails": st.floats(0, 10),
        "click_rate": st.floats(0, 1),
        "secondary_clicks": st.floats(0, 10),
    },
)


@given(score=st.floats(0, 1), moment=moments, signals=signal_values, rules=st.booleans())
def test_guard_never_lets_a_pause_action_or_video_through(
    policy_cfg, score, moment, signals, rules
) -> None:
    th = Policy(policy_cfg).thresholds((), ())
    decide = rules_policy if rules else model_policy
    before = decide(score, moment, "funding", signals, th, policy_cfg)
    after = guard(before, moment, "funding", policy_cfg.assistive, policy_cfg.content_key)
    assert after.action not in policy_cfg.assistive.excluded_actions
    if moment in policy_cfg.assistive.hesitation_moments:
        assert after.action == ActionType.NONE
    if after.action != before.action:
        assert after.reasons[-1].kind == "assistive"
    elif before.action != ActionType.NONE:
        assert after == before  # nothing to suppress: untouched


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(moment=moments, signals=signal_values, sticky=st.booleans())
def test_engine_never_serves_assistive_a_pause_action_or_video(
    policy_cfg, signals_cfg, moment, signals, sticky
) -> None:
    """Through the whole engine; the flag comes either with the request or from the session."""
    engine = make_engine(policy_cfg, signals_cfg)
    uid = user(False, policy_cfg)
    if sticky:
        engine.sessions.apply(
            [LiveEvent("e1", f"{uid}-s", uid, None, NOW - 5, "view", "funding", None, None, True)]
        )
    d = engine.decide(request(uid, moment=moment, signals=signals, assistive=not sticky))
    for action in (d.action, d.would_action):
        assert action not in policy_cfg.assistive.excluded_actions
        if d.moment in policy_cfg.assistive.hesitation_moments:
            assert action == ActionType.NONE


def test_assistive_pause_is_suppressed_with_a_reason(policy_cfg, signals_cfg) -> None:
    engine = make_engine(policy_cfg, signals_cfg)
    uid = user(False, policy_cfg)
    other = user(False, policy_cfg, start=int(uid.split("-")[1]) + 1)
    plain = engine.decide(request(uid, session_id="a"))
    assert plain.action == ActionType.CONTEXTUAL_TIP  # the control: a 14 s pause gets a tip
    d = engine.decide(request(other, session_id="b", assistive=True))
    assert d.action == ActionType.NONE
    assert any(r.kind == "assistive" and r.name == "hesitation_moment" for r in d.reasons)


def test_assistive_video_replaced_by_configured_substitute(policy_cfg, signals_cfg) -> None:
    cfg = policy_cfg.model_copy(
        update={
            "assistive": AssistiveConfig(
                substitutes={ActionType.MICRO_VIDEO: ActionType.GUIDE},
            )
        }
    )
    engine = make_engine(cfg, signals_cfg)
    uid = user(False, cfg)
    other = user(False, cfg, start=int(uid.split("-")[1]) + 1)  # a fresh user: no cap in the way
    low_clicks = dict(moment=MomentType.LOW_CLICK_RATE, signals={"click_rate": 0.1})
    assert engine.decide(request(uid, session_id="a", **low_clicks)).action == (
        ActionType.MICRO_VIDEO
    )
    d = engine.decide(request(other, session_id="b", assistive=True, **low_clicks))
    assert d.action == ActionType.GUIDE and d.content is not None and "guide" in d.content
    assert any(r.name == "excluded_action" for r in d.reasons)


def test_config_rejects_a_substitute_that_is_excluded() -> None:
    with pytest.raises(ValidationError, match="non-excluded"):
        AssistiveConfig(substitutes={ActionType.MICRO_VIDEO: ActionType.MICRO_VIDEO})
    with pytest.raises(ValidationError, match="not in excluded_actions"):
        AssistiveConfig(substitutes={ActionType.GUIDE: ActionType.TOOLTIP})


def test_request_and_event_flags_are_optional_and_strict() -> None:
    base = {"user_id": "u", "session_id": "s", "step": "funding"}
    assert ScoreRequest.model_validate(base).to_engine(now=NOW).assistive is False
    assert (
        ScoreRequest.model_validate({**base, "assistive": None}).to_engine(now=NOW).assistive
        is False
    )
    assert ScoreRequest.model_validate({**base, "assistive": True}).to_engine(now=NOW).assistive
    with pytest.raises(ValidationError):
        ScoreRequest.model_validate({**base, "assistive": "yes"})
    event = {"event_id": "e", "user_id": "u", "ts": "2026-01-01T00:00:00Z", "type": "view"}
    assert EventIn.model_validate(event).assistive is None  # old events still validate
    assert EventIn.model_validate({**event, "assistive": True}).assistive is True
    with pytest.raises(ValidationError):
        EventIn.model_validate({**event, "assistive": "true"})


def test_assistive_thresholds_apply_only_to_assistive_sessions(policy_cfg, signals_cfg) -> None:
    upper = policy_cfg.assistive.overrides.bands["uncertain"]
    base = {b.name: b.upper for b in policy_cfg.bands}["uncertain"]
    assert base < upper  # the shipped config asks assistive sessions for more evidence
    engine = make_engine(policy_cfg, signals_cfg)
    uid = user(False, policy_cfg)
    # heuristic score 0.3 * (1 - 0/100) + 0.5 * 15/30 = 0.55: between the two uppers
    kw = dict(moment=MomentType.SHALLOW_SCROLL, signals={"scroll_depth": 0.0, "pause_s": 15.0})
    plain = engine.decide(request(uid, session_id="a", **kw))
    mine = engine.decide(request(uid, session_id="b", assistive=True, **kw))
    assert base <= plain.score < upper and mine.score == plain.score
    assert plain.band != "uncertain" and mine.band == "uncertain"


def test_assistive_overrides_are_validated(policy_cfg) -> None:
    data = policy_cfg.model_dump(mode="json")
    data["assistive"]["overrides"] = {"bands": {"no_such_band": 0.5}}
    with pytest.raises(ValidationError, match="assistive: unknown bands"):
        type(policy_cfg).model_validate(data)
    data["assistive"]["overrides"] = {"bands": {"uncertain": 0.9}}  # past the next band
    with pytest.raises(ValidationError, match="assistive"):
        type(policy_cfg).model_validate(data)


@pytest.mark.parametrize(
    ("types", "agent", "why"),
    [
        (["view", "key"], None, "keyboard_only"),  # keyboard navigation, no pointer
        (["view", "click"], "Mozilla/5.0 NVDA/2024.1", "user_agent"),  # a screen reader says so
        (["view", "key", "scroll"], None, None),  # the control: a pointer, read as sighted
    ],
)
def test_the_engine_infers_assistive_sessions_from_their_events(
    policy_cfg, signals_cfg, types, agent, why
) -> None:
    """No flag anywhere: the live session's own events decide (features.signals)."""
    engine = make_engine(policy_cfg, signals_cfg)
    uid = user(False, policy_cfg)
    engine.sessions.apply(
        [
            LiveEvent(
                f"e{i}",
                f"{uid}-s",
                uid,
                None,
                NOW - 20 + i,
                t,
                "funding",
                "x",
                None,
                user_agent=agent,
            )
            for i, t in enumerate(types)
        ]
    )
    d = engine.decide(request(uid))  # a 14 s pause on identity verification
    if why is None:
        assert d.action == ActionType.CONTEXTUAL_TIP
        assert not any(r.kind == "assistive" for r in d.reasons)
    else:
        assert d.action == ActionType.NONE
        [r] = [r for r in d.reasons if r.kind == "assistive"]
        assert r.name == "hesitation_moment" and f"({why})" in r.detail


def test_events_posted_to_the_api_make_a_session_assistive(tmp_path) -> None:
    """Through HTTP: /events carries a screen reader's user agent or keyboard navigation,
    /score for that session answers a pause with nothing; a pointer user gets the tip."""
    from datetime import UTC, datetime, timedelta

    from serving_helpers import QUIET, start_bare, tmp_layout

    layout = tmp_layout(tmp_path, QUIET)
    at = datetime.now(UTC) - timedelta(seconds=30)

    def ev(sid: str, i: int, etype: str, agent: str = "Mozilla/5.0 Firefox/128.0") -> dict:
        ts = (at + timedelta(seconds=i)).isoformat().replace("+00:00", "Z")
        return {"event_id": f"{sid}-{i}", "user_id": f"u-{sid}", "session_id": sid, "ts": ts,
                "type": etype, "step": "funding", "user_agent": agent}  # fmt: skip

    sessions = {
        "reader": [ev("reader", 0, "view", "Mozilla/5.0 NVDA/2024.1"), ev("reader", 1, "click")],
        "keys": [ev("keys", 0, "view"), ev("keys", 1, "key")],
        "mouse": [ev("mouse", 0, "view"), ev("mouse", 1, "key"), ev("mouse", 2, "scroll")],
    }
    with pytest.MonkeyPatch.context() as mp, start_bare(mp, layout) as client:
        answers = {}
        for sid, events in sessions.items():
            r = client.post("/events", json={"events": events})
            assert r.status_code == 200 and r.json()["accepted"] == len(events), r.text
            body = {"user_id": f"u-{sid}", "session_id": sid, "step": "funding",
                    "moment": "pause", "signals": {"pause_s": 14}}  # fmt: skip
            r = client.post("/score", json=body)
            assert r.status_code == 200, r.text
            answers[sid] = r.json()
    for sid, why in [("reader", "user_agent"), ("keys", "keyboard_only")]:
        assert answers[sid]["action"]["type"] == "none"
        assert any(f"({why})" in r["detail"] for r in answers[sid]["reasons"]), answers[sid]
    assert answers["mouse"]["action"]["type"] == "contextual_tip"
