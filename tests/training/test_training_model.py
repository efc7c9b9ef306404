"""The trained model on the shared simulated pipeline: baselines, metric names, determinism
and behavioural checks (directional / invariance on real test rows)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.behaviour import behaviour_checks, directional, invariance
from training.fit import fit_model
from training.frame import NEVER_FEATURES


def test_model_beats_the_rules_and_approaches_the_oracle(fitted) -> None:
    m = fitted.evaluation.metrics
    assert m["test_roc_auc"] > m["rules_test_roc_auc"] + 0.1
    assert m["test_roc_auc"] <= m["oracle_test_roc_auc"] + 0.05
    assert m["test_auc_ratio_oracle"] == pytest.approx(m["test_roc_auc"] / m["oracle_test_roc_auc"])
    assert fitted.evaluation.oracle_note == "used"


def test_metric_names_line_up_across_scorers(fitted) -> None:
    m = fitted.evaluation.metrics
    base = ["roc_auc", "pr_auc", "log_loss", "brier", "ece", "lift_top_decile", "recall_top_decile"]
    for prefix in ("", "rules_", "oracle_", "raw_"):
        for name in base:
            assert f"{prefix}test_{name}" in m
    segments = [k for k in m if k.startswith("test_roc_auc.")]
    assert any(k.startswith("test_roc_auc.step.") for k in segments)
    assert any(k.startswith("test_roc_auc.returning.") for k in segments)
    for key in segments:  # every model segment has its baseline twins
        assert f"rules_{key}" in m and f"oracle_{key}" in m


def test_calibrated_scores_match_the_base_rate(fitted) -> None:
    ev = fitted.evaluation
    assert abs(ev.scores["model"].mean() - ev.labels.mean()) < 0.08
    assert ev.metrics["test_ece"] < 0.12


def test_no_id_timestamp_label_or_oracle_among_the_features(fitted, pipeline) -> None:
    assert not NEVER_FEATURES & set(fitted.schema.names)
    context = pipeline.configs.training.features.context
    assert set(context) <= set(fitted.schema.encodings)


def test_training_is_deterministic_for_a_seed(pipeline, fitted) -> None:
    c = pipeline.configs
    again = fit_model(pipeline.data.frame, pipeline.data.service_features, c.training, c.heuristic)
    assert again.booster.model_to_string() == fitted.booster.model_to_string()
    test = fitted.frames["test"]
    np.testing.assert_array_equal(again.score(test), fitted.score(test))


def test_more_failed_cta_clicks_do_not_lower_the_mean_score(fitted, pipeline) -> None:
    sample = fitted.frames["test"]
    check = directional(fitted.score, sample, "cta_fails", 2, "more_cta_fails")
    assert check.passed, check
    assert check.mean_after >= check.mean_before


def test_a_longer_pause_does_not_lower_the_mean_score(fitted) -> None:
    sample = fitted.frames["test"]
    for step in (5.0, 20.0, 60.0):
        check = directional(fitted.score, sample, "pause_s", step, "longer_pause")
        assert check.passed, check


@pytest.mark.parametrize("column", ["user_id", "session_id", "decision_key", "oracle_p"])
def test_ids_and_the_oracle_do_not_change_any_score(fitted, column) -> None:
    check = invariance(fitted.score, fitted.frames["test"], column, f"ignores_{column}")
    assert check.passed and check.max_abs_change == 0.0


def test_the_checks_catch_a_scorer_that_breaks_them(fitted) -> None:
    """Negative control: a scorer that reads the user id and falls with the pause fails."""
    sample = fitted.frames["test"].head(50)

    def leaky(frame: pd.DataFrame) -> np.ndarray:
        ids = frame["user_id"].astype(str).map(hash).to_numpy() % 7 / 100
        return 0.5 - np.nan_to_num(frame["pause_s"].to_numpy()) / 1000 + ids

    assert not invariance(leaky, sample, "user_id", "ignores_user_id").passed
    assert not directional(leaky, sample, "pause_s", 20, "longer_pause").passed


def test_fit_records_every_standard_check(fitted, pipeline) -> None:
    names = {c.name for c in fitted.behaviour}
    assert {"more_cta_fails", "longer_pause", "ignores_user_id", "ignores_oracle_p"} <= names
    assert all(c.passed for c in fitted.behaviour), [c for c in fitted.behaviour if not c.passed]
    again = behaviour_checks(
        fitted.score, fitted.frames["test"], pipeline.configs.training.evaluation
    )
    assert [(c.name, c.mean_after) for c in again] == [
        (c.name, c.mean_after) for c in fitted.behaviour
    ]


def test_exposure_row_weights_shape_the_model(pipeline, fitted) -> None:
    c = pipeline.configs
    frame = pipeline.data.frame.copy()
    # weight identity-verification rows down to almost nothing: a model that uses the
    # weights must change; one that ignores them would equal the unweighted fit
    frame["row_weight"] = np.where(frame["step"] == "identity_verification", 0.01, 1.0)
    weighted = fit_model(frame, pipeline.data.service_features, c.training, c.heuristic)
    assert "row_weight" not in weighted.schema.names
    assert weighted.booster.model_to_string() != fitted.booster.model_to_string()
