"""The decision log back into events (and the aggregates that count them), and exposure."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from loop_helpers import T0, decision_row, log_of

from features.events import EVENT_SCHEMA, conform
from features.pipeline.replay import VISIT_SCHEMA
from loop.feedback import decision_events, exposure, stored_decision_ids

WEIGHTS = {"holdout": 1.0, "untreated": 0.5, "treated": 0.0}


@pytest.fixture
def log():
    rows = [
        decision_row("d1", "u1", T0, arm="earlier_pause_tip=control"),
        decision_row("d2", "u1", T0 + 200, action="tooltip", moment="cta_fail"),
        decision_row("d3", "u2", T0 + 10, action="none", would="tooltip", holdout=True),
        decision_row("d4", "u3", T0 + 20, action="none", would="none"),
    ]
    outcomes = [
        ("d1", "accepted", T0 + 3),
        ("d1", "step_completed", T0 + 60),
        ("d2", "dismissed", T0 + 204),
        ("d4", "dismissed", T0 + 25),  # a reaction to nothing shown: reported, not exported
    ]
    return log_of(rows, outcomes)


def test_shown_decisions_and_reactions_become_canonical_events(log) -> None:
    batch = decision_events(log.decisions(), log.outcomes())
    e = batch.events
    assert e.schema == EVENT_SCHEMA
    assert (batch.shown, batch.reactions) == (2, 2)
    assert (batch.skipped_not_reactions, batch.skipped_not_shown) == (1, 1)
    rows = {r["event_id"]: r for r in e.to_pylist()}
    assert set(rows) == {"dl-d1-shown", "dl-d2-shown", "dl-d1-accepted", "dl-d2-dismissed"}
    shown = rows["dl-d1-shown"]
    assert shown["type"] == "trigger_shown" and shown["target"] == "contextual_tip"
    assert json.loads(shown["props"]) == {
        "decision_id": "d1",
        "moment": "pause",
        "arm": "earlier_pause_tip=control",
    }
    assert shown["ts"] == datetime.fromtimestamp(T0, UTC)
    assert (shown["user_id"], shown["session_id"], shown["step"]) == (
        "u1",
        "u1-1",
        "identity_verification",
    )
    reaction = rows["dl-d2-dismissed"]
    assert reaction["type"] == "trigger_outcome" and reaction["target"] == "dismissed"
    assert json.loads(reaction["props"]) == {"decision_id": "d2"}
    assert reaction["ts"] == datetime.fromtimestamp(T0 + 204, UTC)


def test_decisions_the_store_already_holds_are_not_made_twice(log) -> None:
    first = decision_events(log.decisions(), log.outcomes())
    again = decision_events(log.decisions(), log.outcomes(), stored_decision_ids(first.events))
    assert again.events.num_rows == 0
    assert again.skipped_already_stored == 2


def test_export_reaches_the_event_store_and_the_aggregates(layout, log) -> None:
    from core.settings import load_config
    from features.config import EventsConfig, FunnelConfig
    from features.ingest.event_store import ingest, read_events
    from features.pipeline.aggregates import session_summaries

    batch = decision_events(log.decisions(), log.outcomes())
    cfg = load_config(EventsConfig, layout=layout)
    now = datetime.fromtimestamp(T0 + 3600, UTC)
    report = ingest(layout, batch.events, cfg, now, source="decision_log")
    assert report.written == 4 and report.result.summary.quarantined_total == 0
    assert ingest(layout, batch.events, cfg, now, source="decision_log").written == 0  # idempotent
    stored = read_events(layout)
    visits = VISIT_SCHEMA.empty_table()
    summary = session_summaries(stored, visits, load_config(FunnelConfig, layout=layout), 1800)
    u1 = summary.filter(pc.equal(summary["session_id"], "u1-1")).to_pylist()[0]
    assert (u1["triggers_shown"], u1["triggers_accepted"]) == (2, 1)


def _events(rows: list[tuple[str, str, float, str, str]]) -> pa.Table:
    ts_type = EVENT_SCHEMA.field("ts").type
    table = pa.table(
        {
            "event_id": [f"e{i}" for i in range(len(rows))],
            "session_id": [r[0] for r in rows],
            "user_id": [r[1] for r in rows],
            "ts": pa.array([datetime.fromtimestamp(r[2], UTC) for r in rows], ts_type),
            "type": [r[3] for r in rows],
            "step": [r[4] for r in rows],
        }
    )
    return conform(table)


def test_exposure_separates_holdout_untreated_and_treated() -> None:
    v, p = "identity_verification", "profile"
    events = _events(
        [
            ("a-1", "a", T0, "view", v),
            ("a-1", "a", T0 + 500, "trigger_shown", v),  # within the first point's horizon
            ("b-1", "b", T0, "view", v),
            ("b-1", "b", T0 + 4000, "trigger_shown", v),  # after the horizon of b's point
            ("c-1", "c", T0, "view", v),  # held out, never triggered
            ("d-1", "d", T0, "view", v),
            ("d-1", "d", T0 + 50, "trigger_shown", v),  # before d's point, same session
            ("e-1", "e", T0, "view", p),
            ("e-1", "e", T0 + 50, "trigger_shown", p),  # on another step: not this label's
        ]
    )
    points = pa.table(
        {
            "decision_key": ["a", "b", "c", "d", "e"],
            "user_id": ["a", "b", "c", "d", "e"],
            "session_id": ["a-1", "b-1", "c-1", "d-1", "e-1"],
            "step": [v] * 5,
            "request_ts": [T0 + 100] * 5,
        }
    )
    out = exposure(points, events, lambda u: u == "c", horizon_s=1800, weights=WEIGHTS)
    got = dict(zip(out["decision_key"].to_pylist(), out["exposure"].to_pylist(), strict=True))
    assert got == {
        "a": "treated",
        "b": "untreated",
        "c": "holdout",
        "d": "treated",
        "e": "untreated",
    }
    weights = dict(zip(out["decision_key"].to_pylist(), out["weight"].to_pylist(), strict=True))
    assert weights == {"a": 0.0, "b": 0.5, "c": 1.0, "d": 0.0, "e": 0.5}
    with pytest.raises(ValueError, match="weights"):
        exposure(points, events, lambda u: False, horizon_s=1800, weights={"holdout": 1})
