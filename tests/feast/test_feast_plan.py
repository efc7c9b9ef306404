"""`feast plan` right after `feast apply` reports nothing to change (plain Feast CLI), also
on a registry that materialization has touched."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from feast_tables import REPO_CONFIGS

from features.store import definitions as feast_defs

REPO = Path(feast_defs.__file__).parents[1] / "feature_repo"
DEFINITION_MODULES = ("entities", "data_sources", "views", "on_demand", "services")
FEAST_TIMEOUT_S = 600  # one `feast` process imports Feast and the definitions: generous


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
    """The plain `feast` CLI in its own process: each run builds the definitions anew, as a
    user's `feast apply` and `feast plan` do."""
    result = subprocess.run(
        [str(Path(sys.executable).parent / "feast"), "--chdir", str(repo), *args],
        capture_output=True,
        text=True,
        timeout=FEAST_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def changes(plan: str) -> list[str]:
    return [
        line for line in plan.splitlines() if line.startswith(("Updated", "Created", "Deleted"))
    ]


def test_plan_after_apply_is_clean(repo_copy) -> None:
    assert "Created feature view user_stats" in changes(feast(repo_copy, "plan"))
    feast(repo_copy, "apply")
    assert changes(feast(repo_copy, "plan")) == []
    # materializing re-stamps the stored sources; the next apply must leave nothing to plan
    # (before the definitions pinned their stamps, this plan reported all three views)
    feast(repo_copy, "materialize-incremental", "2025-03-03T14:00:00")
    feast(repo_copy, "apply")
    assert changes(feast(repo_copy, "plan")) == []
