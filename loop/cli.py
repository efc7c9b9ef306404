"""`intent evaluate-policy`, `intent report`, `intent loop export`, `intent loop exposure`.

Heavy imports (MLflow, matplotlib, the simulator, ONNX Runtime) happen inside the commands.
Errors a user can cause - no champion yet, no decision log, a seed that is not held out, a
bad config - print one line and exit 1.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from core import cli_kit as kit
from core.layout import Layout

out = kit.console()
err = kit.console(stderr=True)


def register(app: typer.Typer) -> None:
    """Add `evaluate-policy`, `report` and the `loop` group to the `intent` app."""
    app.command("evaluate-policy")(evaluate_command)
    app.command("report")(report_command)
    loop = kit.group(app, "loop", "Closed loop: the decision log back into events and training.")
    loop.command("export")(export_command)
    loop.command("exposure")(exposure_command)


@contextmanager
def _user_errors() -> Iterator[None]:
    """One line and exit 1 for the errors a user can cause; library noise off."""
    import logging

    from core.bundle import BundleError
    from core.settings import ConfigError
    from loop.evaluate import EvaluationError
    from loop.logs import LogSourceError
    from serving.decision_log import DecisionLogError

    quiet = [logging.getLogger(n) for n in ("mlflow", "alembic", "core.registry")]
    levels = [lg.level for lg in quiet]
    for lg in quiet:
        lg.setLevel(logging.ERROR)
    try:
        with kit.user_errors(
            EvaluationError, LogSourceError, ConfigError, BundleError, DecisionLogError
        ):
            yield
    finally:
        for lg, level in zip(quiet, levels, strict=True):
            lg.setLevel(level)


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S")


# --- intent evaluate-policy ----------------------------------------------------------------


def evaluate_command(
    policy: Annotated[
        list[str] | None,
        typer.Option("--policy", "-p", help="Only these policies (repeat); the baseline is kept."),
    ] = None,
    seed: Annotated[
        list[int] | None,
        typer.Option("--seed", "-s", min=0, help="Held-out seeds (repeat; default: loop.yaml)."),
    ] = None,
    users: Annotated[
        int | None, typer.Option("--users", "-n", min=1, help="Users per run (default: loop.yaml).")
    ] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", "-w", min=1, help="Parallel processes.")
    ] = None,
    mlflow: Annotated[
        bool, typer.Option("--mlflow/--no-mlflow", help="Log the numbers to MLflow.")
    ] = True,
) -> None:
    """Replay simulated users with each policy in the loop; compare completion and triggers."""
    from loop.job import EvaluationRequest, evaluate_policies

    layout = Layout.from_env()
    request = EvaluationRequest(
        policies=policy or [], seeds=seed or [], users=users, workers=workers, mlflow=mlflow
    )
    with _user_errors(), kit.progress() as progress:
        task = progress.add_task("simulating runs", total=None)

        def on_event(what: str, total: int | None = None) -> None:
            if what == "plan":
                progress.update(task, total=total)
            elif what == "run":
                progress.advance(task, 1)
            else:
                progress.update(task, description=what)

        def announce(message: str) -> None:
            progress.console.print(message, highlight=False)

        result = evaluate_policies(layout, request, on_event=on_event, announce=announce)
    _print_case(result.case, result.baseline, result.headline)
    _print_rows(result.rows, "all policies (means over seeds; intervals in summary.md)")
    for note in result.notes:
        out.print(f"note: {note}", highlight=False)
    out.print(result.headline_sentence, highlight=False)
    if result.edge is not None:
        out.print(f"edge: {result.edge.sentence()}", highlight=False)
    out.print(f"report: {result.folder / 'summary.md'}", highlight=False, soft_wrap=True)
    out.print(f"funnel plot: {result.folder / 'funnel.png'}", highlight=False, soft_wrap=True)
    for path in result.kept:
        out.print(
            f"kept for `intent report`: --log {path / 'decisions.db'} --events "
            f"{path / 'events.parquet'}",
            highlight=False,
            soft_wrap=True,
        )
    if result.run_id:
        out.print(f"MLflow run: {result.run_id}", highlight=False)


def _print_case(case, baseline: str, headline: str) -> None:
    table = Table(title="case study: before / after", title_justify="left")
    for name in ("metric", f"before ({baseline})", f"after ({headline})", "improvement"):
        table.add_column(name, justify="left" if name == "metric" else "right")
    for row in case:
        table.add_row(row.metric, row.before, row.after, row.improvement)
    out.print(table)


def _print_rows(rows, title: str) -> None:
    head, *body = rows
    table = Table(title=title, title_justify="left")
    for i, name in enumerate(head):
        if i == 0:
            table.add_column(name, justify="left", no_wrap=True)
        else:
            table.add_column(name, justify="right")
    for row in body:
        table.add_row(*row)
    out.print(table)


# --- intent report -------------------------------------------------------------------------


def report_command(
    log: Annotated[
        Path | None,
        typer.Option("--log", help="A SQLite decision log (default: serving.yaml's backend)."),
    ] = None,
    events: Annotated[
        Path | None,
        typer.Option(
            "--events", help="Events parquet for step completions (default: the event store)."
        ),
    ] = None,
    mlflow: Annotated[
        bool, typer.Option("--mlflow/--no-mlflow", help="Log the report to MLflow.")
    ] = True,
) -> None:
    """Trigger efficacy from the decision log: rates, lift over the holdout, experiments (HTML)."""
    from loop.efficacy_cli import run_report

    layout = Layout.from_env()
    with _user_errors():
        run_report(layout, log, events, mlflow, out, err, kit.progress, _stamp())


# --- intent loop export / exposure ---------------------------------------------------------


def export_command(
    log: Annotated[
        Path | None,
        typer.Option("--log", help="A SQLite decision log (default: serving.yaml's backend)."),
    ] = None,
) -> None:
    """Validate logged triggers and outcomes into the event store (trigger_* events)."""
    from loop.feedback_cli import run_export

    layout = Layout.from_env()
    with _user_errors():
        run_export(layout, log, out, err)


def exposure_command() -> None:
    """Mark each decision point holdout / untreated / treated and write its training weight."""
    from loop.feedback_cli import run_exposure

    layout = Layout.from_env()
    with _user_errors():
        run_exposure(layout, out, err)
