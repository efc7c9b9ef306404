"""Every validation rule with a bad row, quarantine contents and counts, duplicates, inputs."""

from __future__ import annotations

import math
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from ingest_factory import NOW, T0, event, loose, typed

from features.events import EVENT_SCHEMA
from features.ingest.validate import (
    QUARANTINE_SCHEMA,
    InputError,
    Reason,
    combine_inputs,
    read_input,
    validate_events,
)

# One bad row per rule: (reason, fields overriding a valid event, ts given as text)
BAD_ROWS = [
    (Reason.MISSING_EVENT_ID, {"event_id": None}, False),
    (Reason.MISSING_EVENT_ID, {"event_id": " \t"}, False),
    (Reason.MISSING_ACTOR_ID, {"user_id": None, "anonymous_id": None}, False),
    (Reason.MISSING_ACTOR_ID, {"user_id": "", "anonymous_id": "  "}, False),
    (Reason.MISSING_TS, {"ts": None}, False),
    (Reason.TS_UNPARSEABLE, {"ts": "next tuesday"}, True),
    (Reason.TS_UNPARSEABLE, {"ts": "2025-02-30T10:00:00Z"}, True),
    (Reason.TS_NO_TIMEZONE, {"ts": "2025-03-03T09:00:00"}, True),
    (Reason.MISSING_TYPE, {"type": None}, False),
    (Reason.UNKNOWN_TYPE, {"type": "tap"}, False),
    (Reason.UNKNOWN_TYPE, {"type": "VIEW"}, False),
    (Reason.VALUE_NOT_FINITE, {"type": "hover", "value": math.nan}, False),
    (Reason.VALUE_NOT_FINITE, {"type": "hover", "value": math.inf}, False),
    (Reason.DEPTH_OUT_OF_RANGE, {"type": "scroll", "value": 100.5}, False),
    (Reason.DEPTH_OUT_OF_RANGE, {"type": "scroll", "value": -1.0}, False),
    (Reason.NEGATIVE_VALUE, {"type": "hover", "value": -0.5}, False),
    (Reason.TS_FUTURE, {"ts": NOW + timedelta(seconds=301)}, False),
]


@pytest.mark.parametrize(("reason", "fields", "ts_text"), BAD_ROWS, ids=lambda x: str(x))
def test_each_rule_quarantines_its_bad_row(events_cfg, reason, fields, ts_text) -> None:
    rows = [event(1), event(2, 5, **fields), event(3, 10)]
    result = validate_events(loose(rows, ts_as_text=ts_text), events_cfg, NOW, source="unit")
    assert result.summary.quarantined == {reason.value: 1}
    assert result.valid.column("event_id").to_pylist() == ["e1", "e3"]
    q = result.quarantine.to_pylist()[0]
    assert q["reason"] == reason.value
    assert q["source"] == "unit"
    assert q["row"] == 1


def test_values_at_the_limits_are_valid(events_cfg) -> None:
    rows = [
        event(1, type="scroll", value=0.0),
        event(2, 1, type="scroll", value=100.0),
        event(3, 2, type="hover", value=0.0),
        event(4, 3, type="hover", value=-0.0),
        event(5, 4, ts=NOW + timedelta(seconds=300)),  # exactly at the tolerance
    ]
    result = validate_events(typed(rows), events_cfg, NOW)
    assert result.summary.quarantined == {}
    assert result.valid.num_rows == 5


def test_quarantine_keeps_original_values_as_text(events_cfg) -> None:
    rows = [event(1, type="scroll", value=250.0, step="  profile ", props='{"a": 1}')]
    q = validate_events(loose(rows), events_cfg, NOW).quarantine
    assert q.schema == QUARANTINE_SCHEMA
    row = q.to_pylist()[0]
    assert row["value"] == "250"
    assert row["step"] == "  profile "  # untouched, not stripped
    assert row["ts"] == "2025-03-03T09:00:00.000000+0000"
    assert row["props"] == '{"a": 1}'


def test_first_failing_rule_is_the_reason_and_counts_add_up(events_cfg) -> None:
    rows = [
        event(1, user_id=None, type="tap"),  # two problems: the actor rule comes first
        event(2, 1, type="tap"),
        event(3, 2, type="tap"),
        event(4, 3),
        event(4, 3),  # identical duplicate
        event(5, 4, type="hover", value=-3.0),
    ]
    result = validate_events(typed(rows), events_cfg, NOW)
    s = result.summary
    assert s.quarantined == {"missing_actor_id": 1, "unknown_type": 2, "negative_value": 1}
    assert (s.rows_in, s.valid, s.duplicates_removed) == (6, 1, 1)
    assert s.rows_in == s.valid + s.duplicates_removed + s.already_stored + s.quarantined_total


def test_duplicates_keep_first_and_conflicts_are_quarantined(events_cfg) -> None:
    rows = [
        event(1, 0, target="first"),
        event(1, 0, target="first"),  # identical: removed, counted
        event(1, 0, target="second"),  # same id, other content: quarantined
        event(2, 5),
        event(2, 5, session_id="given"),  # session_id is grouping, not content
    ]
    result = validate_events(typed(rows), events_cfg, NOW)
    assert result.valid.column("event_id").to_pylist() == ["e1", "e2"]
    assert result.valid.column("target").to_pylist()[0] == "first"
    assert result.summary.duplicates_removed == 2
    assert result.summary.quarantined == {"duplicate_conflict": 1}
    assert result.quarantine.column("target").to_pylist() == ["second"]
    assert result.quarantine.column("row").to_pylist() == [2]


def test_duplicate_of_an_invalid_row_is_not_a_conflict(events_cfg) -> None:
    rows = [event(1, type="tap"), event(1, 1)]
    result = validate_events(typed(rows), events_cfg, NOW)
    assert result.valid.column("event_id").to_pylist() == ["e1"]
    assert result.summary.quarantined == {"unknown_type": 1}


def test_text_is_stripped_and_blank_is_null(events_cfg) -> None:
    rows = [event(1, event_id="  e1\u00a0", user_id=" u9 ", step="", target="\tcta ")]
    valid = validate_events(typed(rows), events_cfg, NOW).valid.to_pylist()[0]
    assert (valid["event_id"], valid["user_id"], valid["step"], valid["target"]) == (
        "e1",
        "u9",
        None,
        "cta",
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-03-03T10:00:00+01:00", T0),
        ("2025-03-03 09:00:00Z", T0),
        ("2025-03-03T09:00Z", T0),
        ("2025-03-03T04:00:00.250-0500", T0 + timedelta(milliseconds=250)),
    ],
)
def test_iso_timestamps_with_a_zone_parse_to_utc(events_cfg, text, expected) -> None:
    result = validate_events(loose([event(1, ts=text)], ts_as_text=True), events_cfg, NOW)
    assert result.valid.column("ts").to_pylist() == [expected]


def test_value_given_as_text(events_cfg) -> None:
    values = ["42.5", " 1e1 ", "lots", "NaN", ""]
    types = ["scroll", "hover", "hover", "hover", "hover"]
    rows = [event(i, i, type=t) for i, t in enumerate(types)]
    table = typed(rows).set_column(8, "value", pa.array(values, pa.string()))
    result = validate_events(table, events_cfg, NOW)
    assert result.summary.quarantined == {"value_not_finite": 1, "value_unparseable": 1}
    assert result.valid.column("value").to_pylist() == [42.5, 10.0, None]
    assert result.quarantine.column("value").to_pylist() == ["lots", "NaN"]


def test_canonical_output_schema_and_order(events_cfg) -> None:
    rows = [event(3, 20, session_id="b"), event(1, 10, session_id="b"), event(2, 0, session_id="a")]
    valid = validate_events(typed(rows), events_cfg, NOW).valid
    assert valid.schema == EVENT_SCHEMA
    assert valid.column("event_id").to_pylist() == ["e2", "e1", "e3"]


def test_naive_now_is_refused(events_cfg) -> None:
    with pytest.raises(ValueError, match="aware"):
        validate_events(typed([event(1)]), events_cfg, NOW.replace(tzinfo=None))


# --- inputs ---------------------------------------------------------------------------------


def test_missing_and_unknown_columns_are_clear_errors(events_cfg) -> None:
    table = typed([event(1)]).drop_columns(["ts", "user_id", "anonymous_id"])
    with pytest.raises(InputError, match=r"missing required columns: ts, user_id or anonymous_id"):
        validate_events(table, events_cfg, NOW)
    extra = typed([event(1)]).append_column("colour", pa.array(["red"]))
    with pytest.raises(InputError, match="unknown columns: colour"):
        validate_events(extra, events_cfg, NOW)


def test_naive_or_numeric_timestamp_columns_are_refused(events_cfg) -> None:
    table = typed([event(1)])
    naive = table.set_column(4, "ts", table.column("ts").cast(pa.timestamp("us")))
    with pytest.raises(InputError, match="without a time zone"):
        validate_events(naive, events_cfg, NOW)
    numeric = table.set_column(4, "ts", pa.array([1.7e9]))
    with pytest.raises(InputError, match="column ts: type double"):
        validate_events(numeric, events_cfg, NOW)


def test_read_input_formats(tmp_path: Path, events_cfg) -> None:
    parquet = tmp_path / "a.parquet"
    pq.write_table(typed([event(1)]), parquet)
    assert read_input(parquet).table.num_rows == 1
    csv = tmp_path / "b.csv"
    csv.write_text("event_id,user_id,ts,type,value\ne2,u1,2025-03-03T09:00:01Z,scroll,30\n")
    both = combine_inputs([read_input(parquet).table, read_input(csv).table])
    result = validate_events(both, events_cfg, NOW)
    assert result.valid.column("event_id").to_pylist() == ["e1", "e2"]
    assert result.valid.column("value").to_pylist() == [None, 30.0]

    (tmp_path / "c.json").write_text("{}")
    with pytest.raises(InputError, match=r"c\.json: unsupported format '.json'"):
        read_input(tmp_path / "c.json")
    (tmp_path / "d.parquet").write_text("not parquet at all")
    with pytest.raises(InputError, match=r"d\.parquet: not a readable parquet file"):
        read_input(tmp_path / "d.parquet")
    (tmp_path / "e.csv").write_text("event_id,colour\ne1,red\n")
    with pytest.raises(InputError, match=r"e\.csv: missing required columns: ts, type"):
        read_input(tmp_path / "e.csv")
    with pytest.raises(InputError, match="no such file"):
        read_input(tmp_path / "absent.csv")
