"""Command-line plumbing every area's commands share: one look, one way to fail.

Results a script may read go to stdout (tables, JSON); progress, notes and errors go to
stderr through `err`. An error a user can cause is one red line and exit code 1, never a
traceback.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Callable, Iterator
from typing import Any

import typer
from rich.console import Console, ConsoleDimensions
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

# Width of output that is not a terminal (a pipe, a cron log): wide enough that tables are
# never cut to `co…`; rich's default there is 80 columns. COLUMNS still wins when set.
PIPED_WIDTH = 1000


class _Console(Console):
    """A rich Console that is full width when its stream is not a terminal (checked at each
    write, so a console made at import follows later redirections)."""

    @property
    def size(self) -> ConsoleDimensions:
        size = Console.size.fget(self)
        if self.is_terminal or os.environ.get("COLUMNS"):
            return size
        return ConsoleDimensions(PIPED_WIDTH, size.height)

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        Console.size.fset(self, new_size)


def console(*, stderr: bool = False, **kwargs: Any) -> Console:
    """The console every command prints through: stdout for results, stderr for the rest."""
    return _Console(stderr=stderr, **kwargs)


err = console(stderr=True, soft_wrap=True)

BENCH_HELP = "Benchmarks; each prints JSON on stdout."


def group(app: typer.Typer, name: str, help: str) -> typer.Typer:
    """The sub-command group `name` of `app`, created on first use (areas share `bench`)."""
    for info in app.registered_groups:
        sub = info.typer_instance
        if sub is not None and (info.name or sub.info.name) == name:
            return sub
    sub = typer.Typer(name=name, help=help, no_args_is_help=True)
    app.add_typer(sub)
    return sub


def command(target: typer.Typer, name: str, fn: Callable[..., None]) -> None:
    """Register `fn` as `name` once, however often `register` runs (tests build many apps)."""
    if not any(info.callback is fn for info in target.registered_commands):
        target.command(name)(fn)


def fail(message: str, console: Console | None = None) -> typer.Exit:
    """Print `message` as one error line; raise the returned Exit. Pass a console bound to
    the real stderr when failing inside `quiet_output`."""
    line = "; ".join(part.strip() for part in message.strip().splitlines() if part.strip())
    (console or err).print(f"[red]error[/red] {line or 'failed'}", highlight=False)
    return typer.Exit(code=1)


@contextlib.contextmanager
def user_errors(*kinds: type[BaseException]) -> Iterator[None]:
    """Turn the listed exceptions, and tracking-store failures (MLflow / SQLAlchemy), into
    one error line and exit 1; anything else is a bug and keeps its traceback."""
    try:
        yield
    except kinds as exc:
        raise fail(str(exc)) from None
    except Exception as exc:
        if not type(exc).__module__.startswith(("mlflow", "sqlalchemy")):
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        err.print(f"[red]tracking store error[/red] {first}", highlight=False)
        raise typer.Exit(code=1) from None


def progress(*, counts: bool = True) -> Progress:
    """The progress display of every long job: transient, on stderr."""
    columns = [SpinnerColumn(), TextColumn("{task.description}"), BarColumn()]
    if counts:
        columns.append(MofNCompleteColumn())
    return Progress(*columns, TimeElapsedColumn(), console=err, transient=True)


@contextlib.contextmanager
def stages() -> Iterator[Callable[[str], None]]:
    """A spinner whose text follows a pipeline's stages: `with stages() as stage: stage("x")`."""
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as bar:
        task = bar.add_task("starting", total=None)
        yield lambda text: bar.update(task, description=text)


@contextlib.contextmanager
def quiet_output() -> Iterator[None]:
    """Swallow what libraries print (Feast banners, tqdm bars); we report through rich."""
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        yield
