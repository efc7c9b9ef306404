"""The API through BentoML (`to_asgi()`) and bare (`serving.app_bare`), the same tests for
both: the dispatcher's contract, every bad input, events, outcomes, health, metrics, size
limits."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pyarrow.parquet as pq
import pytest
from serving_helpers import MINIMAL, QUIET, SERVERS, tmp_layout

REQUIRED_KEYS = {
    "decision_id",
    "score",
    "band",
    "moment",
    "action",
    "reasons",
    "source",
    "fallback_reason",
    "model_version",
    "arm",
    "capped",
}


@pytest.fixture(scope="module", params=list(SERVERS))
def service(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """One rules-only server per kind (BentoML, bare) for the read-mostly tests."""
    layout = tmp_layout(tmp_path_factory.mktemp("svc"), QUIET)
    with pytest.MonkeyPatch.context() as mp, SERVERS[request.param](mp, layout) as client:
        yield client, layout


def test_minimal_dispatcher_request_exactly_as_written(service) -> None:
    client, layout = service
    r = client.post("/score", json=MINIMAL)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) >= REQUIRED_KEYS
    assert body["source"] == "rules" and body["fallback_reason"] == "no_model"
    assert body["moment"] == "pause" and body["band"] in {"routine", "uncertain", "mild", "high"}
    assert body["action"]["type"] in {"contextual_tip", "none"}
    assert body["reasons"][0]["name"] == "no_model"
    # acknowledged means durable: the row is in the SQLite log already
    db = layout.serving / "decisions.db"
    ids = {r[0] for r in sqlite3.connect(db).execute("SELECT decision_id FROM decisions")}
    assert body["decision_id"] in ids


def _bad(overrides: dict | None = None, drop: str | None = None, signals: dict | None = None):
    body = {**MINIMAL, **(overrides or {})}
    if signals is not None:
        body["signals"] = signals
    if drop:
        body.pop(drop)
    return body


FUTURE = (datetime.now(UTC) + timedelta(hours=2)).isoformat()

BAD_SCORES = {
    "missing user_id": (_bad(drop="user_id"), "user_id"),
    "user_id not text": (_bad({"user_id": 123}), "user_id"),
    "empty session_id": (_bad({"session_id": ""}), "session_id"),
    "unknown step": (_bad({"step": "checkout"}), "step"),
    "unknown moment": (_bad({"moment": "sneeze"}), "moment"),
    "negative pause": (_bad(signals={"pause_s": -1}), "signals"),
    "depth over 100": (_bad(signals={"scroll_depth": 101}), "signals"),
    "depth under 0": (_bad(signals={"scroll_depth": -0.5}), "signals"),
    "click rate over 1": (_bad(signals={"click_rate": 1.5}), "signals"),
    "unknown signal": (_bad(signals={"pause_seconds": 3}), "signals"),
    "signal not a number": (_bad(signals={"pause_s": "long"}), "signals"),
    "signals not an object": (_bad({"signals": [1, 2]}), "signals"),
    "unknown field": (_bad({"sigals": {}}), "sigals"),
    "naive timestamp": (_bad({"ts": "2025-03-03T12:00:00"}), "ts"),
    "future timestamp": (_bad({"ts": FUTURE}), "ts"),
    "unknown time zone": (_bad({"tz": "Mars/Olympus"}), "tz"),
    "id too long": (_bad({"user_id": "u" * 500}), "user_id"),
    "returning not bool": (_bad({"returning": "maybe"}), "returning"),
    # issue 11 item 6: no coercion of mistyped fields, bounded labels, no year-1 times
    "pause as text": (_bad(signals={"pause_s": "14"}), "signals"),
    "pause as boolean": (_bad(signals={"pause_s": True}), "signals"),
    "returning as text": (_bad({"returning": "yes"}), "returning"),
    "returning as number": (_bad({"returning": 1}), "returning"),
    "device too long": (_bad({"device": "d" * 200_000}), "device"),
    "channel too long": (_bad({"channel": "c" * 65}), "channel"),
    "empty device": (_bad({"device": ""}), "device"),
    "empty tz": (_bad({"tz": ""}), "tz"),
    "year 1": (_bad({"ts": "0001-01-01T00:00:00Z"}), "ts"),
    # found by schemathesis: a zone name too long for a file name was a 500 (OSError)
    "tz too long for a file name": (_bad({"tz": "Z" * 5000}), "tz"),
}


@pytest.mark.parametrize("case", list(BAD_SCORES))
def test_bad_score_requests_get_400_naming_the_field(service, case: str) -> None:
    client, _ = service
    payload, field = BAD_SCORES[case]
    r = client.post("/score", json=payload)
    assert r.status_code == 400, r.text
    detail = r.json()["detail"]
    assert any(field in [str(p) for p in d["loc"]] for d in detail), detail
    assert "u" * 500 not in r.text  # inputs are not echoed back


RAW_BAD = {
    "malformed JSON": b'{"user_id": "u-1", "session_id": ',
    "NaN literal": b'{"user_id":"u","session_id":"s","step":"welcome","signals":{"pause_s":NaN}}',
    "Infinity literal": (
        b'{"user_id":"u","session_id":"s","step":"welcome","signals":{"pause_s":Infinity}}'
    ),
    "a JSON array": b'[{"user_id": "u"}]',
    "empty body": b"",
}


@pytest.mark.parametrize("case", list(RAW_BAD))
def test_malformed_bodies_get_400(service, case: str) -> None:
    client, _ = service
    r = client.post("/score", content=RAW_BAD[case], headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.json()["detail"]


def test_batch_scoring_and_its_limits(service) -> None:
    client, _ = service
    second = {**MINIMAL, "user_id": "u-2", "moment": "cta_fail", "signals": {"cta_fails": 3}}
    r = client.post("/score_batch", json={"requests": [MINIMAL, second]})
    assert r.status_code == 200, r.text
    decisions = r.json()["decisions"]
    assert [d["moment"] for d in decisions] == ["pause", "cta_fail"]
    r = client.post("/score_batch", json={"requests": [MINIMAL] * 101})
    assert r.status_code == 400 and r.json()["detail"][0]["loc"] == ["requests"]
    r = client.post("/score_batch", json={"requests": []})
    assert r.status_code == 400
    r = client.post("/score_batch", json={"requests": [MINIMAL, {**MINIMAL, "step": "nope"}]})
    assert r.status_code == 400 and r.json()["detail"][0]["loc"] == ["requests", 1, "step"]


def event(event_id: str, **kw) -> dict:
    base = {
        "event_id": event_id,
        "user_id": "u-ev",
        "session_id": "s-ev",
        "ts": "2025-03-03T12:00:00Z",
        "type": "view",
        "step": "welcome",
    }
    base.update(kw)
    return base


BAD_EVENTS = {
    "unknown type": (event("b1", type="teleport"), ["type"]),
    "negative value": (event("b2", type="hover", value=-2), ["<event>"]),
    "depth out of range": (event("b3", type="scroll", value=150), ["<event>"]),
    "no actor": (event("b4", user_id=None), ["<event>"]),
    "unknown step": (event("b5", step="checkout"), ["step"]),
    "naive ts": (event("b6", ts="2025-03-03T12:00:00"), ["ts"]),
    "future ts": (event("b7", ts=FUTURE), ["ts"]),
    "year-1 ts": (event("b7y", ts="0001-01-01T00:00:00Z"), ["ts"]),
    "unknown field": (event("b8", colour="red"), ["colour"]),
    "value as text": (event("b9", type="hover", value="14"), ["value"]),
    "value as boolean": (event("b10", type="hover", value=True), ["value"]),
    "device too long": (event("b11", device="d" * 5000), ["device"]),
    "not an object": ("view", ["<event>"]),
    "tz too long for a file name": (event("b12", tz="Z" * 5000), ["tz"]),
}


@pytest.mark.parametrize("case", list(BAD_EVENTS))
def test_a_bad_event_is_rejected_alone_and_quarantined(service, case: str) -> None:
    """Issue 11 item 7: the valid events of the request are applied, the bad one is listed
    in `rejected` (position, id, fields) and written to the quarantine with its reason."""
    client, layout = service
    bad, fields = BAD_EVENTS[case]
    sid = f"s-bad-{case}"
    good = [
        event(f"good1-{case}", session_id=sid),
        event(f"good2-{case}", session_id=sid, ts="2025-03-03T12:00:01Z"),
    ]
    r = client.post("/events", json={"events": [good[0], bad, good[1]]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["accepted"] == 2, body
    [rejected] = body["rejected"]
    assert rejected["index"] == 1 and rejected["fields"] == fields, rejected
    assert rejected["event_id"] == (bad.get("event_id") if isinstance(bad, dict) else None)
    assert "d" * 5000 not in r.text
    stored = pq.read_table(layout.quarantine).to_pylist()
    mine = [row for row in stored if row["row"] == 1 and row["record"] == json.dumps(bad)]
    assert len(mine) == 1 and mine[0]["reason"] == rejected["reason"], stored[-1]


def test_every_bad_event_of_a_large_batch_is_named() -> None:
    """The old 400 named only 30 of 50 bad events (pydantic's error cap)."""
    from serving.schemas import RequestRules, split_events

    rules = RequestRules(
        steps=frozenset({"welcome"}),
        max_id_length=128,
        future_tolerance_s=300,
        max_batch=100,
        max_events=500,
        max_label_length=64,
        max_ts_age_s=86400 * 3650,
    )
    items = [event(f"x{i}", type="teleport") if i % 2 else event(f"x{i}") for i in range(100)]
    now = datetime(2025, 3, 4, tzinfo=UTC).timestamp()
    split = split_events(items, rules, now)
    assert len(split.valid) == 50
    assert [r.index for r in split.rejected] == list(range(1, 100, 2))


def test_too_many_or_no_events_refuse_the_request(service) -> None:
    client, _ = service
    r = client.post("/events", json={"events": [event(f"m{i}") for i in range(501)]})
    assert r.status_code == 400 and r.json()["detail"][0]["loc"] == ["events"]
    assert client.post("/events", json={"events": []}).status_code == 400


def test_a_late_event_sent_twice_is_quarantined_once(service) -> None:
    """Issue 11 item 7: a duplicate of a late event counts once (as a duplicate)."""
    client, layout = service
    sid = "s-late-twice"
    first = event("lt-1", session_id=sid, ts="2025-03-03T12:00:10Z")
    assert client.post("/events", json={"events": [first]}).json()["accepted"] == 1
    late = event("lt-0", session_id=sid, ts="2025-03-03T12:00:00Z")
    r = client.post("/events", json={"events": [late, late]})
    body = r.json()
    assert body["late"] == ["lt-0"] and body["duplicates"] == ["lt-0"], body
    rows = [
        row
        for f in layout.quarantine.glob("api-events-*.parquet")
        for row in pq.read_table(f).to_pylist()
        if row["event_id"] == "lt-0"
    ]
    assert len(rows) == 1


def test_events_fold_dedup_and_quarantine_late_ones(service) -> None:
    client, layout = service
    batch = [
        event("e1"),
        event("e2", ts="2025-03-03T12:00:04Z", type="scroll", value=30),
        event("e3", ts="2025-03-03T12:00:09Z", type="cta_fail", target="cta"),
    ]
    r = client.post("/events", json={"events": batch})
    assert r.status_code == 200, r.text
    assert r.json() == {
        "accepted": 3,
        "duplicates": [],
        "late": [],
        "sessions": ["s-ev"],
        "pushed": None,
        "rejected": [],
    }
    late = event("e0", ts="2025-03-03T11:59:00Z", type="click", target="faq")
    r = client.post("/events", json={"events": [batch[0], late]})
    assert r.json()["duplicates"] == ["e1"] and r.json()["late"] == ["e0"]
    rows = [
        row
        for f in layout.quarantine.glob("api-events-*.parquet")
        for row in pq.read_table(f).to_pylist()
        if row["event_id"] == "e0"
    ]
    assert len(rows) == 1 and rows[0]["reason"] == "late_event"


def test_outcomes_join_decisions(service) -> None:
    client, layout = service
    decision = client.post("/score", json={**MINIMAL, "user_id": "u-out"}).json()
    r = client.post(
        "/outcome", json={"decision_id": decision["decision_id"], "outcome": "accepted"}
    )
    assert r.status_code == 200 and r.json()["recorded"] is True
    r = client.post("/outcome", json={"decision_id": "no-such-id", "outcome": "accepted"})
    assert r.status_code == 404 and "decision_id" in r.json()["error"]
    r = client.post("/outcome", json={"decision_id": decision["decision_id"], "outcome": "meh"})
    assert r.status_code == 400 and r.json()["detail"][0]["loc"] == ["outcome"]
    con = sqlite3.connect(layout.serving / "decisions.db")
    rows = con.execute(
        "SELECT d.action, o.outcome FROM decisions d JOIN outcomes o USING (decision_id)"
    ).fetchall()
    assert (decision["action"]["type"], "accepted") in rows


def test_health_model_docs_metrics_and_echo(service) -> None:
    client, _ = service
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["model_source"] == "rules" and ready.json()["degraded"] is True
    assert client.get("/livez").status_code == 200
    model = client.get("/model").json()
    assert model["source"] == "rules" and model["model_version"] is None
    assert "/score" in client.get("/docs.json").json()["paths"]
    client.post("/score", json=MINIMAL)
    metrics = client.get("/metrics").text
    assert 'intent_decisions_total{source="rules"}' in metrics
    assert 'intent_fallbacks_total{reason="no_model"}' in metrics
    assert client.post("/echo", json=MINIMAL).json()["signals"]["pause_s"] == 14.0


def test_request_size_limit(service) -> None:
    client, _ = service
    big = {**MINIMAL, "episode": "x" * 300_000}
    r = client.post("/score", json=big)
    assert r.status_code == 413 and "limit" in r.json()["error"]

    def chunks():  # no content-length: counted while buffered
        for _ in range(40):
            yield b" " * 10_000

    r = client.post("/score", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_rejected_requests_log_one_line_without_the_input(service) -> None:
    import logging

    client, _ = service
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    http_log = logging.getLogger("intent.serving")
    level = http_log.level
    http_log.setLevel(logging.INFO)
    http_log.addHandler(handler)
    try:
        secret = {**MINIMAL, "user_id": "secret-" + "x" * 400, "tz": "Secret/Zone"}
        r = client.post("/score", json=secret)
        assert r.status_code == 400, r.text
        bad_event = event("ev-secret", type="teleport", target="my secret note")
        assert client.post("/events", json={"events": [bad_event]}).json()["rejected"]
    finally:
        http_log.removeHandler(handler)
        http_log.setLevel(level)
    text = "\n".join(r.getMessage() for r in records)
    assert "rejected (400)" in text and "tz" in text and "events[0]: type" in text
    assert "secret" not in text.lower()
    assert all(r.exc_info is None for r in records)
