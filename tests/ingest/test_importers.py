"""Importers: the real Diginetica sample, hand-written Segment messages, mapping errors."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from ingest_factory import DIGINETICA, NOW, REPO, SEGMENT_FIXTURE
from pydantic import ValidationError

from core.settings import ConfigError, load_config
from features.config import FunnelConfig
from features.events import EVENT_SCHEMA
from features.ingest.event_store import ingest, read_bot_scores, read_events
from features.ingest.importers.common import ImportSummary, raw_events_path, refusal, write_import
from features.ingest.importers.mapping import (
    SegmentMapping,
    StepMapping,
    TableMapping,
    load_mapping,
)
from features.ingest.importers.segment import import_segment
from features.ingest.importers.table import import_tables
from features.ingest.validate import InputError

MAPPINGS = REPO / "configs" / "mappings"
VIEWS = DIGINETICA / "diginetica_views_sample.csv"
PURCHASES = DIGINETICA / "diginetica_purchases.csv"


@pytest.fixture(scope="module")
def diginetica() -> TableMapping:
    return load_mapping(MAPPINGS / "diginetica.yaml", TableMapping)


@pytest.fixture(scope="module")
def segment() -> SegmentMapping:
    return load_mapping(MAPPINGS / "segment.yaml", SegmentMapping)


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle, delimiter=";"))


# --- Diginetica ----------------------------------------------------------------------------


def test_diginetica_views_and_purchases_map_to_view_and_goal(diginetica) -> None:
    views, purchases = _csv_rows(VIEWS), _csv_rows(PURCHASES)
    result = import_tables([VIEWS, PURCHASES], diginetica)
    events = result.events
    assert events.schema == EVENT_SCHEMA
    assert result.summary.quarantined == {}
    assert result.summary.records_in == len(views) + len(purchases)
    types = events["type"].value_counts().to_pylist()
    assert {t["values"]: t["counts"] for t in types} == {
        "view": len(views),
        "goal": len(purchases),
    }
    assert set(events["step"].to_pylist()) == {"browse"}
    assert pc.count_distinct(events["session_id"]).as_py() == len({v["session_id"] for v in views})
    assert pc.count_distinct(events["event_id"]).as_py() == events.num_rows

    first = views[0]
    row = events.filter(pc.equal(events["event_id"], events["event_id"][0])).to_pylist()[0]
    start = datetime.fromisoformat(first["eventdate"]).replace(tzinfo=UTC)
    assert row["ts"] == start + timedelta(milliseconds=int(first["timeframe"]))
    assert row["session_id"] == f"dg-{first['session_id']}"
    assert row["target"] == first["item_id"]
    anonymous = sum(v["user_id"] == "NA" for v in views)
    view_users = events.filter(pc.equal(events["type"], "view"))["user_id"]
    assert view_users.null_count == anonymous  # NA is null, every row still has an actor
    assert events["anonymous_id"].null_count == 0
    goal = events.filter(pc.equal(events["type"], "goal")).to_pylist()[0]
    assert json.loads(goal["props"]) == {"ordernumber": purchases[0]["ordernumber"]}


def test_purchases_outside_the_views_sample_are_skipped_and_counted(tmp_path, diginetica) -> None:
    views = tmp_path / "views.csv"
    views.write_text("session_id;user_id;item_id;timeframe;eventdate\n1;NA;10;0;2016-05-09\n")
    purchases = tmp_path / "purchases.csv"
    purchases.write_text(
        "sessionId;userId;timeframe;eventdate;ordernumber;itemId\n"
        "1;NA;5000;2016-05-09;77;10\n"
        "2;NA;100;2016-05-09;78;11\n"
        "3;9;100;2016-05-10;79;12\n"
        "4;NA;100;2016-05-10\n"  # malformed: quarantined, not skipped
    )
    result = import_tables([views, purchases], diginetica)
    assert result.summary.events == 2
    assert result.summary.skipped == {"purchases: session not in views": 2}
    assert result.summary.quarantined == {"malformed_row": 1}
    q = result.quarantine.to_pylist()[0]
    assert (q["row"], q["record"]) == (3, "4;NA;100;2016-05-10")
    assert result.summary.records_in == 5

    with pytest.raises(InputError, match="no input file matched table 'views'"):
        import_tables([purchases], diginetica)


def test_diginetica_validates_into_the_store(shop_layout, events_cfg, diginetica) -> None:
    layout = shop_layout  # the shop funnel has the sample's step, `browse`
    funnel = load_config(FunnelConfig, layout=layout)
    assert funnel.name == "ecommerce" and "browse" in funnel.steps
    result = import_tables([VIEWS, PURCHASES], diginetica, steps=funnel.steps)
    path, quarantine = write_import(layout, diginetica.name, result)
    assert path == raw_events_path(layout, "diginetica") and quarantine is None
    report = ingest(layout, pq.read_table(path), events_cfg, NOW, source="diginetica")
    s = report.result.summary
    assert s.quarantined == {}
    assert report.written == result.events.num_rows
    assert s.sessions_derived == 0  # the sample's sessions are kept
    stored = read_events(layout)
    assert stored.num_rows == result.events.num_rows
    assert read_bot_scores(layout).num_rows == pc.count_distinct(stored["session_id"]).as_py()


def test_steps_outside_the_funnel_are_quarantined_at_import_and_validate(
    layout, events_cfg, diginetica
) -> None:
    onboarding = load_config(FunnelConfig, layout=layout)  # the shipped, onboarding funnel
    assert "browse" not in onboarding.steps
    result = import_tables([VIEWS, PURCHASES], diginetica, steps=onboarding.steps)
    assert result.summary.events == 0
    assert result.summary.quarantined == {"unknown_step": result.summary.records_in}
    q = result.quarantine.to_pylist()[0]
    assert q["step"] == "browse" and q["line"] == q["row"] + 2  # header is line 1
    assert q["record"] is not None

    # the same events imported without the funnel check: `intent validate` applies it too
    unchecked = import_tables([VIEWS, PURCHASES], diginetica)
    report = ingest(layout, unchecked.events, events_cfg, NOW)
    assert report.written == 0
    assert report.result.summary.quarantined == {"unknown_step": unchecked.events.num_rows}


def test_a_mapping_to_a_step_the_funnel_lacks_is_an_error(diginetica) -> None:
    typo = diginetica.model_copy(update={"steps": StepMapping(exact={"Shop": "browze"})})
    with pytest.raises(ConfigError, match=r"steps\.exact\.Shop: 'browze' not a step of funnel"):
        import_tables([VIEWS, PURCHASES], typo, steps=["browse", "cart"])


def test_table_mapping_features(tmp_path) -> None:
    mapping = TableMapping.model_validate(
        {
            "kind": "table",
            "name": "shop",
            "tables": [
                {
                    "name": "clicks",
                    "match": "*.parquet",
                    "columns": {
                        "event_id": {"column": "id"},
                        "user_id": {"column": "who"},
                        "ts": {"epoch": "at", "unit": "ms"},
                        "type": {"column": "what", "values": {"pv": "view", "buy": "goal"}},
                        "value": {"column": "secs"},
                        "channel": {"const": "ads"},
                    },
                }
            ],
        }
    )
    path = tmp_path / "clicks.parquet"
    pq.write_table(
        pa.table(
            {
                "id": [1, 2, 3, 4],
                "who": ["a", "b", None, "d"],
                "at": [1_700_000_000_000, 1_700_000_001_500, 1_700_000_002_000, None],
                "what": ["pv", "buy", "pv", "refund"],
                "secs": [1.5, None, 2.0, 3.0],
            }
        ),
        path,
    )
    result = import_tables([path], mapping)
    assert result.summary.quarantined == {"missing_actor_id": 1, "unknown_event_name": 1}
    rows = result.events.to_pylist()
    assert [r["event_id"] for r in rows] == ["1", "2"]
    assert [r["type"] for r in rows] == ["view", "goal"]
    assert rows[1]["ts"] == datetime(2023, 11, 14, 22, 13, 21, 500000, tzinfo=UTC)
    assert rows[0]["value"] == 1.5 and rows[0]["channel"] == "ads"
    unknown = result.quarantine.filter(pc.equal(result.quarantine["reason"], "unknown_event_name"))
    assert unknown["type"].to_pylist() == ["refund"]
    assert json.loads(unknown["record"][0].as_py())["what"] == "refund"


def test_table_mapping_errors(tmp_path, diginetica) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        (MAPPINGS / "diginetica.yaml").read_text().replace("only_sessions_of", "only_session_of")
    )
    with pytest.raises(ConfigError, match=r"bad\.yaml: tables\.1\.only_session_of: unknown key"):
        load_mapping(bad, TableMapping)
    with pytest.raises(ConfigError, match="expected 'segment'"):
        load_mapping(MAPPINGS / "diginetica.yaml", SegmentMapping)
    with pytest.raises(ConfigError, match="mapping file not found"):
        load_mapping(tmp_path / "absent.yaml", TableMapping)
    wrong = tmp_path / "my_views.csv"
    wrong.write_text("session;user\n1;2\n")
    with pytest.raises(InputError, match=r"columns eventdate, item_id, session_id, timeframe"):
        import_tables([wrong], diginetica)
    with pytest.raises(ConfigError, match="matches no table"):
        import_tables([tmp_path / "other.csv"], diginetica)


def test_bad_dates_and_offsets_are_quarantined(tmp_path, diginetica) -> None:
    views = tmp_path / "views.csv"
    views.write_text(
        "session_id;user_id;item_id;timeframe;eventdate\n"
        "1;NA;10;0;2016-05-09\n"
        "1;NA;11;soon;2016-05-09\n"
        "1;NA;12;10;09/05/2016\n"
        "1;NA;13;10;NA\n"
    )
    result = import_tables([views], diginetica)
    assert result.summary.quarantined == {"missing_ts": 1, "ts_unparseable": 2}


# --- Segment -------------------------------------------------------------------------------


def test_segment_fixture_maps_every_kind_of_message(segment) -> None:
    result = import_segment(SEGMENT_FIXTURE, segment)
    events = {r["event_id"]: r for r in result.events.to_pylist()}
    assert result.events.schema == EVENT_SCHEMA
    assert {k: v["type"] for k, v in events.items()} == {
        "msg-001": "view",
        "msg-002": "click",
        "msg-003": "identify",
        "msg-004": "view",
        "msg-005": "scroll",
        "msg-006": "hover",
        "msg-007": "cta_fail",
        "msg-008": "field_error",
        "msg-009": "view",
        "msg-010": "step_complete",
        "msg-017": "goal",
    }
    page = events["msg-001"]
    assert (page["step"], page["anonymous_id"], page["user_id"]) == ("welcome", "anon-7f3a", None)
    assert (page["tz"], page["device"], page["channel"]) == (
        "Europe/Paris",
        "desktop",
        "newsletter",
    )
    assert page["user_agent"].startswith("Mozilla/5.0 (Macintosh")
    assert json.loads(page["props"]) == {"path": "/onboarding/welcome", "title": "Welcome"}
    assert events["msg-002"]["target"] == "continue"
    assert json.loads(events["msg-003"]["props"]) == {"plan": "basic", "country": "FR"}
    assert events["msg-005"]["value"] == 35.5
    assert (events["msg-006"]["target"], events["msg-006"]["value"]) == ("help", 4.2)
    assert events["msg-007"]["ts"] == datetime(2024, 3, 4, 9, 0, 40, tzinfo=UTC)
    assert events["msg-008"]["target"] == "date_of_birth"
    assert (events["msg-009"]["step"], events["msg-009"]["device"]) == (
        "identity_verification",
        "ios",
    )
    assert events["msg-010"]["ts"] == datetime(2024, 3, 4, 14, 21, 30, tzinfo=UTC)

    quarantine = {r["row"]: r for r in result.quarantine.to_pylist()}
    assert {row: r["reason"] for row, r in quarantine.items()} == {
        11: "unknown_event_name",
        12: "unsupported_call",
        13: "malformed_json",
        14: "missing_event_id",
        15: "missing_actor_id",
        16: "malformed_json",
        18: "depth_out_of_range",  # depth 140: the validator's rule, applied at import
        19: "ts_unparseable",
    }
    lines = SEGMENT_FIXTURE.read_text().splitlines()
    assert all(r["record"] == lines[row] for row, r in quarantine.items())
    assert all(r["line"] == row + 1 for row, r in quarantine.items())
    assert quarantine[11]["type"] == "Coupon Applied"
    assert result.summary.skipped == {"blank line": 1}
    assert result.summary.records_in == len(lines)  # every line accounted for


def test_segment_events_then_validate(layout, events_cfg, segment) -> None:
    result = import_segment(SEGMENT_FIXTURE, segment)
    path, quarantine = write_import(layout, "segment", result)
    assert quarantine is not None and quarantine.name.startswith("import-segment-")
    report = ingest(layout, pq.read_table(path), events_cfg, NOW)
    assert report.result.summary.quarantined == {}  # the import applied every content rule
    assert report.written == result.events.num_rows
    stored = {r["event_id"]: r["session_id"] for r in read_events(layout).to_pylist()}
    assert stored["msg-001"] == stored["msg-004"] == stored["msg-017"]  # identified: one session
    assert stored["msg-009"] == stored["msg-010"] != stored["msg-001"]


def test_segment_mapping_must_name_a_known_event_type(tmp_path) -> None:
    text = (MAPPINGS / "segment.yaml").read_text().replace("{type: goal}", "{type: purchase}")
    bad = tmp_path / "segment.yaml"
    bad.write_text(text)
    with pytest.raises(ConfigError, match=r"track\.Onboarding Completed\.type"):
        load_mapping(bad, SegmentMapping)


def test_undecodable_csv_rows_are_quarantined_one_by_one(tmp_path) -> None:
    mapping = TableMapping.model_validate(
        {
            "kind": "table",
            "name": "shop",
            "tables": [
                {
                    "name": "events",
                    "match": "*.csv",
                    "csv": {"separator": ",", "null_values": [""]},
                    "columns": {
                        "event_id": {"column": "id"},
                        "user_id": {"column": "who"},
                        "ts": {"column": "at"},
                        "type": {"const": "hover"},
                        "value": {"column": "dwell_ms", "unit": "ms"},
                        "target": {"column": "what"},
                    },
                }
            ],
        }
    )
    path = tmp_path / "events.csv"
    latin1 = "3,u1,2025-03-03T09:00:02Z,café,900\n".encode("latin-1")
    path.write_bytes(
        b"id,who,at,what,dwell_ms\n"
        b"1,u1,2025-03-03T09:00:00Z,help,1500\n"
        b"\n"
        b"2,u1,2025-03-03T09:00:01Z,help,250\n" + latin1 + b"4,u1,2025-03-03T09:00:03Z,faq\n"
        b"5,u1,2025-03-03T09:00:04Z,\xff\xfe,10\n"
        b"6,u1,2025-03-03T09:00:05Z,help,1\n"
    )
    result = import_tables([path], mapping)
    s = result.summary
    assert s.quarantined == {"malformed_row": 1, "undecodable_row": 2}
    assert s.skipped == {"events.csv: blank line": 1}
    assert s.records_in == 7 == s.events + 3 + 1  # every line after the header
    rows = {r["line"]: r for r in result.quarantine.to_pylist()}
    assert {line: r["reason"] for line, r in rows.items()} == {
        5: "undecodable_row",
        6: "malformed_row",
        7: "undecodable_row",
    }
    assert rows[5]["record"] == "3,u1,2025-03-03T09:00:02Z,caf\\xe9,900"  # bytes kept visible
    events = {r["event_id"]: r for r in result.events.to_pylist()}
    assert {k: v["value"] for k, v in events.items()} == {"1": 1.5, "2": 0.25, "6": 0.001}
    with pytest.raises(ValidationError, match="target: only `value` takes a unit"):
        TableMapping.model_validate(
            {
                **mapping.model_dump(exclude_none=True),
                "tables": [
                    {
                        **mapping.tables[0].model_dump(exclude_none=True),
                        "columns": {
                            **mapping.tables[0].columns.model_dump(exclude_none=True),
                            "target": {"column": "what", "unit": "ms"},
                        },
                    }
                ],
            }
        )


def test_an_import_is_refused_only_above_the_configured_share(events_cfg) -> None:
    limits = events_cfg.imports
    assert limits.max_quarantined_share == 0.5  # the shipped default
    half = ImportSummary(records_in=10, events=4, quarantined={"unknown_step": 4}, skipped={"x": 2})
    assert refusal(half, limits) is None  # 4 of 8 tried: skipped lines do not count
    worse = ImportSummary(
        records_in=10, events=3, quarantined={"malformed_row": 1, "unknown_step": 4}
    )
    message = refusal(worse, limits)
    assert message is not None
    assert message.startswith("5 of 8 records quarantined (62%")
    assert "top reasons: unknown_step 4 (" in message and "malformed_row 1 (" in message
    assert "configs/examples/ecommerce" in message  # the fix for unknown steps
    one = limits.model_copy(update={"top_reasons": 1})
    assert "malformed_row" not in refusal(worse, one)
    assert refusal(ImportSummary(records_in=1, events=0, skipped={"blank line": 1}), limits) is None
