"""`intent rollout compare` (loop.rollout) on decision logs built with a known answer."""

from __future__ import annotations

import json

import numpy as np
import pytest
import typer
from loop_helpers import REPO_CONFIGS, T0, decision_row, log_of
from typer.testing import CliRunner

from core.layout import Layout
from core.settings import load_config
from loop import rollout_cli
from loop.rollout import (
    HOLD,
    PROMOTE,
    ROLLBACK,
    agreement,
    calibration,
    canary_role,
    compare,
)
from serving.config import RolloutConfig, ServingConfig
from serving.decision_log import sqlite_log

CHAMPION_V, CHALLENGER_V = "3", "4"


def rollout_cfg() -> RolloutConfig:
    return load_config(ServingConfig, REPO_CONFIGS / "serving.yaml").rollout


def canary_log(
    *,
    effect: float,
    users: int = 400,
    per_user: int = 2,
    model_errors: float = 0.0,
    seed: int = 0,
) -> tuple[list[dict], list[tuple[str, str, float]]]:
    """Canary decisions: the challenger's arm abandons `effect` more often (negative: less)
    than the champion's, each model scoring its own arm calibrated and the other's as the
    shadow; `model_errors` of the challenger's decisions fell back on a model error."""
    rng = np.random.default_rng(seed)
    rows, outcomes = [], []
    for role, version, shift in (
        ("champion", CHAMPION_V, 0.0),
        ("challenger", CHALLENGER_V, effect),
    ):
        other = CHALLENGER_V if role == "champion" else CHAMPION_V
        for u in range(users):
            for k in range(per_user):
                i = f"{role}-{u}-{k}"
                p = rng.uniform(0.2, 0.8)
                served, shadow = (p, p + effect) if role == "champion" else (p + shift, p)
                failed = role == "challenger" and rng.random() < model_errors
                row = decision_row(
                    i, f"{role}-user-{u}", T0 + k, arm=f"canary={role}", version=version
                )
                if failed:
                    row |= {"source": "rules", "fallback_reason": "model_error"}
                    row |= {"model_version": None}
                row |= {"score": served, "shadow_score": None if failed else shadow}
                row |= {"shadow_version": None if failed else other}
                rows.append(row)
                abandoned = rng.random() < p + shift
                outcome = "abandoned" if abandoned else "step_completed"
                outcomes.append((i, outcome, T0 + k + 1))
    return rows, outcomes


def report_of(rows, outcomes, cfg: RolloutConfig | None = None):
    log = log_of(rows, outcomes)
    try:
        return compare(log.decisions(), log.outcomes(), cfg or rollout_cfg())
    finally:
        log.close()


def test_a_better_challenger_is_promoted() -> None:
    report = report_of(*canary_log(effect=-0.15))
    assert (report.champion_version, report.challenger_version) == (CHAMPION_V, CHALLENGER_V)
    assert report.recommendation == PROMOTE, report.reasons
    assert report.lift.value == pytest.approx(0.15, abs=0.05)
    assert report.lift.lo > 0.05
    champ, chall = report.arms["champion"], report.arms["challenger"]
    assert (champ.decisions, chall.decisions) == (800, 800)
    assert chall.success.lo > champ.success.hi  # clearly separated Wilson intervals
    assert report.agreement.pairs == 1600
    assert report.agreement.spearman > 0.95  # the two models rank alike (a shift)
    assert report.agreement.mean_abs_diff == pytest.approx(0.15, abs=1e-9)


def test_a_worse_challenger_is_rolled_back() -> None:
    report = report_of(*canary_log(effect=0.15, seed=1))
    assert report.recommendation == ROLLBACK
    assert report.lift.hi < 0
    assert any("lift" in r for r in report.reasons)


def test_model_errors_roll_back_even_with_better_outcomes() -> None:
    report = report_of(*canary_log(effect=-0.15, model_errors=0.1, seed=2))
    assert report.recommendation == ROLLBACK
    assert report.arms["challenger"].error_rate == pytest.approx(0.1, abs=0.03)
    assert report.arms["champion"].error_rate == 0.0
    assert any("error rate" in r for r in report.reasons)


def test_no_difference_or_too_little_data_holds() -> None:
    assert report_of(*canary_log(effect=0.0, seed=3)).recommendation == HOLD
    few = report_of(*canary_log(effect=-0.3, users=20, seed=4))
    assert few.recommendation == HOLD and "too few" in few.reasons[0]


def test_calibration_and_agreement_statistics() -> None:
    rng = np.random.default_rng(5)
    p = rng.uniform(0, 1, 20_000)
    y = (rng.random(p.size) < p).astype(float)
    calibrated, shifted = calibration(p, y, 10), calibration(np.clip(p + 0.2, 0, 1), y, 10)
    assert calibrated.ece < 0.02 < 0.1 < shifted.ece
    assert calibrated.brier < shifted.brier
    assert agreement(p, 1 - p).spearman == pytest.approx(-1.0)
    assert agreement(p, p**2).kendall == pytest.approx(1.0)
    assert agreement(p[:0], p[:0]).pairs == 0
    assert canary_role("exp=a,canary=challenger") == "challenger"
    assert canary_role("holdout") is None and canary_role(None) is None


def test_cli_reports_json_and_records_the_decision_in_mlflow(home: Layout) -> None:
    from mlflow import MlflowClient

    from core.registry import tracking_uri

    cfg = load_config(ServingConfig, layout=home)
    uri = tracking_uri(cfg.model, home)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model(cfg.model.registered_model)
    for _ in range(int(CHALLENGER_V)):  # versions 1 .. 4
        client.create_model_version(cfg.model.registered_model, source=str(home.models))
    rows, outcomes = canary_log(effect=-0.15)
    log = sqlite_log(home.serving / "decisions.db", synchronous="off", batch_max=256)
    for row in rows:
        log.submit_decision(row)
    for i, outcome, ts in outcomes:
        log.submit_outcome(i, outcome, ts)
    log.close()

    app = typer.Typer()
    rollout_cli.register(app)
    result = CliRunner().invoke(app, ["rollout", "compare", "--json"])
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    assert body["recommendation"] == PROMOTE
    assert body["challenger_version"] == CHALLENGER_V
    run = client.get_run(body["mlflow_run"])
    assert run.data.tags["rollout.recommendation"] == PROMOTE
    assert run.data.metrics["lift"] == pytest.approx(body["lift"]["value"])
    tags = client.get_model_version(cfg.model.registered_model, CHALLENGER_V).tags
    assert tags["rollout.recommendation"] == PROMOTE
    assert tags["rollout.run_id"] == body["mlflow_run"]

    table = CliRunner().invoke(app, ["rollout", "compare", "--no-mlflow"])
    assert table.exit_code == 0, table.output
    assert "recommendation: promote" in table.output
    assert "Spearman" in table.output


def test_cli_without_a_challenger_is_one_line(home: Layout) -> None:
    log = sqlite_log(home.serving / "decisions.db", synchronous="off", batch_max=8)
    log.append_decision(decision_row("d1", "u1", T0))
    log.close()
    app = typer.Typer()
    rollout_cli.register(app)
    result = CliRunner().invoke(app, ["rollout", "compare", "--no-mlflow"])
    assert result.exit_code == 1
    assert "no challenger in the decision log" in result.output
