"""`intent import ...` and `intent validate` through Typer's CliRunner, data in a tmp dir."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import typer
from ingest_factory import DIGINETICA, ECOMMERCE_CONFIGS, REPO, SEGMENT_FIXTURE
from typer.testing import CliRunner

from core.layout import Layout
from features.ingest import cli as ingest_cli
from features.ingest.event_store import read_bot_scores, read_events, read_quarantine
from intent.cli import COMMAND_MODULES

MAPPINGS = REPO / "configs" / "mappings"


@pytest.fixture
def cli(tmp_path: Path, monkeypatch) -> tuple[typer.Typer, Layout]:
    """The ingestion commands on a fresh app, data under tmp_path, the repo's configs."""
    monkeypatch.setenv("INTENT_DATA_DIR", str(tmp_path / "data"))
    app = typer.Typer()
    ingest_cli.register(app)
    return app, Layout.from_env()


def _count(output: str, label: str) -> int:
    match = re.search(rf"│ *{re.escape(label)}[^│\n]*│\s*([\d,]+)", output)
    assert match, f"{label!r} not in output:\n{output}"
    return int(match.group(1).replace(",", ""))


def test_ingestion_commands_are_registered() -> None:
    assert "features.ingest.cli" in COMMAND_MODULES


def test_diginetica_import_then_validate_twice_on_the_shop_funnel(cli, monkeypatch) -> None:
    app, _ = cli
    # the documented path: the e-commerce funnel overlaid on the shipped configs
    monkeypatch.setenv("INTENT_CONFIGS", os.pathsep.join(map(str, ECOMMERCE_CONFIGS)))
    layout = Layout.from_env()
    assert layout.config_dirs == ECOMMERCE_CONFIGS
    runner = CliRunner()
    files = [
        str(DIGINETICA / "diginetica_views_sample.csv"),
        str(DIGINETICA / "diginetica_purchases.csv"),
    ]
    mapping = str(MAPPINGS / "diginetica.yaml")
    result = runner.invoke(app, ["import", "table", *files, "--mapping", mapping])
    assert result.exit_code == 0, result.output
    imported = _count(result.output, "events")
    assert imported == pq.read_table(layout.raw / "diginetica" / "events.parquet").num_rows

    first = runner.invoke(app, ["validate"])
    assert first.exit_code == 0, first.output
    assert _count(first.output, "rows in") == imported
    assert _count(first.output, "valid, new (stored)") == imported
    assert _count(first.output, "bot sessions flagged") == 0
    stored = read_events(layout)
    assert stored.num_rows == imported
    assert read_bot_scores(layout).num_rows == len(set(stored["session_id"].to_pylist()))

    second = runner.invoke(app, ["validate"])
    assert second.exit_code == 0, second.output
    assert _count(second.output, "valid, new (stored)") == 0
    assert _count(second.output, "already in the store") == imported
    assert read_events(layout).equals(stored)
    assert read_quarantine(layout).num_rows == 0


def test_diginetica_on_the_onboarding_funnel_is_refused_with_the_reason(cli) -> None:
    app, layout = cli
    files = [
        str(DIGINETICA / "diginetica_views_sample.csv"),
        str(DIGINETICA / "diginetica_purchases.csv"),
    ]
    mapping = str(MAPPINGS / "diginetica.yaml")
    result = CliRunner().invoke(app, ["import", "table", *files, "--mapping", mapping])
    assert result.exit_code == 1, result.output
    assert "(100%, more than imports.max_quarantined_share 50%)" in result.output
    assert "top reasons: unknown_step" in result.output
    assert not (layout.raw / "diginetica").exists()  # nothing half-imported
    quarantine = read_quarantine(layout)
    assert set(quarantine["reason"].to_pylist()) == {"unknown_step"}
    assert quarantine.num_rows == _count(result.output, "records in")


def test_segment_import_then_validate(cli) -> None:
    app, layout = cli
    runner = CliRunner()
    result = runner.invoke(app, ["import", "segment", str(SEGMENT_FIXTURE)])
    assert result.exit_code == 0, result.output
    assert _count(result.output, "quarantined") == 8
    assert _count(result.output, "depth_out_of_range") == 1
    assert _count(result.output, "skipped: blank line") == 1
    first = runner.invoke(app, ["validate"])
    assert first.exit_code == 0, first.output
    assert _count(first.output, "rows in") == 11
    assert _count(first.output, "valid, new (stored)") == 11
    # a row breaking a validation rule in raw/ (written there by hand) is still caught
    raw = layout.raw / "segment" / "events.parquet"
    table = pq.read_table(raw)
    table = table.set_column(
        table.schema.get_field_index("step"), "step", pa.array(["pricing"] * table.num_rows)
    )
    pq.write_table(table.slice(0, 1), layout.raw / "segment" / "events.parquet")
    second = runner.invoke(app, ["validate"])
    assert second.exit_code == 0, second.output  # quarantined rows are not an error
    assert _count(second.output, "unknown_step") == 1
    quarantine = read_quarantine(layout)
    assert quarantine.num_rows == 8 + 1  # import + validate
    rows = quarantine.select(["reason", "source", "line"]).to_pylist()
    sources = {r["reason"]: (r["source"], r["line"]) for r in rows}
    assert sources["unknown_step"] == ("segment", None)  # raw/segment/events.parquet
    assert sources["depth_out_of_range"] == ("segment:onboarding.jsonl", 19)


def test_validate_an_explicit_csv(cli, tmp_path) -> None:
    app, layout = cli
    path = tmp_path / "events.csv"
    path.write_text(
        "event_id,anonymous_id,ts,type,value\n"
        "a,d1,2025-03-03T09:00:00Z,scroll,20\n"
        "b,d1,2025-03-03T09:00:05Z,scroll,120\n"
        "c,,2025-03-03T09:00:06Z,view,\n"
    )
    result = CliRunner().invoke(app, ["validate", "--input", str(path)])
    assert result.exit_code == 0, result.output
    assert _count(result.output, "quarantined") == 2
    assert _count(result.output, "sessions derived") == 1
    quarantine = read_quarantine(layout)
    assert set(quarantine["source"].to_pylist()) == {"events.csv"}
    assert quarantine.select(["line", "reason"]).to_pylist() == [
        {"line": 3, "reason": "depth_out_of_range"},
        {"line": 4, "reason": "missing_actor_id"},
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["validate"], "nothing to validate"),
        (["validate", "--input", "missing.parquet"], "missing.parquet: no such file"),
        (["import", "segment", "missing.jsonl"], "missing.jsonl: no such file"),
        (
            ["import", "table", "x.csv", "--mapping", str(MAPPINGS / "segment.yaml")],
            "kind: expected 'table'",
        ),
        (
            ["import", "table", "x.csv", "--mapping", str(MAPPINGS / "diginetica.yaml")],
            "matches no table",
        ),
    ],
)
def test_user_errors_are_one_line_and_exit_1(cli, args, message) -> None:
    app, _ = cli
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output
    assert len([line for line in result.output.splitlines() if line.strip()]) == 1


def test_validate_sets_unreadable_csv_rows_aside_one_by_one(cli, tmp_path) -> None:
    app, layout = cli
    path = tmp_path / "events.csv"
    path.write_bytes(
        b"event_id,anonymous_id,ts,type,target\n"
        b"a,d1,2025-03-03T09:00:00Z,click,continue\n"
        b"b,d1,2025-03-03T09:00:05Z,click,caf\xe9\n"  # latin-1, not UTF-8
        b"c,d1,2025-03-03T09:00:06Z\n"  # too few fields
        b"d,d1,2025-03-03T09:00:07Z,click,submit\n"
    )
    result = CliRunner().invoke(app, ["validate", "--input", str(path)])
    assert result.exit_code == 0, result.output
    assert _count(result.output, "unreadable CSV rows") == 2
    assert _count(result.output, "valid, new (stored)") == 2
    assert read_events(layout)["event_id"].to_pylist() == ["a", "d"]
    rows = {r["line"]: r for r in read_quarantine(layout).to_pylist()}
    assert {line: r["reason"] for line, r in rows.items()} == {
        3: "undecodable_row",
        4: "malformed_row",
    }
    assert rows[3]["record"] == "b,d1,2025-03-03T09:00:05Z,click,caf\\xe9"
    assert rows[4]["record"] == "c,d1,2025-03-03T09:00:06Z"
    assert {r["source"] for r in rows.values()} == {"events.csv"}
