"""The commands end to end on a temporary layout: evaluate-policy -> files, MLflow run and a
kept decision log; report on that log -> one offline HTML file; user errors are one line."""

from __future__ import annotations

import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import typer
from loop_helpers import REPO_CONFIGS
from typer.testing import CliRunner

from core.layout import Layout
from features.pipeline.aggregates import STEP_STATS_SCHEMA
from loop import cli as loop_cli
from loop.html_report import SECTION_IDS

runner = CliRunner()


def _app() -> typer.Typer:
    app = typer.Typer()
    loop_cli.register(app)
    return app


def _champion(layout: Layout, bundle_dir: Path) -> None:
    """A bundle in models/ (no registry: the server's fallback) and step statistics."""
    shutil.copytree(bundle_dir, layout.models / "1")
    steps = ["welcome", "profile", "identity_verification", "funding", "first_transaction"]
    ts = datetime(2025, 2, 1, tzinfo=UTC)
    table = pa.table(
        {
            "step": steps,
            "event_timestamp": [ts] * len(steps),
            "step_sessions": [100] * len(steps),
            "step_dropoff_rate": [0.05, 0.05, 0.5, 0.03, 0.02],
            "step_typical_time_on_step_s": [15.0] * len(steps),
            "step_typical_pause_s": [2.0] * len(steps),
            "step_stats_fallback": [0] * len(steps),
        },
        schema=STEP_STATS_SCHEMA,
    )
    layout.features.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, layout.features / "step_stats.parquet")


@pytest.mark.slow
def test_evaluate_then_report_with_mlflow(home: Layout, bundle_dir: Path) -> None:
    from mlflow import MlflowClient

    _champion(home, bundle_dir)
    args = ["evaluate-policy", "--users", "80", "--seed", "11", "--seed", "12", "--workers", "1"]
    result = runner.invoke(_app(), [*args, "--policy", "model", "--policy", "rules"])
    assert result.exit_code == 0, result.output
    assert "Completion rate" in result.output and "no_triggers" in result.output
    [folder] = (home.reports / "evaluate-policy").iterdir()
    for name in ("summary.md", "runs.csv", "estimates.json", "funnel.png"):
        assert (folder / name).stat().st_size > 0
    assert (folder / "funnel.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = (folder / "summary.md").read_text()
    assert "| Completion rate |" in summary and "## All policies" in summary
    assert "## Drop-off at each step" in summary
    runs = pd.read_csv(folder / "runs.csv")
    assert sorted(runs["policy"].unique()) == ["model", "no_triggers", "rules"]
    assert sorted(runs["seed"].unique()) == [11, 12]

    uri = f"sqlite:///{home.mlruns / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    [run] = client.search_runs(
        [client.get_experiment_by_name("intent-policy-evaluation").experiment_id]
    )
    assert run.data.params["seeds"] == "11,12"
    assert 0 < run.data.metrics["model.completion_rate"] < 1
    assert run.data.metrics["no_triggers.triggers_per_user_day"] == 0
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"summary.md", "funnel.png"} <= artifacts

    kept = folder / "logs" / "model"
    report = runner.invoke(
        _app(),
        ["report", "--log", str(kept / "decisions.db"), "--events", str(kept / "events.parquet")],
    )
    assert report.exit_code == 0, report.output
    [page] = (home.reports / "efficacy").glob("*/report.html")
    html = page.read_text()
    for section in SECTION_IDS:
        assert f'id="{section}"' in html
    assert "data:image/png;base64," in html
    # one file that opens offline: no scripts, nothing fetched from elsewhere
    assert "<script" not in html
    assert not re.search(r'(src|href)="(?!data:)', html)
    [report_run] = client.search_runs(
        [client.get_experiment_by_name("intent-efficacy").experiment_id]
    )
    assert "report.html" in {a.path for a in client.list_artifacts(report_run.info.run_id)}
    assert "decisions" in report_run.data.metrics


def test_evaluate_without_a_champion_is_one_line(home: Layout) -> None:
    result = runner.invoke(_app(), ["evaluate-policy", "--policy", "model", "--no-mlflow"])
    assert result.exit_code == 1
    assert "need a champion" in result.output
    assert "Traceback" not in result.output


def test_evaluate_refuses_the_training_seed(home: Layout) -> None:
    raw = home.raw / "sim" / "events.parquet"
    raw.parent.mkdir(parents=True)
    pq.write_table(pa.table({"event_id": ["s11-u000000-1-00001"]}), raw)
    result = runner.invoke(
        _app(), ["evaluate-policy", "--seed", "11", "--policy", "rules", "--no-mlflow"]
    )
    assert result.exit_code == 1 and "held out" in result.output


def test_report_and_export_without_a_log_are_one_line(home: Layout, tmp_path: Path) -> None:
    for args in (["report"], ["report", "--log", str(tmp_path / "nope.db")], ["loop", "export"]):
        result = runner.invoke(_app(), [*args])
        assert result.exit_code == 1, result.output
        assert "no decision log" in result.output
        assert "Traceback" not in result.output


def test_unknown_policy_is_named(home: Layout) -> None:
    result = runner.invoke(_app(), ["evaluate-policy", "--policy", "magic", "--no-mlflow"])
    assert result.exit_code == 1 and "magic" in result.output


def _configs_with(tmp: Path, serving_patch: dict) -> Path:
    """A copy of the repo's configs with serving.yaml's backends patched."""
    import yaml

    target = tmp / "configs"
    shutil.copytree(REPO_CONFIGS, target)
    path = target / "serving.yaml"
    raw = yaml.safe_load(path.read_text())
    raw["backends"].update(serving_patch)
    path.write_text(yaml.safe_dump(raw))
    return target


def test_export_and_exposure_from_the_configured_sqlite_log(home: Layout) -> None:
    from loop_helpers import T0, decision_row

    from serving.decision_log import sqlite_log

    log = sqlite_log(home.serving / "decisions.db", synchronous="normal", batch_max=8)
    log.append_decision(decision_row("d1", "u1", T0))
    log.append_decision(decision_row("d2", "u2", T0 + 5, action="none", would="none"))
    log.append_outcome("d1", "accepted", T0 + 2)
    log.close()
    first = runner.invoke(_app(), ["loop", "export"])
    assert first.exit_code == 0, first.output
    assert re.search(r"events written \(new\)\s*│\s*2", first.output)
    again = runner.invoke(_app(), ["loop", "export"])
    assert re.search(r"events written \(new\)\s*│\s*0", again.output)
    # the report's defaults: the configured log, completions from the event store
    report = runner.invoke(_app(), ["report", "--no-mlflow"])
    assert report.exit_code == 0, report.output
    assert "2 decisions, 1 triggers shown" in report.output

    points = pa.table(
        {
            "decision_key": ["k1", "k2"],
            "user_id": ["u1", "u2"],
            "session_id": ["u1-1", "u2-1"],
            "step": ["identity_verification"] * 2,
            "request_ts": [T0, T0 + 5],
            "label": [0, 1],
        }
    )
    home.features.mkdir(parents=True, exist_ok=True)
    pq.write_table(points, home.features / "decision_points.parquet")
    result = runner.invoke(_app(), ["loop", "exposure"])
    assert result.exit_code == 0, result.output
    written = pq.read_table(home.features / "decision_exposure.parquet").to_pylist()
    assert [(r["decision_key"], r["exposure"]) for r in written] == [
        ("k1", "treated"),
        ("k2", "untreated"),
    ]


def test_report_reads_the_postgres_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, postgres_dsn: str
) -> None:
    """Production backend: the report reads the decision log where the server writes it."""
    import uuid

    from loop_helpers import T0, completion_events, decision_row

    from serving.decision_log import postgres_log

    schema = f"loop_{uuid.uuid4().hex[:10]}"
    configs = _configs_with(
        tmp_path,
        {"decision_log": {"kind": "postgres", "dsn": postgres_dsn, "schema_name": schema}},
    )
    monkeypatch.setenv("INTENT_HOME", str(tmp_path))
    monkeypatch.setenv("INTENT_CONFIGS", str(configs))
    log = postgres_log(postgres_dsn, schema, batch_max=64)
    try:
        done = []
        for i in range(40):
            held = i % 4 == 0
            log.append_decision(
                decision_row(
                    f"d{i}",
                    f"u{i}",
                    T0 + i,
                    action="none" if held else "guide",
                    would="guide",
                    holdout=held,
                )
            )
            if i % 2:
                done.append((f"u{i}", T0 + i + 60))
    finally:
        log.close()
    events = tmp_path / "events.parquet"
    pq.write_table(completion_events(done), events)
    try:
        result = runner.invoke(_app(), ["report", "--events", str(events), "--no-mlflow"])
        assert result.exit_code == 0, result.output
        assert "40 decisions, 30 triggers shown" in result.output
        assert list((tmp_path / "data" / "reports" / "efficacy").glob("*/report.html"))
    finally:
        import psycopg

        with psycopg.connect(postgres_dsn, autocommit=True) as con:
            con.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
