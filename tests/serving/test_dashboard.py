"""The live dashboard: its pure aggregation, the decision-log window read on every backend,
the routes (auth, bad input, budget) in both servers, and its config."""

from __future__ import annotations

import uuid
from pathlib import Path

import pandas as pd
import pytest
from pydantic import ValidationError
from serving_helpers import MINIMAL, QUIET, SERVERS, decision_row, merge, tmp_layout
from statsmodels.stats.proportion import proportion_confint

from serving.config import DashboardConfig
from serving.dashboard import flags, log_columns, segments, shadow_agreement, summarize
from serving.decision_log import DecisionLog, LogWindow, memory_log, postgres_log, sqlite_log

PG_DSN = "postgresql://postgres@127.0.0.1:5432/test"
T0 = 1_741_000_000.0
TOKEN = "dash-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def wilson_bounds(k: int, n: int) -> tuple[float, float]:
    lo, hi = proportion_confint(k, n, alpha=0.05, method="wilson")
    return round(0.0 if k == 0 else lo, 6), round(1.0 if k == n else hi, 6)


def frame(rows: list[dict]) -> pd.DataFrame:
    cols = ["decision_id", "ts", *log_columns()]
    return pd.DataFrame([{c: r.get(c) for c in cols} for r in rows], columns=cols)


def outcomes_frame(pairs: list[tuple[str, str]]) -> pd.DataFrame:
    return pd.DataFrame(
        [(d, o, T0, T0) for d, o in pairs], columns=["decision_id", "outcome", "ts", "logged_at"]
    )


# 10 decisions: moment pause (6) / cta_fail (4); 2 held out; 5 shown; 3 accepted, one of them
# on a decision not shown (ignored); 4 completed.
ROWS = [
    decision_row(f"d{i}", T0 + i, moment=m, action=a, would_action=w, holdout=h, arm=arm)
    for i, (m, a, w, h, arm) in enumerate(
        [
            ("pause", "contextual_tip", "contextual_tip", 0, "A"),
            ("pause", "contextual_tip", "contextual_tip", 0, "A"),
            ("pause", "none", "none", 0, "B"),
            ("pause", "none", "contextual_tip", 1, "holdout"),
            ("pause", "guide", "guide", 0, "B"),
            ("pause", "none", "none", 0, None),
            ("cta_fail", "guide", "guide", 0, None),
            ("cta_fail", "none", "guide", 1, "holdout"),
            ("cta_fail", "contextual_tip", "contextual_tip", 0, "A"),
            ("cta_fail", "none", "none", 0, None),
        ]
    )
]
OUTCOMES = [
    ("d0", "accepted"),
    ("d0", "step_completed"),
    ("d4", "accepted"),
    ("d2", "accepted"),  # not shown: not an acceptance
    ("d3", "step_completed"),
    ("d6", "step_completed"),
    ("d9", "step_completed"),
    ("d8", "dismissed"),
]


def test_rates_per_segment_match_counts_by_hand() -> None:
    flagged = flags(frame(ROWS), outcomes_frame(OUTCOMES))
    by_moment = {r["value"]: r for r in segments(flagged, "moment", 0.95)}
    pause, cta = by_moment["pause"], by_moment["cta_fail"]
    # pause: 6 decisions, 5 outside the holdout, 3 shown (d0 d1 d4), accepted d0 d4,
    # completed d0 d3
    assert (pause["decisions"], pause["eligible"], pause["shown"]) == (6, 5, 3)
    assert (pause["accepted"], pause["completed"]) == (2, 2)
    assert pause["trigger_rate"]["value"] == pytest.approx(3 / 5)
    assert (pause["trigger_rate"]["lo"], pause["trigger_rate"]["hi"]) == wilson_bounds(3, 5)
    assert pause["acceptance"]["value"] == pytest.approx(2 / 3)
    assert (pause["acceptance"]["lo"], pause["acceptance"]["hi"]) == wilson_bounds(2, 3)
    assert (pause["completion"]["lo"], pause["completion"]["hi"]) == wilson_bounds(2, 6)
    # cta_fail: 4 decisions, 3 eligible, 2 shown (d6 d8), none accepted, completed d6 d9
    assert (cta["decisions"], cta["eligible"], cta["shown"], cta["accepted"]) == (4, 3, 2, 0)
    assert cta["acceptance"]["value"] == 0.0 and cta["acceptance"]["lo"] == 0.0
    assert cta["completion"]["value"] == pytest.approx(0.5)
    arms = {r["value"]: r["decisions"] for r in segments(flagged, "arm", 0.95)}
    assert arms == {"A": 3, "B": 2, "holdout": 2, "(none)": 3}
    actions = {r["value"]: r["shown"] for r in segments(flagged, "would_action", 0.95)}
    assert actions == {"contextual_tip": 3, "guide": 2, "none": 0}


def test_summary_totals_fallbacks_and_timeline() -> None:
    rows = [
        *ROWS,
        decision_row("f1", T0 + 20, source="rules", fallback_reason="cold_start"),
        decision_row("f2", T0 + 21, source="rules", fallback_reason="cold_start"),
        decision_row("f3", T0 + 22, source="rules", fallback_reason="budget"),
    ]
    window = LogWindow(frame(rows), outcomes_frame(OUTCOMES), truncated=False)
    s = summarize(
        window,
        name="1h",
        since=T0 - 3600 + 30,
        until=T0 + 30,
        confidence=0.95,
        shadow_tolerance=0.05,
        drift={"status": "none", "detail": "-"},
    )
    assert s["totals"]["decisions"] == 13 and s["totals"]["holdout"] == 2
    assert s["totals"]["by_source"] == {"model": 10, "rules": 3}
    assert s["fallbacks"] == [
        {"reason": "cold_start", "decisions": 2, "share": round(2 / 13, 6)},
        {"reason": "budget", "decisions": 1, "share": round(1 / 13, 6)},
    ]
    assert sum(p["decisions"] for p in s["timeline"]) == 13
    assert s["timeline"][-1]["decisions"] == 13  # all in the last slice of the hour
    assert s["timeline"][-1]["shown"] == 5 + 3  # f1-f3 keep decision_row's contextual_tip
    assert s["shadow"]["status"] == "off"


def test_an_empty_window_has_no_rates_and_no_errors() -> None:
    empty = LogWindow(frame([]), outcomes_frame([]), truncated=False)
    s = summarize(
        empty, name="1h", since=T0, until=T0 + 3600, confidence=0.95, shadow_tolerance=0.05,
        drift={"status": "none", "detail": "-"},
    )  # fmt: skip
    assert s["totals"]["decisions"] == 0 and s["totals"]["trigger_rate"]["value"] is None
    assert s["segments"]["moment"] == [] and s["fallbacks"] == []


def test_shadow_agreement_off_without_the_columns_and_measured_with_them() -> None:
    plain = frame(ROWS).drop(columns=["shadow_score", "shadow_version"], errors="ignore")
    assert shadow_agreement(plain, 0.05, 0.95)["status"] == "off"
    scored = plain.assign(
        score=[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95],
        shadow_score=[0.12, 0.35, 0.31, 0.44, 0.5, None, 0.74, 0.79, 0.8, 0.96],
        shadow_version=["7"] * 10,
    )
    result = shadow_agreement(scored, 0.05, 0.95)
    assert result["status"] == "on"
    (v,) = result["versions"]
    # |diff| = .02 .15 .01 .04 0 - .04 .01 .1 .01 -> 7 of 9 within 0.05
    assert v["shadow_version"] == "7" and v["pairs"] == 9
    assert v["agreement"]["value"] == pytest.approx(7 / 9)
    assert v["mean_abs_diff"] == pytest.approx(0.38 / 9, abs=1e-6)
    assert v["spearman"] == pytest.approx(1.0 - 6 * 2 / (9 * 80), abs=1e-6)  # ranks 2 and 3 swapped
    unscored = scored.assign(shadow_score=None)
    assert shadow_agreement(unscored, 0.05, 0.95)["status"] == "off"


# --- the window read, on every backend ------------------------------------------------------


def fill(log: DecisionLog) -> None:
    for i in range(6):
        log.append_decision(decision_row(f"w{i}", T0 + i * 100))
    log.append_outcome("w1", "accepted", T0 + 150)  # decision before the window
    log.append_outcome("w4", "accepted", T0 + 450)
    log.append_outcome("w5", "step_completed", T0 + 550)


def check_window(log: DecisionLog) -> None:
    fill(log)
    recent = log.recent(T0 + 300, log_columns(), limit=100)
    assert sorted(recent.decisions["decision_id"]) == ["w3", "w4", "w5"]
    assert sorted(recent.outcomes["decision_id"]) == ["w4", "w5"]
    assert not recent.truncated
    assert list(recent.decisions.columns) == ["decision_id", "ts", *log_columns()]
    capped = log.recent(T0, log_columns(), limit=2)  # the newest two
    assert sorted(capped.decisions["decision_id"]) == ["w4", "w5"] and capped.truncated
    assert sorted(capped.outcomes["decision_id"]) == ["w4", "w5"]
    with pytest.raises(ValueError, match="unknown decision columns"):
        log.recent(T0, ["no_such_column"], limit=10)


def test_recent_window_sqlite(tmp_path: Path) -> None:
    with sqlite_log(tmp_path / "d.db", synchronous="normal", batch_max=8) as log:
        check_window(log)


def test_recent_window_memory() -> None:
    with memory_log() as log:
        check_window(log)


def test_recent_window_postgres() -> None:
    psycopg = pytest.importorskip("psycopg")
    schema = f"dash_{uuid.uuid4().hex[:10]}"
    try:
        with postgres_log(PG_DSN, schema, batch_max=8) as log:
            check_window(log)
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as con:
            con.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


# --- the routes ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(SERVERS))
def test_routes_need_the_token_reject_bad_windows_and_count_the_log(
    kind: str, tmp_path: Path, monkeypatch
) -> None:
    layout = tmp_layout(tmp_path, QUIET)
    with SERVERS[kind](monkeypatch, layout, token=TOKEN) as client:
        ids = []
        for i in range(4):
            body = {**MINIMAL, "user_id": f"u{i}", "session_id": f"s{i}"}
            r = client.post("/score", json=body, headers=AUTH)
            assert r.status_code == 200, r.text
            ids.append(r.json()["decision_id"])
        for d in ids[:2]:
            r = client.post(
                "/outcome", json={"decision_id": d, "outcome": "accepted"}, headers=AUTH
            )
            assert r.status_code == 200
        assert client.get("/dashboard").status_code == 401
        assert client.get("/dashboard.json").status_code == 401
        bad = client.get("/dashboard.json?window=5y", headers=AUTH)
        assert bad.status_code == 400 and bad.json()["detail"][0]["loc"] == ["query", "window"]
        r = client.get("/dashboard.json?window=1h", headers=AUTH)
        assert r.status_code == 200, r.text
        totals = r.json()["totals"]
        with sqlite_log(layout.serving / "decisions.db", synchronous="normal", batch_max=1) as log:
            logged, outcomes = log.decisions(), log.outcomes()
        shown = set(logged.loc[logged["action"] != "none", "decision_id"])
        accepted = set(outcomes.loc[outcomes["outcome"] == "accepted", "decision_id"])
        assert totals["decisions"] == len(logged) == 4
        assert totals["shown"] == len(shown)
        assert totals["accepted"] == len(shown & accepted)
        page = client.get("/dashboard?window=24h", headers=AUTH)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert 'data-figure="totals/decisions">4<' in page.text
        assert '<meta http-equiv="refresh" content="30">' in page.text


def test_a_hung_log_read_answers_503_within_the_budget(tmp_path: Path, monkeypatch) -> None:
    """PostgreSQL behind a proxy that stops forwarding: the read hangs, the page says 503."""
    import time

    psycopg = pytest.importorskip("psycopg")
    from fault_servers import BlackHoleProxy

    proxy = BlackHoleProxy(5432)
    schema = f"dash_{uuid.uuid4().hex[:10]}"
    log_cfg = {
        "kind": "postgres",
        "dsn": f"postgresql://postgres@127.0.0.1:{proxy.port}/test",
        "schema_name": schema,
        "call_timeout_s": 5,
    }
    patches = merge(
        QUIET,
        {"serving.yaml": {"backends.decision_log": log_cfg, "dashboard.read_budget_ms": 300}},
    )
    layout = tmp_layout(tmp_path, patches)
    try:
        with SERVERS["bare"](monkeypatch, layout, token=None) as client:
            assert client.post("/score", json=MINIMAL).status_code == 200
            assert client.get("/dashboard.json").json()["totals"]["decisions"] == 1
            proxy.black_hole = True
            for sock in list(proxy._sockets):  # the open connections go quiet too
                sock.close()
            started = time.monotonic()
            r = client.get("/dashboard.json")
            waited = time.monotonic() - started
            assert r.status_code == 503, r.text
            assert r.json()["detail"][0]["loc"] == ["query", "decision_log"]
            assert waited < 5  # the 300 ms budget, not the 5 s statement deadline
            assert client.get("/livez").status_code == 200
            proxy.black_hole = False
    finally:
        proxy.close()
        with psycopg.connect(PG_DSN, autocommit=True) as con:
            con.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def test_the_dashboard_config_is_strict(serving_cfg) -> None:
    assert serving_cfg.dashboard.default_window in serving_cfg.dashboard.windows_h
    with pytest.raises(ValidationError, match="extra"):
        DashboardConfig(refresh=5)
    with pytest.raises(ValidationError, match="default_window"):
        DashboardConfig(windows_h={"1h": 1}, default_window="24h")
    with pytest.raises(ValidationError, match="> 0 hours"):
        DashboardConfig(windows_h={"1h": 0, "24h": 24})
