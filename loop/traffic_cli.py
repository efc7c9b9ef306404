"""`intent traffic`: replay simulated decision points at a running server (loop.traffic)."""

from __future__ import annotations

import json
import os
from typing import Annotated

import typer
from rich.table import Table

from core import cli_kit as kit
from core.layout import Layout

out = kit.console()


def register(app: typer.Typer) -> None:
    kit.command(app, "traffic", traffic_command)


def traffic_command(
    url: Annotated[
        str | None,
        typer.Option("--url", help="The server (default: http://127.0.0.1:<server.port>)."),
    ] = None,
    requests: Annotated[
        int, typer.Option("--requests", "-n", min=1, help="Decision points to replay.")
    ] = 500,
    shift: Annotated[
        list[str] | None,
        typer.Option(
            "--shift",
            help="Move a request signal on purpose: pause_s=+30, pause_s=-5, scroll_depth=*0.5 "
            "(repeatable).",
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Which points are sampled.")] = 0,
    clients: Annotated[
        int, typer.Option("--clients", min=1, max=64, help="Concurrent connections.")
    ] = 4,
    as_json: Annotated[bool, typer.Option("--json", help="Print the counts as JSON.")] = False,
) -> None:
    """POST /score for built decision points and /outcome for what followed (bearer token
    from serving.yaml's auth.token_env)."""
    from core.settings import ConfigError, load_config
    from loop.traffic import TrafficError, build_requests, parse_shift, sample_points, send
    from serving.config import ServingConfig

    layout = Layout.from_env()
    with kit.user_errors(TrafficError, ConfigError):
        cfg = load_config(ServingConfig, layout=layout)
        shifts = [parse_shift(s) for s in shift or ()]
        with kit.stages() as stage:
            stage(f"reading {requests} decision points and their features")
            with kit.quiet_output():
                frame = sample_points(layout, requests, seed)
        bodies = build_requests(frame, shifts)
        with kit.progress() as bar:
            task = bar.add_task("POST /score + /outcome", total=len(bodies))
            report = send(
                url or f"http://127.0.0.1:{cfg.server.port}",
                bodies,
                token=os.environ.get(cfg.auth.token_env) or None,
                clients=clients,
                progress=lambda n: bar.advance(task, n),
            )
    figures = report.as_dict()
    if as_json:
        typer.echo(json.dumps(figures, indent=2))
    else:
        out.print(_table(figures))
    if report.errors:
        raise kit.fail(f"{sum(report.errors.values())} requests failed: {dict(report.errors)}")


def _table(figures: dict) -> Table:
    table = Table(title=f"traffic to {figures['url']}", title_justify="left")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key in ("requests", "scored", "outcomes_posted", "outcomes_recorded", "elapsed_s"):
        table.add_row(key, str(figures[key]))
    table.add_row("requests/s", str(figures["requests_per_s"]))
    for group in ("by_source", "by_arm", "by_model_version"):
        for name, count in sorted(figures[group].items()):
            table.add_row(f"{group.removeprefix('by_')}: {name}", str(count))
    return table
