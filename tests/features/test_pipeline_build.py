"""`build_features` / `intent features build` / `intent bench features` end to end."""

from __future__ import annotations

import json
from datetime import timedelta

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import typer
from pipeline_factory import REPO_CONFIGS, no_bots, session, table
from typer.testing import CliRunner

from core.layout import Layout
from features.ingest.bots import score_sessions
from features.ingest.event_store import ingest
from features.pipeline import cli as pipeline_cli
from features.pipeline.build import (
    BuildError,
    build_features,
    build_tables,
    expected_schemas,
    oracle_path,
    table_paths,
)
from features.store.definitions import TABLE_FILES, check_tables, contract_schemas, view_columns


@pytest.fixture(scope="module")
def built(tmp_path_factory, quiet_sim, configs):
    """The simulation ingested into a fresh event store, then built into feature tables."""
    layout = Layout.under(tmp_path_factory.mktemp("build"), configs=REPO_CONFIGS).ensure()
    now = pc.max(quiet_sim.events["ts"]).as_py() + timedelta(hours=1)
    report = ingest(layout, quiet_sim.events, configs.events, now)
    assert report.written == quiet_sim.events.num_rows
    oracle_path(layout).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(quiet_sim.oracle, oracle_path(layout))
    return layout, build_features(layout)


def test_tables_follow_the_contract(built, configs) -> None:
    layout, summary = built
    schemas = expected_schemas(configs)
    for name, path in table_paths(layout).items():
        stored = pq.read_table(path)
        assert stored.schema == schemas[name], name
        assert stored.num_rows == summary.rows[name] > 0, name
    # the Feast repo builds its views from this contract and checks the files against it
    contract = contract_schemas(layout)
    check_tables(layout, contract)
    for view, schema in contract.items():
        assert view_columns(view, schema).served, TABLE_FILES[view]


def test_bots_are_excluded_and_counted(built, quiet_sim, configs) -> None:
    layout, summary = built
    scores = score_sessions(quiet_sim.events, configs.events.bots)
    flagged = set(scores.filter(scores["is_bot"])["session_id"].to_pylist())
    assert summary.bot_sessions == len(flagged) > 0
    points = pq.read_table(table_paths(layout)["decision_points"])
    snapshots = pq.read_table(table_paths(layout)["session_snapshots"])
    assert not flagged & set(points["session_id"].to_pylist())
    assert not flagged & set(snapshots["session_id"].to_pylist())


def test_labels_and_oracle_are_attached(built) -> None:
    layout, summary = built
    points = pq.read_table(table_paths(layout)["decision_points"])
    assert points["label"].null_count == 0
    assert 0.1 < summary.label_rate < 0.9
    assert sum(summary.moments.values()) == points.num_rows == summary.decision_points
    oracle = points["oracle_p"]
    assert summary.oracle_attached and oracle.null_count < 0.05 * len(oracle)
    assert 0.0 <= pc.min(oracle).as_py() <= pc.max(oracle).as_py() <= 1.0
    # the oracle says who was at risk: abandoned decisions carry a higher true probability
    frame = points.to_pandas()
    by_label = frame.groupby("label")["oracle_p"].mean()
    assert by_label[1] > by_label[0]


def test_bad_input_is_a_clear_error(configs) -> None:
    rows = [(0, "view", "profile"), (1, "exit", "profile")]
    events = table(session("s1", rows), session("s2", rows, user_id="u2"))
    with pytest.raises(BuildError, match="1 of 2 sessions have no bot score"):
        build_tables(events, no_bots(events.slice(0, 2)), configs)
    with pytest.raises(BuildError, match="all 4 events belong to sessions flagged as bots"):
        build_tables(events, no_bots(events, ["s1", "s2"]), configs)
    nameless = events.set_column(3, "session_id", pa.nulls(4, pa.string()))
    with pytest.raises(BuildError, match="4 events have no session_id"):
        build_tables(nameless, no_bots(events), configs)
    with pytest.raises(BuildError, match="no events"):
        build_tables(events.slice(0, 0), no_bots(events), configs)


def _cli() -> typer.Typer:
    app = typer.Typer()
    pipeline_cli.register(app)
    return app


def test_build_command_prints_a_summary(built, monkeypatch) -> None:
    layout, _ = built
    monkeypatch.setenv("INTENT_DATA_DIR", str(layout.data))
    monkeypatch.setenv("INTENT_CONFIGS", str(REPO_CONFIGS))
    result = CliRunner().invoke(_cli(), ["features", "build", "--workers", "1"])
    assert result.exit_code == 0, result.output
    for text in ("decision points", "bots excluded", "label rate", "pause", "session_snapshots"):
        assert text in result.output


def test_build_command_without_events_fails_in_one_line(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("INTENT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("INTENT_CONFIGS", str(REPO_CONFIGS))
    result = CliRunner().invoke(_cli(), ["features", "build"])
    assert result.exit_code == 1
    assert "no events to build features from" in result.output
    assert "Traceback" not in result.output


def test_bench_command_prints_json(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("INTENT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("INTENT_CONFIGS", str(REPO_CONFIGS))
    args = ["bench", "features", "--users", "40", "--days", "2", "--workers", "1"]
    result = CliRunner().invoke(_cli(), args)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["events"] > 0 and out["replay_one_core"]["events_per_s"] > 0
    assert [b["workers"] for b in out["build"]] == [1]
    assert set(out["build"][0]["stages_s"]) == {"prepare", "replay", "labels", "aggregates"}
