"""Bot scores on hand-made sessions, and properties of the score."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ingest_factory import event, typed

from features.config import BotConfig
from features.ingest.bots import BOT_SCORES_SCHEMA, SIGNALS, bot_signals, score_sessions

BROWSER = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/124.0 Safari/537.36"
HUMAN_GAPS = [3.1, 11.0, 1.4, 25.0, 6.2, 2.0, 14.5, 4.4, 9.0, 1.1]
HUMAN_TYPES = ["view", "scroll", "click", "hover", "scroll", "click", "view", "click", "scroll"]


def session(name: str, gaps: list[float], types: list[str], ua: str | None) -> list[dict]:
    times = np.concatenate([[0.0], np.cumsum(gaps)])
    kinds = (types * (len(times) // len(types) + 1))[: len(times)]
    return [
        event(f"{name}-{i}", float(t), session_id=name, type=k, user_agent=ua)
        for i, (t, k) in enumerate(zip(times, kinds, strict=True))
    ]


def scores(rows: list[dict], cfg: BotConfig) -> dict[str, tuple[float, bool]]:
    table = score_sessions(typed(rows), cfg)
    assert table.schema == BOT_SCORES_SCHEMA
    return {r["session_id"]: (r["bot_score"], r["is_bot"]) for r in table.to_pylist()}


def test_hand_made_bots_are_flagged_and_humans_are_not(events_cfg) -> None:
    cfg = events_cfg.bots
    rows = (
        session("human", HUMAN_GAPS, HUMAN_TYPES, BROWSER)
        # a script: a click every 0.5 s, no scroll or hover, browser-like user agent
        + session("regular", [0.5] * 30, ["view", "click", "cta_fail"], BROWSER)
        # the same script waiting once for a slow page: one pause does not make it human
        + session("paused", [0.5] * 15 + [8.0] + [0.5] * 15, ["view", "click"], BROWSER)
        # a crawler announcing itself, human-like timing
        + session(
            "crawler", HUMAN_GAPS[:3], ["view"], "Googlebot/2.1 (+http://www.google.com/bot.html)"
        )
        + session("requests", [2.0], ["view"], "python-requests/2.31.0")
        + session("headless", HUMAN_GAPS, HUMAN_TYPES, BROWSER.replace("Chrome", "HeadlessChrome"))
        # a fast but irregular human, and a short regular one: not enough evidence
        + session("fast-human", [0.2, 1.5, 0.3, 2.5, 0.4, 0.1, 3.0, 0.2], HUMAN_TYPES, BROWSER)
        + session("short", [1.0, 1.0, 1.0], ["view", "click"], BROWSER)
    )
    result = scores(rows, cfg)
    flagged = {name for name, (_, is_bot) in result.items() if is_bot}
    assert flagged == {"regular", "paused", "crawler", "requests", "headless"}
    assert result["human"][0] == 0.0
    assert result["short"][0] == 0.0
    assert 0 < result["fast-human"][0] < cfg.threshold


def test_signals_explain_the_score(events_cfg) -> None:
    cfg = events_cfg.bots
    rows = session("regular", [0.5] * 30, ["view", "click"], BROWSER)
    signals = bot_signals(typed(rows), cfg).loc["regular"]
    assert signals["events"] == 31
    assert signals["gap_cv"] == pytest.approx(0.0)
    assert signals["rate_per_min"] == pytest.approx(120.0)
    assert (signals["regular_gaps"], signals["event_rate"], signals["no_scroll_hover"]) == (1, 1, 1)
    assert signals["user_agent"] == 0
    expected = 1 - (1 - cfg.regular_gaps.weight) * (1 - cfg.event_rate.weight) * (
        1 - cfg.no_scroll_hover.weight
    )
    assert signals["score"] == pytest.approx(expected)


def test_threshold_comes_from_config(events_cfg) -> None:
    rows = session("regular", [0.5] * 30, ["view", "click"], BROWSER)
    strict = events_cfg.bots.model_copy(update={"threshold": 0.99})
    assert scores(rows, events_cfg.bots)["regular"][1] is True
    assert scores(rows, strict)["regular"][1] is False


def test_empty_input_gives_an_empty_table(events_cfg) -> None:
    assert score_sessions(typed([]), events_cfg.bots).num_rows == 0


_GAPS = st.lists(st.floats(min_value=0.0, max_value=600.0), min_size=0, max_size=40)
_TYPES = st.lists(st.sampled_from(["view", "click", "scroll", "hover", "back"]), min_size=1)
_UAS = st.sampled_from([None, BROWSER, "curl/8.4.0", "Mozilla/5.0 (compatible; bingbot/2.0)"])


@settings(max_examples=60, deadline=None)
@given(_GAPS, _TYPES, _UAS)
def test_score_properties(events_cfg, gaps, types, ua) -> None:
    cfg = events_cfg.bots
    rows = session("s", gaps, types, ua)
    signals = bot_signals(typed(rows), cfg).loc["s"]
    assert all(0.0 <= signals[name] <= 1.0 for name in SIGNALS)
    assert 0.0 <= signals["score"] <= 1.0
    # a declared bot user agent can only raise the score, to at least its weight
    as_bot = bot_signals(typed(session("s", gaps, types, "python-requests/2.31")), cfg).loc["s"]
    assert as_bot["score"] >= max(signals["score"], cfg.user_agent.weight) - 1e-12
    # behaviour counts only from min_events on
    if len(rows) < cfg.min_events:
        assert signals["score"] == pytest.approx(cfg.user_agent.weight * signals["user_agent"])
    # with bot-like weights all off, nothing but the user agent matters
    silent = cfg.model_copy(
        update={
            name: getattr(cfg, name).model_copy(update={"weight": 0.0})
            for name in ("event_rate", "regular_gaps", "no_scroll_hover")
        }
    )
    table = score_sessions(typed(rows), silent)
    assert table["is_bot"].to_pylist() == [signals["user_agent"] == 1.0]
    assert isinstance(table, pa.Table)
