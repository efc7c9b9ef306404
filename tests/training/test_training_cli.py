"""`intent train | promote | retrain | bench train` through Typer: output and one-line errors."""

from __future__ import annotations

import json
import os

import pytest
import typer
from typer.testing import CliRunner

from training.cli import register

pytestmark = pytest.mark.slow


@pytest.fixture
def cli(pipeline, tmp_path, monkeypatch) -> typer.Typer:
    """The commands on the shared pipeline's data, with this test's MLflow store and models."""
    monkeypatch.setenv("INTENT_HOME", str(pipeline.layout.root))
    # the shared world's configs: the repo's, with its small-world guards overlay
    monkeypatch.setenv("INTENT_CONFIGS", os.pathsep.join(map(str, pipeline.layout.config_dirs)))
    monkeypatch.setenv("INTENT_MLRUNS_DIR", str(tmp_path / "mlruns"))
    monkeypatch.setenv("INTENT_MODELS_DIR", str(tmp_path / "models"))
    app = typer.Typer()

    @app.callback()
    def root() -> None:
        """test app"""

    register(app)
    return app


def test_promote_without_a_challenger_is_one_line(cli) -> None:
    result = CliRunner().invoke(cli, ["promote"])
    assert result.exit_code == 1
    assert "no intent-scorer@challenger to promote" in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


def test_train_prints_model_rules_and_oracle_and_promotes(cli, tmp_path) -> None:
    result = CliRunner().invoke(cli, ["train", "--promote"], terminal_width=200)
    assert result.exit_code == 0, result.output
    for text in ("ROC-AUC", "rules", "oracle", "AUC(model) / AUC(oracle)", "rows/s"):
        assert text in result.output
    assert "promoted: intent-scorer@champion = v1 (was none)" in result.output
    assert (tmp_path / "models" / "1" / "model.onnx").exists()
    assert (tmp_path / "mlruns" / "mlflow.db").exists()


def test_retrain_errors_are_one_line(cli) -> None:
    result = CliRunner().invoke(cli, ["retrain", "--as-of", "2020-01-01"])
    assert result.exit_code == 1 and "no events between" in result.output
    assert "Traceback" not in result.output
    bad = CliRunner().invoke(cli, ["retrain", "--as-of", "2025-13-01"])
    assert bad.exit_code == 2  # Typer's own bad-parameter exit


def test_bench_train_prints_json(cli) -> None:
    result = CliRunner().invoke(cli, ["bench", "train"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output[result.output.index("{") :])
    assert out["bench"] == "train" and out["train_rows_per_s"] > 0
    assert out["parity_max_abs_diff"] <= 1e-5
    assert out["test_roc_auc"] > out["rules_test_roc_auc"]
