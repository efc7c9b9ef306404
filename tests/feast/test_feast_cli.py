"""`intent features apply | materialize | online` and `intent bench online`, end to end."""

from __future__ import annotations

import json
from datetime import timedelta

import pandas as pd
import pytest
import typer
from feast_tables import REPO_CONFIGS, at, epoch
from typer.testing import CliRunner

from features.store import cli as feast_cli


@pytest.fixture
def cli(layout, monkeypatch):
    monkeypatch.setenv("INTENT_HOME", str(layout.root))
    monkeypatch.setenv("INTENT_CONFIGS", str(REPO_CONFIGS))
    app = typer.Typer()
    feast_cli.register(app)
    feast_cli.register(app)  # idempotent
    runner = CliRunner()
    return lambda *args: runner.invoke(app, list(args))


@pytest.mark.slow
def test_apply_materialize_online_and_bench(cli, world) -> None:
    result = cli("features", "apply")
    assert result.exit_code == 0, result.output
    assert "intent_model_v1" in result.output

    result = cli("features", "materialize", "--end", "2025-03-03T12:10:00")
    assert result.exit_code == 0, result.output
    assert result.output.count("all history") == 3

    result = cli("features", "online", "--json")  # default: a returning user's decision
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert (out["user_id"], out["session_id"], out["user_known"]) == ("u_known", "s1", True)
    assert out["request_ts"] == epoch(20)

    # the online store holds the session's latest row: last interaction at +25 s
    result = cli("features", "online", "--user", "u_known", "--at", str(epoch(37)), "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert (out["session_id"], out["step"], out["request_ts"]) == ("s1", "welcome", epoch(37))
    assert out["user_known"] and out["session_known"]
    assert out["features"]["pause_s"] == 12.0
    assert out["features"]["user_sessions_30d"] == 2

    result = cli("features", "online", "--user", "u_known")  # the table for people
    assert result.exit_code == 0 and "pause_rel_step" in result.output

    result = cli("bench", "online", "--reads", "100", "--warmup", "5", "--decisions", "3")
    assert result.exit_code == 0, result.output
    bench = json.loads(result.stdout)
    assert bench["backend"] == "sqlite" and bench["decisions"] == 3
    assert bench["features"] > 40
    assert bench["read_path"] == "online_store"
    assert bench["read_us"] == bench["online_store_us"]
    parts = ["get_online_features_us", "feast_odfv_us", "on_demand_only_us", "push_us"]
    for part in ["read_us", *parts, "push_via_push_source_us"]:
        assert 0 < bench[part]["p50"] <= bench[part]["p99"] <= bench[part]["max"], part


def test_user_errors_are_one_line_messages(cli, layout) -> None:
    result = cli("features", "online")
    assert result.exit_code == 1
    assert "intent features build" in result.output and "Traceback" not in result.output

    result = cli("features", "materialize")
    assert result.exit_code == 1
    assert "intent features apply" in result.output and "Traceback" not in result.output

    result = cli("features", "online", "--user", "u", "--session", "s", "--step", "x", "--at", "1")
    assert result.exit_code == 1
    assert "intent features apply" in result.output

    result = cli("features", "apply", "--backend", "mongo")
    assert result.exit_code == 2  # typer rejects the choice itself


def test_pick_decision_prefers_a_returning_user(world) -> None:
    points, ttl = world.decision_points, timedelta(days=30)
    history = pd.DataFrame(
        {
            "user_id": ["u_stale", "u_known", "u_new"],
            "event_timestamp": [at(-86_400), at(-40 * 86_400), at(3600)],
        }
    )
    # u_stale has a row a day before its decision; u_known's is past the TTL, u_new's later
    pick = feast_cli.pick_decision
    assert pick(points, history, ttl)["decision_key"] == "d2"
    assert pick(points, history, timedelta(hours=1))["decision_key"] == "d3"  # the latest
    assert pick(points, None, ttl)["decision_key"] == "d3"
    assert pick(points, history, ttl, user="u_known")["decision_key"] == "d1"
    assert pick(points, history, ttl, step="nowhere") is None
