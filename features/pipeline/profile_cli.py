"""`intent data profile`: what the event store can support, and which label to use."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from core import cli_kit as kit

console = Console(stderr=True, soft_wrap=True)
DATA_HELP = "Look at the data before building on it."


def register(app: typer.Typer) -> None:
    """Add `intent data profile`."""
    kit.command(kit.group(app, "data", DATA_HELP), "profile", profile_command)


def profile_folder(reports: Path, now: datetime) -> Path:
    return reports / "profile" / f"{now:%Y%m%d-%H%M%S}"


def profile_command(
    workers: Annotated[
        int, typer.Option("--workers", min=1, help="Processes that replay sessions.")
    ] = 2,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Report folder (default: data/reports/profile/<stamp>)."),
    ] = None,
) -> None:
    """Span, users, sessions, coverage, moments and every candidate label of the event store;
    Markdown on stdout, HTML + PNG in data/reports/profile/."""
    from core.layout import Layout
    from core.settings import load_config
    from features.ingest.event_store import read_bot_scores, read_events
    from features.pipeline.build import BuildError, PipelineConfigs
    from features.pipeline.profile import profile_events
    from features.pipeline.profile_config import ProfileConfig
    from features.pipeline.profile_report import markdown, write_report

    layout = Layout.from_env()
    configs = PipelineConfigs.load(layout)
    cfg = load_config(ProfileConfig, layout=layout)
    with console.status("reading the event store"):
        events = read_events(layout)
    if events.num_rows == 0:
        raise kit.fail(
            f"no validated events under {layout.events}: import and run `intent validate` first"
        )
    try:
        with console.status(f"replaying {events.num_rows:,} events"):
            profile = profile_events(events, read_bot_scores(layout), configs, cfg, workers=workers)
    except BuildError as exc:
        raise kit.fail(str(exc)) from None
    typer.echo(markdown(profile))
    folder = out or profile_folder(layout.reports, datetime.now(UTC))
    paths = write_report(profile, folder)
    console.print(f"report: {paths['html']} (+ {paths['png'].name})", highlight=False)
