"""Config files: every shipped file validates, and mistakes name the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from core.layout import Layout
from core.settings import ConfigError, load_config
from features.config import FunnelConfig
from intent.cli import app, config_models

REPO_CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("model", config_models(), ids=lambda m: m.file_name)
def test_every_shipped_config_validates(model) -> None:
    assert load_config(model, REPO_CONFIGS / model.file_name) is not None


def test_unknown_key_names_file_and_key(tmp_path: Path) -> None:
    bad = tmp_path / "funnel.yaml"
    bad.write_text("name: f\nsteps: [a, b]\nstepz: [c]\n")
    with pytest.raises(ConfigError) as err:
        load_config(FunnelConfig, bad)
    assert str(bad) in str(err.value)
    assert "stepz" in str(err.value)
    assert "unknown key" in str(err.value)


def test_wrong_type_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "funnel.yaml"
    bad.write_text("name: f\nsteps: [a, a]\n")
    with pytest.raises(ConfigError, match="steps"):
        load_config(FunnelConfig, bad)
    with pytest.raises(ConfigError, match="not found"):
        load_config(FunnelConfig, tmp_path / "absent.yaml")
    (tmp_path / "broken.yaml").write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(FunnelConfig, tmp_path / "broken.yaml")


def test_config_command_validates_and_prints_schema(tmp_path: Path, monkeypatch) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["config", "--schema", "--name", "funnel.yaml"])
    assert result.exit_code == 0, result.output
    assert '"steps"' in result.output

    configs = tmp_path / "configs"
    configs.mkdir()
    for model in config_models():
        (configs / model.file_name).write_text((REPO_CONFIGS / model.file_name).read_text())
    (configs / "funnel.yaml").write_text("name: f\nsteps: [a]\ntypo: 1\n")
    monkeypatch.setenv("INTENT_CONFIGS", str(configs))
    result = runner.invoke(app, ["config"])
    assert result.exit_code == 1
    assert Layout.from_env().configs == configs
