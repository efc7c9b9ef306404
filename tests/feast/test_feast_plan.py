"""`feast plan` right after `feast apply` reports nothing to change (plain Feast CLI), also
on a registry that materialization has touched."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

FEAST_TIMEOUT_S = 600  # one `feast` process imports Feast and the definitions: generous


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


def test_plan_after_apply_is_clean(repo_copy, world) -> None:
    assert "Created feature view user_stats" in changes(feast(repo_copy, "plan"))
    feast(repo_copy, "apply")
    assert changes(feast(repo_copy, "plan")) == []
    # materializing re-stamps the stored sources; the next apply must leave nothing to plan
    # (before the definitions pinned their stamps, this plan reported all three views)
    feast(repo_copy, "materialize-incremental", "2025-03-03T14:00:00")
    feast(repo_copy, "apply")
    assert changes(feast(repo_copy, "plan")) == []
