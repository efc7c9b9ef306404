"""`intent simulate`, `intent calibrate-simulator` and `intent bench simulate`."""

from __future__ import annotations

import json
import time
from datetime import date, datetime
from typing import Annotated

import typer
from rich.table import Table

from core import cli_kit as kit

console = kit.console(stderr=True)

Users = Annotated[int, typer.Option("--users", min=1, help="Users arriving over the period.")]
Days = Annotated[int, typer.Option("--days", min=1, help="Length of the simulated period.")]
Seed = Annotated[int, typer.Option("--seed", min=0, help="Random seed (same seed, same data).")]
Start = Annotated[
    datetime | None,
    typer.Option(
        "--start",
        formats=["%Y-%m-%d"],
        help="First day (UTC); default: simulator.yaml start_date, else ending today.",
    ),
]


def register(app: typer.Typer) -> None:
    """Add `simulate`, `calibrate-simulator` and `bench simulate` (idempotent)."""
    kit.command(app, "simulate", simulate_command)
    kit.command(app, "calibrate-simulator", calibrate_command)
    kit.command(kit.group(app, "bench", kit.BENCH_HELP), "simulate", bench_command)


def _configs():
    from core.layout import Layout
    from core.settings import load_config
    from features.config import FunnelConfig, SignalsConfig
    from features.simulator.config import SimulatorConfig

    layout = Layout.from_env()
    return (
        layout,
        load_config(SimulatorConfig, layout=layout),
        load_config(SignalsConfig, layout=layout),
        load_config(FunnelConfig, layout=layout),
    )


def simulate_command(
    users: Users = 20_000,
    days: Days = 30,
    seed: Seed = 7,
    start: Start = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace the simulated tables already in data/.")
    ] = False,
) -> None:
    """Simulate onboarding users; write raw events, latent users and the oracle under data/."""
    from features.simulator.engine import simulate
    from features.simulator.summary import funnel_summary
    from features.simulator.tables import output_paths, write_tables

    layout, sim_cfg, signals_cfg, funnel = _configs()
    existing = existing_outputs(output_paths(layout), force=force)
    if existing:
        raise kit.fail(
            f"{', '.join(existing)} already exist; pass --force to replace them "
            "(or set INTENT_DATA_DIR to simulate into another folder)"
        )
    with kit.progress() as progress:
        task = progress.add_task("simulating users", total=users)
        began = time.perf_counter()
        result = simulate(
            sim_cfg,
            signals_cfg,
            funnel,
            users,
            days,
            seed,
            start=start.date() if start else None,
            progress=lambda n: progress.advance(task, n),
        )
        elapsed = time.perf_counter() - began
        progress.update(task, description="writing parquet")
        paths = write_tables(
            {"events": result.events, "users": result.users, "oracle": result.oracle}, layout
        )
    summary = funnel_summary(result.events, result.users, funnel)
    cal = sim_cfg.calibration

    def check(value: float, target: float) -> str:
        mark = (
            "[green]ok[/green]" if abs(value - target) <= cal.tolerance else "[yellow]off[/yellow]"
        )
        return f"{value:.1%}  (target {target:.0%} ± {cal.tolerance:.0%}, {mark})"

    table = Table(title=f"simulated {result.start:%Y-%m-%d} .. {result.end:%Y-%m-%d}, seed {seed}")
    table.add_column("")
    table.add_column("value", justify="right")
    table.add_row("users", f"{summary.humans:,} humans + {summary.bots:,} bots")
    table.add_row("sessions", f"{summary.sessions:,}")
    table.add_row("events", f"{summary.events:,}")
    table.add_row("completion rate (humans)", check(summary.completion_rate, cal.completion_rate))
    table.add_row(
        f"drop-off at {cal.dropoff_step}",
        check(summary.dropoff(cal.dropoff_step), cal.dropoff_rate),
    )
    table.add_row("oracle rows", f"{result.oracle.num_rows:,}")
    table.add_row("simulation time", f"{elapsed:.1f} s ({summary.events / elapsed:,.0f} events/s)")
    for name, path in paths.items():
        table.add_row(f"{name} ->", str(path))
    console.print(table)


def existing_outputs(paths: dict, *, force: bool) -> list[str]:
    """The outputs a run would overwrite (none when `force`): simulating twice must not
    silently replace events that were already validated or trained on."""
    return [] if force else [str(p) for p in paths.values() if p.exists()]


def calibrate_command(
    users: Users = 20_000,
    days: Days = 30,
    seed: Seed = 11,
    rounds: Annotated[int, typer.Option("--rounds", min=1, help="Fitting rounds.")] = 4,
    start: Start = None,
) -> None:
    """Fit each step's abandon_logit to calibration.step_dropoff (no triggers); print the YAML."""
    from features.simulator.calibrate import CalibrationRound, fit_abandon_logits

    _, sim_cfg, signals_cfg, funnel = _configs()
    first_day = start.date() if start else sim_cfg.start_date or date(2025, 1, 1)
    table = Table(title="calibration rounds (drop-off per step, completion)")
    table.add_column("round")
    for step in funnel.steps:
        table.add_column(step, justify="right")
    table.add_column("completion", justify="right")
    targets = sim_cfg.calibration.step_dropoff
    table.add_row(
        "target",
        *(f"{targets[s]:.3f}" for s in funnel.steps),
        f"{sim_cfg.calibration.completion_rate:.3f}",
    )

    def show(r: CalibrationRound) -> None:
        s = r.summary
        table.add_row(
            str(table.row_count - 1),
            *(f"{s.dropoff(step):.3f}" for step in funnel.steps),
            f"{s.completion_rate:.3f}",
        )

    with console.status(f"simulating {rounds + 1} rounds of {users:,} users"):
        fitted, _ = fit_abandon_logits(
            sim_cfg, signals_cfg, funnel, users, days, seed, first_day, rounds, on_round=show
        )
    console.print(table)
    console.print("abandon_logit per step (paste into configs/simulator.yaml, steps.<step>):")
    for step in funnel.steps:
        typer.echo(f"  {step}: {fitted.steps[step].abandon_logit}")


def bench_command(
    users: Users = 20_000,
    days: Days = 30,
    seed: Seed = 7,
    detectors: Annotated[
        bool,
        typer.Option(
            "--detectors/--no-detectors",
            help="Run the signal detectors and the policy scheduler (a NoTriggers policy).",
        ),
    ] = False,
) -> None:
    """Time `simulate` (fixed start date) and print events/s as JSON."""
    from features.simulator.engine import simulate
    from features.simulator.hook import NoTriggers

    _, sim_cfg, signals_cfg, funnel = _configs()
    began, cpu = time.perf_counter(), time.process_time()
    result = simulate(
        sim_cfg,
        signals_cfg,
        funnel,
        users,
        days,
        seed,
        start=date(2025, 1, 1),
        policy=NoTriggers() if detectors else None,
    )
    seconds = time.perf_counter() - began
    cpu_seconds = time.process_time() - cpu
    events = result.events.num_rows
    out = {
        "bench": "simulate",
        "users": users,
        "days": days,
        "detectors": detectors,
        "events": events,
        "seconds": round(seconds, 3),
        "cpu_seconds": round(cpu_seconds, 3),  # fairer than wall time on a shared machine
        "events_per_s": round(events / seconds),
        "events_per_cpu_s": round(events / cpu_seconds),
    }
    typer.echo(json.dumps(out))
