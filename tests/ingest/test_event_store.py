"""The event store: date partitions, idempotent re-validation, reads, bot scores, quarantine."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from ingest_factory import NOW, T0, event, loose, typed

from features.events import EVENT_SCHEMA
from features.ingest.event_store import (
    STAGES,
    bot_scores_path,
    ingest,
    read_bot_scores,
    read_events,
    read_quarantine,
)

DAY = 24 * 3600


def _snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _batch() -> pa.Table:
    rows = [
        event(1, 0),
        event(2, 30, type="scroll", value=40.0),
        event(3, DAY + 5, user_id="u2"),  # next day
        event(3, DAY + 5, user_id="u2"),  # identical duplicate
        event(4, 2 * DAY, type="scroll", value=400.0),  # quarantined
        event(5, 2 * DAY + 1, user_agent="HeadlessChrome", user_id="u3"),
    ]
    return loose(rows)


def test_events_are_partitioned_by_utc_date(layout, events_cfg) -> None:
    report = ingest(layout, _batch(), events_cfg, NOW, source="unit")
    assert report.written == 4
    dates = sorted(p.name for p in layout.events.iterdir())
    assert dates == ["date=2025-03-03", "date=2025-03-04", "date=2025-03-05"]
    assert report.quarantine_file is not None and report.quarantine_file.parent == layout.quarantine
    assert read_quarantine(layout)["reason"].to_pylist() == ["depth_out_of_range"]


def test_validating_twice_leaves_the_store_unchanged(layout, events_cfg) -> None:
    stages: list[str] = []
    first = ingest(layout, _batch(), events_cfg, NOW, source="unit", on_stage=stages.append)
    assert stages == list(STAGES)
    before = _snapshot(layout.data)
    second = ingest(layout, _batch(), events_cfg, NOW, source="unit")
    assert _snapshot(layout.data) == before
    assert (first.written, second.written) == (4, 0)
    assert second.result.summary.already_stored == 4
    assert second.result.summary.quarantined == first.result.summary.quarantined
    assert second.bot_sessions_scored == 0


def test_a_larger_rerun_adds_only_new_events_in_the_same_sessions(layout, events_cfg) -> None:
    ingest(layout, _batch(), events_cfg, NOW)
    ids_before = read_events(layout, columns=["event_id", "session_id"]).to_pylist()
    grown = pa.concat_tables([_batch(), loose([event(6, 60), event(7, DAY + 60, user_id="u2")])])
    report = ingest(layout, grown, events_cfg, NOW)
    assert report.written == 2
    stored = {r["event_id"]: r["session_id"] for r in read_events(layout).to_pylist()}
    assert len(stored) == 6
    for row in ids_before:  # earlier events keep their derived sessions
        assert stored[row["event_id"]] == row["session_id"]
    assert stored["e6"] == stored["e1"]  # continues u1's session
    assert stored["e7"] == stored["e3"]
    assert read_bot_scores(layout).num_rows == len(set(stored.values()))


def test_conflict_with_a_stored_event_is_quarantined(layout, events_cfg) -> None:
    ingest(layout, loose([event(1, 0, target="a")]), events_cfg, NOW)
    report = ingest(layout, loose([event(1, 0, target="b"), event(2, 5)]), events_cfg, NOW)
    assert report.result.summary.quarantined == {"duplicate_conflict": 1}
    assert read_events(layout)["target"].to_pylist()[0] == "a"
    reasons = read_quarantine(layout)
    assert reasons.filter(pa.compute.equal(reasons["reason"], "duplicate_conflict"))[
        "target"
    ].to_pylist() == ["b"]


def test_read_events_filters_selects_and_sorts(layout, events_cfg) -> None:
    rows = [
        event(1, 50, session_id="b"),
        event(2, 10, session_id="b"),
        event(3, 0, session_id="a"),
        event(4, DAY, session_id="a"),
        event(5, 2 * DAY, session_id="c"),
    ]
    ingest(layout, typed(rows), events_cfg, NOW)
    everything = read_events(layout)
    assert everything.schema == EVENT_SCHEMA
    assert everything["event_id"].to_pylist() == ["e3", "e4", "e2", "e1", "e5"]
    window = read_events(layout, start=T0 + timedelta(seconds=10), end=T0 + timedelta(days=1))
    assert sorted(window["event_id"].to_pylist()) == ["e1", "e2"]
    by_date = read_events(layout, start=date(2025, 3, 4), columns=["event_id", "ts"])
    assert by_date.column_names == ["event_id", "ts"]
    assert by_date["event_id"].to_pylist() == ["e4", "e5"]
    with pytest.raises(ValueError, match="unknown event columns: colour"):
        read_events(layout, columns=["colour"])
    with pytest.raises(ValueError, match="aware"):
        read_events(layout, start=datetime(2025, 3, 3))


def test_empty_store_reads_empty_tables(layout) -> None:
    assert read_events(layout).num_rows == 0
    assert read_events(layout).schema == EVENT_SCHEMA
    assert read_bot_scores(layout).num_rows == 0
    assert read_quarantine(layout).num_rows == 0


def test_bot_scores_cover_every_stored_session_and_update(layout, events_cfg) -> None:
    script = [
        event(f"b{i}", i * 0.5, session_id="bot", type="click", user_id="b") for i in range(20)
    ]
    ingest(layout, typed([event(1, session_id="human"), *script[:4]]), events_cfg, NOW)
    first = {r["session_id"]: r["is_bot"] for r in read_bot_scores(layout).to_pylist()}
    assert first == {"human": False, "bot": False}  # 4 events: not enough evidence yet
    ingest(layout, typed(script), events_cfg, NOW)  # the rest of the script arrives
    second = {r["session_id"]: r["is_bot"] for r in read_bot_scores(layout).to_pylist()}
    assert second == {"human": False, "bot": True}
    assert pq.read_table(bot_scores_path(layout)).num_rows == 2
