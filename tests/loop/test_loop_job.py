"""`evaluate_policies` is callable from Python without Typer: a notebook or a scheduled job
gets the same files and figures as `intent evaluate-policy`."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_loop_cli import _champion

from core.layout import Layout
from loop.evaluate import EvaluationError
from loop.job import EvaluationRequest, evaluate_policies


@pytest.mark.slow
def test_the_job_runs_without_the_cli(home: Layout, bundle_dir: Path) -> None:
    _champion(home, bundle_dir)
    events: list[str] = []
    notices: list[str] = []
    result = evaluate_policies(
        home,
        EvaluationRequest(policies=["rules"], seeds=[11], users=60, workers=1, mlflow=False),
        on_event=lambda what, **_: events.append(what),
        announce=notices.append,
    )
    assert (result.folder / "summary.md").is_file() and (result.folder / "funnel.png").is_file()
    # the baseline is always kept; the rows are the printed table (header + one per policy)
    policies = [row[0] for row in result.rows[1:]]
    assert result.baseline in policies and "rules" in policies
    assert events[0] == "plan" and events.count("run") == 2  # 2 policies x 1 seed
    assert notices and "2 policies x 1 seeds x 60 users" in notices[-1]
    assert result.run_id is None


def test_an_unknown_policy_is_an_evaluation_error(home: Layout) -> None:
    with pytest.raises(EvaluationError, match="magic"):
        evaluate_policies(home, EvaluationRequest(policies=["magic"], mlflow=False))
