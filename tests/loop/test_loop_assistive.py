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
    # flagged: the events say so; inferred: no flag, only keyboard navigation tells
    for cohort in ("flagged", "inferred"):
        mine = frame.loc[cohort]
        assert mine["users"] > 0 and mine["decisions"] > 0
        assert mine["bot_false_positive_rate"] == 0.0
        assert mine["read_as_assistive"] == 1.0
        assert mine["hesitation_actions"] == 0 and mine["excluded_actions"] == 0
    others = frame.loc["other"]
    assert others["hesitation_actions"] > 0  # the control: the same policy helps other pauses
    assert others["read_as_assistive"] == 0.0  # and the inference leaves sighted users alone


def test_command_prints_every_cohort() -> None:
    import typer

    from loop import assistive

    app = typer.Typer()
    assistive.register(app)
    app.command("noop")(lambda: None)  # two commands: typer keeps the subcommand name
    result = CliRunner().invoke(app, ["assistive-report", "--users", "120", "--share", "0.3"])
    assert result.exit_code == 0, result.output
    for word in ("flagged", "inferred", "other", "bot_false_positive_rate", "read_as_assistive"):
        assert word in result.output
