"""The tuned-threshold row of `intent evaluate-policy`: a policy overlay (what `intent policy
tune --out` writes) applied on top of policy.yaml for one policy of the comparison."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from loop_helpers import REPO_CONFIGS
from pydantic import ValidationError
from test_loop_cli import _champion

from core.layout import Layout
from core.policy_config import PolicyConfig
from core.settings import load_config
from loop.config import PolicySpec
from loop.job import EvaluationRequest, evaluate_policies, without_missing_overlays
from loop.outputs import RUNS_FILE
from loop.policies import overlaid

# Assist only from 0.79 for everyone: far fewer triggers than policy.yaml's 0.5 (or 0.45 on
# mobile), whatever the model scores.
STRICT = {
    "provenance": {"written by": "test"},
    "cohorts": [
        {"name": f"strict_{r}", "returning": r, "overrides": {"bands": {"uncertain": 0.79}}}
        for r in (False, True)
    ],
}


def with_overlay(root: Path) -> Path:
    """A copy of the repo's configs with `overlays/tuned.yaml` next to policy.yaml."""
    configs = root / "configs"
    shutil.copytree(REPO_CONFIGS, configs)
    (configs / "overlays").mkdir(exist_ok=True)
    (configs / "overlays" / "tuned.yaml").write_text(yaml.safe_dump(STRICT))
    return configs


def test_an_overlay_needs_an_engine_kind() -> None:
    with pytest.raises(ValidationError, match="overlay needs an engine kind"):
        PolicySpec(name="x", kind="none", overlay="overlays/tuned.yaml")


def test_a_row_whose_overlay_is_missing_is_skipped_with_the_command(home: Layout) -> None:
    specs = [
        PolicySpec(name="model", kind="model", caps=True),
        PolicySpec(name="tuned", kind="model", caps=True, overlay="overlays/none.yaml"),
    ]
    notices: list[str] = []
    kept = without_missing_overlays(specs, home, notices.append)
    assert [s.name for s in kept] == ["model"]
    assert "skipping tuned" in notices[0] and "intent policy tune --out" in notices[0]


def test_the_overlay_cohorts_follow_the_policy_files_own(tmp_path: Path) -> None:
    layout = Layout.under(tmp_path, configs=with_overlay(tmp_path))
    policy = load_config(PolicyConfig, layout=layout)
    tuned = overlaid(policy, layout, "overlays/tuned.yaml")
    own = [c.name for c in policy.cohorts]
    assert [c.name for c in tuned.cohorts] == [*own, "strict_False", "strict_True"]
    assert tuned.cohorts[-1].overrides.bands == {"uncertain": 0.79}


@pytest.mark.slow
def test_the_tuned_row_runs_the_champion_with_the_overlay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bundle_dir: Path
) -> None:
    monkeypatch.setenv("INTENT_HOME", str(tmp_path))
    monkeypatch.setenv("INTENT_CONFIGS", str(with_overlay(tmp_path)))
    layout = Layout.from_env().ensure()
    _champion(layout, bundle_dir)
    result = evaluate_policies(
        layout,
        EvaluationRequest(
            policies=["model", "tuned"], seeds=[11], users=80, workers=1, mlflow=False
        ),
    )
    runs = pd.read_csv(result.folder / RUNS_FILE).set_index("policy")
    assert {"model", "tuned"} <= set(runs.index)
    # same users, same champion: only the overlay's stricter band differs
    assert runs.loc["model", "triggers_per_user_day"] > 0
    assert runs.loc["tuned", "triggers_per_user_day"] < runs.loc["model", "triggers_per_user_day"]
