"""`intent monitor`: the drift report of the served model (thin over `loop.monitor`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from core import cli_kit as kit
from core.layout import Layout

out = kit.console()


def register(app: typer.Typer) -> None:
    app.command("monitor")(monitor_command)


def monitor_command(
    window: Annotated[
        str | None,
        typer.Option(
            "--window", help="A window of serving.yaml dashboard.windows_h (default: its default)."
        ),
    ] = None,
    log: Annotated[
        Path | None,
        typer.Option("--log", help="A SQLite decision log (default: serving.yaml's backend)."),
    ] = None,
    mlflow: Annotated[
        bool, typer.Option("--mlflow/--no-mlflow", help="Log the report to MLflow.")
    ] = True,
) -> None:
    """Training vs serving per feature (PSI, plots) for the served model, as HTML + MLflow."""
    from loop.cli import _stamp, _user_errors
    from loop.monitor import MonitorError, describe_result, run_monitor

    layout = Layout.from_env()
    with _user_errors(), kit.user_errors(MonitorError):
        result = run_monitor(layout, window=window, log_path=log, mlflow=mlflow, stamp=_stamp())
    for line in describe_result(result):
        out.print(line, highlight=False, soft_wrap=True)
