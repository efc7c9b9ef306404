"""`feast plan` right after `feast apply` reports nothing to change (plain Feast CLI)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
from feast_tables import REPO_CONFIGS

from features import feast_defs

REPO = Path(feast_defs.__file__).parent / "feature_repo"
DEFINITION_MODULES = ("entities", "data_sources", "views", "on_demand", "services")


@pytest.fixture
def repo_copy(layout, world, monkeypatch):
    """The repo folder inside a temporary checkout, so its relative paths land in `layout`."""
    target = layout.root / "features" / "feature_repo"
    shutil.copytree(REPO, target)
    monkeypatch.setenv("INTENT_HOME", str(layout.root))
    monkeypatch.setenv("INTENT_CONFIGS", str(REPO_CONFIGS))
    _forget_definitions()
    yield target
    _forget_definitions()


def _forget_definitions() -> None:
    feast_defs.repo_definitions.cache_clear()
    for name in DEFINITION_MODULES:
        sys.modules.pop(name, None)


def feast(repo: Path, *args: str) -> str:
    from click.testing import CliRunner
    from feast.cli.cli import cli

    result = CliRunner().invoke(cli, ["--chdir", str(repo), *args])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def test_plan_after_apply_is_clean(repo_copy) -> None:
    first = feast(repo_copy, "plan")
    assert "Created" in first or "created" in first  # a plan can report changes ...
    feast(repo_copy, "apply")
    _forget_definitions()
    plan = feast(repo_copy, "plan")
    changed = [
        line
        for line in plan.splitlines()
        if any(w in line for w in ("Updated", "Created", "Deleted"))
    ]
    assert changed == [], plan
