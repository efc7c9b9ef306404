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

from features import cli_kit as kit
from features.layout import Layout

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

    from features.settings import ConfigError
    from serving.bundle import BundleError
    from serving.decision_log import DecisionLogError
    from serving.loop.evaluate import EvaluationError
    from serving.loop.logs import LogSourceError

    quiet = [logging.getLogger(n) for n in ("mlflow", "alembic", "serving.registry")]
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
    from features.settings import load_config
    from serving.loop.config import LoopConfig
    from serving.loop.evaluate import EvaluationError, plan_jobs, prepare, run_jobs
    from serving.loop.outputs import (
        comparison_rows,
        dropoff_rows,
        estimates_json,
        funnel_png,
        headline_sentence,
        runs_frame,
        summary_markdown,
        write_files,
    )
    from serving.loop.summary import case_study, evaluation_notes, summarize

    layout = Layout.from_env()
    with _user_errors():
        cfg = load_config(LoopConfig, layout=layout).evaluation
        changes: dict[str, object] = {}
        if seed:
            changes["seeds"] = list(dict.fromkeys(seed))
        if users is not None:
            changes["users"] = users
        if workers is not None:
            changes["workers"] = workers
        cfg = cfg.model_copy(update=changes)
        names = [p.name for p in cfg.policies]
        wanted = list(dict.fromkeys([cfg.baseline, *(policy or names)]))
        unknown = [n for n in wanted if n not in names]
        if unknown:
            raise EvaluationError(f"unknown policy {unknown[0]!r}; configured: {', '.join(names)}")
        specs = [cfg.policy(n) for n in names if n in wanted]
        headline = cfg.headline if cfg.headline in wanted else specs[-1].name
        setup, model = prepare(layout, cfg, specs)
        stamp = _stamp()
        folder = layout.reports / "evaluate-policy" / stamp
        jobs = plan_jobs(specs, cfg.seeds, cfg.keep_logs, folder / "logs")
        err.print(
            f"{len(specs)} policies x {len(cfg.seeds)} seeds x {cfg.users:,} users, "
            f"{cfg.days} days from {cfg.start_date}; model: {model or 'not needed'}",
            highlight=False,
        )
        with kit.progress() as progress:
            task = progress.add_task("simulating runs", total=len(jobs))
            results = run_jobs(setup, jobs, cfg.workers, lambda _r: progress.advance(task, 1))
            progress.update(task, description="summarizing")
            summaries = summarize(results, [s.name for s in specs], cfg.baseline, cfg.confidence)
            case = case_study(summaries, cfg.baseline, headline, cfg.focus_step)
            comparison = comparison_rows(summaries, cfg.baseline, cfg.focus_step)
            context = [
                f"{cfg.users:,} simulated users per run, {cfg.days} days from {cfg.start_date}, "
                f"held-out seeds {', '.join(map(str, cfg.seeds))}",
                f"model: {model or 'none'}",
                f"intervals: {cfg.confidence:.0%} Student t over seeds",
            ]
            notes = evaluation_notes(
                summaries, specs, setup.configs.policy, setup.configs.signals
            ) + _versus_rules(results, specs, cfg.confidence)
            markdown = summary_markdown(
                "Policy evaluation in simulation",
                context,
                case,
                cfg.baseline,
                headline,
                comparison,
                dropoff_rows(summaries, setup.configs.funnel.steps),
                notes,
            )
            png = funnel_png(summaries, setup.configs.funnel.steps, "policy evaluation")
            files = write_files(
                folder, markdown, runs_frame(results), estimates_json(summaries), png
            )
            run_id = None
            if mlflow:
                progress.update(task, description="logging to MLflow")
                run_id = _log_evaluation(
                    layout, setup, cfg, specs, model, results, summaries, files
                )
    _print_case(case, cfg.baseline, headline)
    _print_rows(
        comparison_rows(summaries, cfg.baseline, cfg.focus_step, intervals=False),
        "all policies (means over seeds; intervals in summary.md)",
    )
    for note in notes:
        out.print(f"note: {note}", highlight=False)
    out.print(headline_sentence(summaries, cfg.baseline, headline), highlight=False)
    out.print(f"report: {folder / 'summary.md'}", highlight=False, soft_wrap=True)
    out.print(f"funnel plot: {folder / 'funnel.png'}", highlight=False, soft_wrap=True)
    kept = [r.kept for r in results if r.kept is not None]
    for path in kept:
        out.print(
            f"kept for `intent report`: --log {path / 'decisions.db'} --events "
            f"{path / 'events.parquet'}",
            highlight=False,
            soft_wrap=True,
        )
    if run_id:
        out.print(f"MLflow run: {run_id}", highlight=False)


def _versus_rules(results, specs, confidence: float) -> list[str]:
    """Each model policy against the rules on the same seeds: the issue's yardstick."""
    from serving.loop.config import PolicyKind
    from serving.loop.metrics import COMPLETION, TRIGGERS_PER_USER_DAY
    from serving.loop.summary import paired, signed_num, signed_pp

    rules = next((s.name for s in specs if s.kind == PolicyKind.RULES), None)
    if rules is None:
        return []
    out = []
    for spec in specs:
        if spec.kind != PolicyKind.MODEL:
            continue
        completion = paired(results, spec.name, rules, COMPLETION, confidence)
        triggers = paired(results, spec.name, rules, TRIGGERS_PER_USER_DAY, confidence)
        out.append(
            f"{spec.name} vs {rules} (paired by seed): completion {signed_pp(completion)}, "
            f"triggers per user-day {signed_num(triggers)}"
        )
    return out


def _log_evaluation(layout, setup, cfg, specs, model, results, summaries, files) -> str:
    from serving.loop.outputs import metric_series, per_seed_series
    from serving.loop.tracking import log_run

    params = {
        "users": cfg.users,
        "days": cfg.days,
        "start_date": cfg.start_date.isoformat(),
        "seeds": ",".join(map(str, cfg.seeds)),
        "policies": ",".join(s.name for s in specs),
        "baseline": cfg.baseline,
        "headline": cfg.headline,
        "model": model or "none",
        "confidence": cfg.confidence,
    }
    for spec in specs:
        params[f"policy.{spec.name}"] = spec.model_dump_json(exclude={"name"})
    return log_run(
        layout,
        setup.configs.serving.model,
        cfg.mlflow_experiment,
        run_name=f"evaluate-policy-{_stamp()}",
        kind="evaluate-policy",
        params=params,
        metrics=[*metric_series(summaries), *per_seed_series(results, cfg.seeds)],
        artifacts=files,
    )


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
    from serving.loop.efficacy_cli import run_report

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
    from serving.loop.feedback_cli import run_export

    layout = Layout.from_env()
    with _user_errors():
        run_export(layout, log, out, err)


def exposure_command() -> None:
    """Mark each decision point holdout / untreated / treated and write its training weight."""
    from serving.loop.feedback_cli import run_exposure

    layout = Layout.from_env()
    with _user_errors():
        run_exposure(layout, out, err)
