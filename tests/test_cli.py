"""The front door: `intent --version`, `-V`, `-h`, and tables that survive a pipe."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

from rich.table import Table
from typer.testing import CliRunner

from core import cli_kit
from intent.cli import app, version

REPO = Path(__file__).resolve().parents[1]
INTENT = Path(sys.executable).parent / "intent"
COMMAND_TIMEOUT_S = 120  # a cold `intent` start imports typer and rich only


def _pyproject_version() -> str:
    import tomllib

    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


def test_version_flags_print_the_project_version() -> None:
    runner = CliRunner()
    for flag in ("--version", "-V"):
        result = runner.invoke(app, [flag])
        assert result.exit_code == 0, result.output
        assert result.output.strip() == f"intent {_pyproject_version()}"
    assert version() == _pyproject_version()


def test_short_help_is_help() -> None:
    runner = CliRunner()
    short, long = runner.invoke(app, ["-h"]), runner.invoke(app, ["--help"])
    assert short.exit_code == 0 and short.output == long.output
    assert "--version" in short.output


def test_the_console_script_answers_from_another_folder(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(INTENT), "-V"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"intent {_pyproject_version()}"


def _table(cell: str) -> Table:
    table = Table()
    table.add_column("column")
    table.add_column("value")
    table.add_row("completion rate (humans)", cell)
    return table


def test_piped_tables_are_printed_in_full(monkeypatch) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    cell = "/srv/intent/data/reports/evaluate-policy/20261203T000000Z/summary.md " * 3
    piped = io.StringIO()
    cli_kit.console(file=piped).print(_table(cell.strip()))
    assert cell.strip() in piped.getvalue() and "…" not in piped.getvalue()
    # a plain rich console cuts the same table at 80 columns: the factory is what helps
    plain = io.StringIO()
    from rich.console import Console

    Console(file=plain).print(_table(cell.strip()))
    assert cell.strip() not in plain.getvalue()


def test_columns_still_wins_when_set(monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "60")
    piped = io.StringIO()
    cli_kit.console(file=piped).print(_table("x" * 200))
    assert max(len(line) for line in piped.getvalue().splitlines()) <= 60
