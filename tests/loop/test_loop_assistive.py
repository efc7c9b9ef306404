"""`intent assistive-report`: the job and its command on a small run."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from core.policy_config import PolicyConfig
from core.settings import load_config
from features.config import EventsConfig, FunnelConfig, SignalsConfig
from features.simulator.config import SimulatorConfig
from loop.assistive import assistive_report

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_report_shows_no_suppressed_help_leaking_to_the_assistive_cohort() -> None:
    cfgs = [
        load_config(c, CONFIGS / c.file_name)
        for c in (SimulatorConfig, SignalsConfig, FunnelConfig, PolicyConfig, EventsConfig)
    ]
    frame = assistive_report(*cfgs, users=200, days=7, seed=5, share=0.3)
    mine, others = frame.loc["assistive"], frame.loc["other"]
    assert mine["users"] > 0 and mine["decisions"] > 0
    assert mine["bot_false_positive_rate"] == 0.0
    assert mine["hesitation_actions"] == 0 and mine["excluded_actions"] == 0
    assert others["hesitation_actions"] > 0  # the control: the same policy helps other pauses


def test_command_prints_both_cohorts() -> None:
    import typer

    from loop import assistive

    app = typer.Typer()
    assistive.register(app)
    app.command("noop")(lambda: None)  # two commands: typer keeps the subcommand name
    result = CliRunner().invoke(app, ["assistive-report", "--users", "120", "--share", "0.3"])
    assert result.exit_code == 0, result.output
    assert "assistive" in result.output and "bot_false_positive_rate" in result.output
