"""`intent simulate` writes the three tables and summarises; `intent bench simulate` is JSON."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
import typer
from typer.testing import CliRunner

from core.layout import Layout
from features.events import EVENT_SCHEMA
from features.simulator import cli as sim_cli
from features.simulator.tables import ORACLE_SCHEMA, USERS_SCHEMA, output_paths


@pytest.fixture
def app(layout: Layout, monkeypatch: pytest.MonkeyPatch) -> typer.Typer:
    monkeypatch.setenv("INTENT_HOME", str(layout.root))
    monkeypatch.setenv("INTENT_CONFIGS", str(layout.configs))
    app = typer.Typer()

    @app.callback()
    def root() -> None:
        """test app"""

    sim_cli.register(app)
    sim_cli.register(app)  # idempotent
    return app


def test_simulate_writes_tables_and_a_summary(app: typer.Typer, layout: Layout) -> None:
    runner = CliRunner()
    result = runner.invoke(
        app, ["simulate", "--users", "80", "--days", "3", "--seed", "5", "--start", "2025-03-01"]
    )
    assert result.exit_code == 0, result.output
    paths = output_paths(layout)
    assert pq.read_schema(paths["events"]).equals(EVENT_SCHEMA)
    assert pq.read_schema(paths["users"]).equals(USERS_SCHEMA)
    assert pq.read_schema(paths["oracle"]).equals(ORACLE_SCHEMA)
    assert pq.read_metadata(paths["users"]).num_rows == 80
    for word in ("completion rate", "drop-off at identity_verification", "events/s"):
        assert word in result.output


def test_simulate_refuses_to_overwrite_without_force(app: typer.Typer, layout: Layout) -> None:
    args = ["simulate", "--users", "20", "--days", "2", "--seed", "1", "--start", "2025-03-01"]
    runner = CliRunner()
    assert runner.invoke(app, args).exit_code == 0
    events = output_paths(layout)["events"]
    before = events.stat().st_mtime_ns
    refused = runner.invoke(app, [*args[:-4], "--seed", "2"])
    assert refused.exit_code == 1
    assert "--force" in refused.output and str(events) in refused.output.replace("\n", "")
    assert events.stat().st_mtime_ns == before  # untouched
    forced = runner.invoke(app, [*args, "--force"])
    assert forced.exit_code == 0, forced.output
    assert events.stat().st_mtime_ns != before


def test_bad_input_is_a_one_line_error(app: typer.Typer) -> None:
    result = CliRunner().invoke(app, ["simulate", "--users", "0"])
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    result = CliRunner().invoke(app, ["simulate", "--start", "March"])
    assert result.exit_code != 0 and "Traceback" not in result.output


def test_bench_prints_json(app: typer.Typer) -> None:
    result = CliRunner().invoke(app, ["bench", "simulate", "--users", "40", "--days", "2"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["bench"] == "simulate" and out["events"] > 0 and out["events_per_s"] > 0
    result = CliRunner().invoke(
        app, ["bench", "simulate", "--users", "40", "--days", "2", "--detectors"]
    )
    assert json.loads(result.stdout.strip().splitlines()[-1])["detectors"] is True


def test_calibrate_prints_fitted_logits(app: typer.Typer) -> None:
    result = CliRunner().invoke(
        app, ["calibrate-simulator", "--users", "150", "--days", "5", "--rounds", "1"]
    )
    assert result.exit_code == 0, result.output
    assert "identity_verification:" in result.stdout
