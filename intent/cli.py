"""`intent`: the one command that fronts every job.

Each package contributes its commands through a `register(app)` function in its own CLI
module; heavy libraries (Feast, MLflow, BentoML) are imported inside the commands, so
`intent --help` stays fast.
"""

from __future__ import annotations

import importlib
import json
from typing import Annotated

import typer

from core import cli_kit
from core.layout import Layout
from core.settings import ConfigError, ConfigFile, load_config

app = typer.Typer(
    name="intent",
    help="Micro-moment intent service: simulate, build features, train, serve, evaluate.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
console = cli_kit.console(stderr=True)
DISTRIBUTION = "micro-moment-intent"

# Modules that contribute commands, each exposing `register(app: typer.Typer) -> None`.
COMMAND_MODULES: tuple[str, ...] = (
    "intent.quickstart",
    "features.simulator.cli",
    "features.ingest.cli",
    "features.pipeline.cli",
    "features.store.cli",
    "features.pipeline.profile_cli",
    "training.cli",
    "serving.cli",
    "serving.bento_cli",
    "loop.cli",
    "loop.assistive",
    "loop.monitor_cli",
    "training.policy.cli",
    "loop.rollout_cli",
    "streaming.cli",
    "loop.traffic_cli",
)

# Modules that define ConfigFile models (imported so `intent config` can list them).
CONFIG_MODULES: tuple[str, ...] = (
    "features.config",
    "features.store.config",
    "core.policy_config",
    "serving.config",
    "features.pipeline.config",
    "features.pipeline.profile_config",
    "features.pipeline.spark_config",
    "features.simulator.config",
    "training.config",
    "loop.config",
    "core.bandit",
    "serving.bandit",
    "streaming.config",
)


def version() -> str:
    """The installed distribution's version (pyproject.toml's `version`)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version(DISTRIBUTION)
    except PackageNotFoundError:
        return "unknown (not installed: run `make install` or `pip install .`)"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"intent {version()}")
        raise typer.Exit()


@app.callback()
def root(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version",
            "-V",
            callback=_print_version,
            is_eager=True,
            help="Print the version and exit.",
        ),
    ] = False,
) -> None:
    """Micro-moment intent service: simulate, build features, train, serve, evaluate."""


def config_models() -> list[type[ConfigFile]]:
    """Every config file model of the project, sorted by file name."""
    for module in CONFIG_MODULES:
        importlib.import_module(module)
    found: dict[str, type[ConfigFile]] = {}
    stack = list(ConfigFile.__subclasses__())
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        if "file_name" in cls.__dict__:
            found[cls.file_name] = cls
    return [found[name] for name in sorted(found)]


@app.command("config")
def config_command(
    schema: Annotated[bool, typer.Option("--schema", help="Print the JSON schema.")] = False,
    name: Annotated[
        str | None, typer.Option("--name", help="Only this config file, e.g. policy.yaml.")
    ] = None,
) -> None:
    """Validate every file in configs/ (or print their JSON schema with --schema)."""
    models = [m for m in config_models() if name is None or m.file_name == name]
    if not models:
        raise typer.BadParameter(f"no config named {name!r}", param_hint="--name")
    if schema:
        out = {m.file_name: m.model_json_schema() for m in models}
        typer.echo(json.dumps(out if name is None else out[models[0].file_name], indent=2))
        return
    layout = Layout.from_env()
    failed = False
    for model in models:
        try:
            load_config(model, layout=layout)
            console.print(f"[green]ok[/green]   {layout.config_file(model.file_name)}")
        except ConfigError as exc:
            failed = True
            console.print(f"[red]fail[/red] {exc}")
    if failed:
        raise typer.Exit(code=1)


def _register_commands() -> None:
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(app)


def main() -> None:
    """Console-script entry point."""
    _register_commands()
    try:
        app()
    except ConfigError as exc:
        console.print(f"[red]config error[/red]\n{exc}")
        raise SystemExit(2) from exc
