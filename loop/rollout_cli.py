"""`intent rollout compare`: champion vs challenger on the live decision log (loop.rollout)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from core import cli_kit as kit
from core.layout import Layout

out = kit.console()


def register(app: typer.Typer) -> None:
    group = kit.group(app, "rollout", "Shadow and canary challengers: compare and decide.")
    kit.command(group, "compare", compare_command)


def compare_command(
    log: Annotated[
        Path | None,
        typer.Option("--log", help="A SQLite decision log (default: serving.yaml's backend)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    mlflow: Annotated[
        bool, typer.Option("--mlflow/--no-mlflow", help="Record the decision in MLflow.")
    ] = True,
) -> None:
    """Champion vs challenger: agreement, calibration, efficacy by arm, promote/hold/rollback."""
    from core.settings import ConfigError, load_config
    from loop.logs import LogSourceError
    from loop.rollout import RolloutError, compare_log, record_rollout
    from serving.config import ServingConfig
    from serving.decision_log import DecisionLogError

    layout = Layout.from_env()
    with kit.user_errors(RolloutError, ConfigError, LogSourceError, DecisionLogError):
        report = compare_log(layout, log)
        run = None
        if mlflow:
            cfg = load_config(ServingConfig, layout=layout)
            run, tagged = record_rollout(report, layout, cfg.model)
    if as_json:
        typer.echo(json.dumps(report.as_dict() | {"mlflow_run": run}, indent=2))
        return
    out.print(_table(report))
    out.print(f"recommendation: [bold]{report.recommendation}[/bold]", highlight=False)
    for reason in report.reasons:
        out.print(f"  - {reason}", highlight=False)
    if run is not None:
        where = "and tags on the challenger version" if tagged else "(version not in the registry)"
        out.print(f"MLflow run: {run} {where}", highlight=False)


def _fmt(value: float, digits: int = 3) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _table(report) -> Table:
    table = Table(
        title=f"champion v{report.champion_version} vs challenger v{report.challenger_version}",
        title_justify="left",
    )
    for name in ("figure", "champion", "challenger"):
        table.add_column(name, justify="left" if name == "figure" else "right")
    champ, chall = report.arms["champion"], report.arms["challenger"]
    for label, fn in (
        ("canary decisions", lambda a: str(a.decisions)),
        ("canary users", lambda a: str(a.users)),
        (
            "success rate [CI]",
            lambda a: f"{_fmt(a.success.value)} [{_fmt(a.success.lo)}, {_fmt(a.success.hi)}]",
        ),
        ("fallback rate", lambda a: _fmt(a.fallback_rate)),
        ("error rate", lambda a: _fmt(a.error_rate)),
    ):
        table.add_row(label, fn(champ), fn(chall))
    cal = report.calibration
    table.add_row("calibration ECE", _fmt(cal["champion"].ece), _fmt(cal["challenger"].ece))
    table.add_row("Brier score", _fmt(cal["champion"].brier), _fmt(cal["challenger"].brier))
    lift = report.lift
    table.add_row(
        "lift (challenger - champion)", "", f"{_fmt(lift.value)} [{_fmt(lift.lo)}, {_fmt(lift.hi)}]"
    )
    a = report.agreement
    table.add_row("shadow pairs", str(a.pairs), "")
    table.add_row("mean |score difference|", _fmt(a.mean_abs_diff), "")
    table.add_row("Spearman / Kendall", f"{_fmt(a.spearman)} / {_fmt(a.kendall)}", "")
    return table
