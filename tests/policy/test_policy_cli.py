"""`intent policy` and the learned row of `intent evaluate-policy`: user errors are one line,
the learned row is left out (with the reason) until an artefact exists."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from core.layout import Layout
from loop import cli as loop_cli
from training.policy import cli as policy_cli

REPO_CONFIGS = Path(__file__).resolve().parents[2] / "configs"
runner = CliRunner()


def _app() -> typer.Typer:
    app = typer.Typer()
    loop_cli.register(app)
    policy_cli.register(app)
    return app


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Layout:
    monkeypatch.setenv("INTENT_HOME", str(tmp_path))
    monkeypatch.setenv("INTENT_CONFIGS", str(REPO_CONFIGS))
    for name in ("INTENT_DATA_DIR", "INTENT_MODELS_DIR", "INTENT_MLRUNS_DIR"):
        monkeypatch.delenv(name, raising=False)
    return Layout.from_env().ensure()


@pytest.mark.parametrize("command", ["learn", "ope"])
def test_without_an_exploration_log_is_one_line(home: Layout, command: str) -> None:
    result = runner.invoke(_app(), ["policy", command])
    assert result.exit_code == 1, result.output
    assert "intent policy explore" in result.output and "Traceback" not in result.output


def test_a_missing_log_file_is_named(home: Layout, tmp_path: Path) -> None:
    result = runner.invoke(_app(), ["policy", "ope", "--log", str(tmp_path / "nope.db")])
    assert result.exit_code == 1 and "no decision log" in result.output


def test_explore_without_a_champion_is_one_line(home: Layout) -> None:
    result = runner.invoke(_app(), ["policy", "explore", "--users", "5", "--days", "2"])
    assert result.exit_code == 1 and "need a champion" in result.output


def test_evaluate_policy_leaves_the_learned_row_out_without_an_artefact(home: Layout) -> None:
    args = ["evaluate-policy", "--users", "20", "--seed", "11", "--workers", "1", "--no-mlflow"]
    result = runner.invoke(_app(), [*args, "--policy", "learned", "--policy", "rules"])
    assert result.exit_code == 0, result.output
    assert "skipping the learned policy" in result.output
    assert "intent policy learn" in result.output
