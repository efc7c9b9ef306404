"""`intent features build` and `intent bench features`.

`features_app` is the `intent features ...` group; the Feast commands (apply, materialize,
online) attach to the same object, so both modules can register in any order.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from core import cli_kit as kit

if TYPE_CHECKING:
    from features.pipeline.build import BuildSummary

features_app = typer.Typer(
    name="features",
    help="Offline feature tables and the Feast feature store.",
    no_args_is_help=True,
)
console = kit.console(stderr=True)

WORKERS_HELP = "Processes that replay sessions (1 = in this process)."


def register(app: typer.Typer) -> None:
    """Add `features build` and `bench features` to the `intent` app."""
    if not any(info.typer_instance is features_app for info in app.registered_groups):
        app.add_typer(features_app)
    bench = kit.group(app, "bench", kit.BENCH_HELP)
    bench.command("features")(bench_features_command)


@features_app.command("build")
def build_command(
    workers: Annotated[int, typer.Option("--workers", min=1, help=WORKERS_HELP)] = 2,
    engine: Annotated[
        str, typer.Option("--engine", help="embedded (one machine) or spark (configs/spark.yaml).")
    ] = "embedded",
) -> None:
    """Replay validated events into decision points, session snapshots and aggregates."""
    from core.layout import Layout
    from features.pipeline.build import BuildError, build_features, table_paths
    from features.pipeline.readiness import UnusableData

    layout = Layout.from_env()
    if engine != "embedded":
        from features.pipeline.spark_cli import build_with_spark

        summary = build_with_spark(layout, engine)
        console.print(_summary_table(summary))
        return
    progress = Progress(
        TextColumn("replaying sessions"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("events"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
    with progress:
        task = progress.add_task("replay", total=None)
        try:
            summary = build_features(
                layout,
                workers=workers,
                on_loaded=lambda n: progress.update(task, total=n),
                progress=lambda n: progress.advance(task, n),
            )
        except (BuildError, UnusableData) as exc:
            raise kit.fail(str(exc)) from None
    console.print(_summary_table(summary))
    for name, path in table_paths(layout).items():
        line = f"  {name:<18} {summary.rows[name]:>9,} rows  {path}"
        console.print(line, soft_wrap=True, highlight=False)


def _summary_table(summary: BuildSummary) -> Table:
    table = Table(title="features build", show_header=False, title_justify="left")
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("events", f"{summary.events:,}")
    table.add_row(
        "bots excluded", f"{summary.bot_sessions:,} sessions / {summary.bot_events:,} events"
    )
    table.add_row("sessions replayed", f"{summary.sessions:,}")
    table.add_row("users", f"{summary.users:,}")
    table.add_row("decision points", f"{summary.decision_points:,}")
    for moment, count in summary.moments.items():
        table.add_row(f"  {moment}", f"{count:,}")
    table.add_row("label rate (abandoned)", f"{summary.label_rate:.3f}")
    table.add_row("censored (outcome unknown at data end)", f"{summary.censored:,}")
    table.add_row("oracle attached", "yes" if summary.oracle_attached else "no")
    table.add_row("replay", f"{summary.replay_events_per_s:,.0f} events/s")
    return table


def bench_features_command(
    users: Annotated[int, typer.Option("--users", min=1, help="Simulated users.")] = 2000,
    days: Annotated[int, typer.Option("--days", min=1, help="Simulated days.")] = 14,
    seed: Annotated[int, typer.Option("--seed", help="Simulation seed.")] = 7,
    workers: Annotated[
        list[int] | None,
        typer.Option("--workers", min=1, help="Worker counts to time the build with."),
    ] = None,
    store: Annotated[
        bool,
        typer.Option("--store", help="Use the validated event store instead of a simulation."),
    ] = False,
    scale: Annotated[
        str | None,
        typer.Option(
            "--scale", help="Cost-vs-work curve at these multiples of --users, e.g. 1,4,16."
        ),
    ] = None,
) -> None:
    """Offline replay throughput (events/s on one core) and whole-build time, as JSON.

    With --scale: both engines at each multiple of the simulated users (see `bench.scale`).
    """
    if scale is not None:
        from features.pipeline.spark_cli import bench_scale

        return bench_scale(scale, users=users, days=days, seed=seed, workers=workers)
    from bench.pipeline import bench_build, simulated_events, stored_events
    from core.layout import Layout
    from features.pipeline.build import BuildError, PipelineConfigs

    layout = Layout.from_env()
    configs = PipelineConfigs.load(layout)
    try:
        if store:
            events, bots, source = stored_events(layout)
        else:
            with console.status(f"simulating {users} users over {days} days"):
                events, bots, source = simulated_events(layout, users, days, seed)
        with console.status(f"timing the build on {events.num_rows:,} events"):
            result = bench_build(events, bots, configs, workers or [1, 2])
    except (BuildError, ImportError) as exc:
        raise kit.fail(str(exc)) from None
    typer.echo(json.dumps({"source": source} | result, indent=2))
