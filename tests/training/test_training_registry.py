"""MLflow runs, the registry and aliases, promotion both ways, on a per-module sqlite store.

One scenario runs once (module scope) and each test checks one part of it:
v1 trained -> promoted as the first model; v2 (a deliberately weak model) -> rejected, then
forced; v3 (the good model again) -> promoted by the gate.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow.models import get_model_info
from training_pipeline import Pipeline, with_store, with_training

from core.bundle import load_bundle, read_manifest
from core.layout import Layout
from core.registry import ModelSourceConfig, choose_model
from training.fit import FittedModel, fit_model
from training.promote import PromotionResult, promote
from training.run import TrainOutcome, record_training
from training.tracking import TrackingError, aliases, session, tracking_uri

pytestmark = pytest.mark.slow
MODEL = "intent-scorer"


@dataclass(frozen=True)
class Scenario:
    layout: Layout
    pipeline: Pipeline
    v1: TrainOutcome
    first: PromotionResult
    v2: TrainOutcome
    rejected: PromotionResult
    aliases_after_rejection: dict[str, str]
    forced: PromotionResult
    v3: TrainOutcome
    gated: PromotionResult


def weak_model(pipeline: Pipeline) -> FittedModel:
    """Only three weak signals and no context: clearly worse than the real model (and than
    the step prior: its no_signal guard is lifted, so `--force` can still be exercised)."""
    keep = {"pause_s", "cta_fails", "help_opens"}
    configs = with_training(
        pipeline.configs,
        features={
            "context": [],
            "exclude": [f for f in pipeline.data.service_features if f not in keep],
        },
        guards={"min_auc_margin": -1.0, "min_trees": 1},
    )
    return fit_model(
        pipeline.data.frame, pipeline.data.service_features, configs.training, configs.heuristic
    )


@pytest.fixture(scope="module")
def scenario(pipeline: Pipeline, fitted: FittedModel, tmp_path_factory) -> Scenario:
    layout = with_store(pipeline.layout, tmp_path_factory.mktemp("registry"))
    cfg = pipeline.configs.training
    data = pipeline.data
    v1 = record_training(layout, cfg, fitted, data, run_name="first")
    first = promote(layout, cfg)
    v2 = record_training(layout, cfg, weak_model(pipeline), data, run_name="weak")
    rejected = promote(layout, cfg)
    with session(tracking_uri(layout, cfg.tracking)) as client:
        after_rejection = aliases(client, MODEL)
    forced = promote(layout, cfg, force=True)
    v3 = record_training(layout, cfg, fitted, data, run_name="good-again")
    gated = promote(layout, cfg)
    return Scenario(layout, pipeline, v1, first, v2, rejected, after_rejection, forced, v3, gated)


def client_of(s: Scenario):
    return session(tracking_uri(s.layout, s.pipeline.configs.training.tracking))


def test_each_training_registers_the_next_version_as_challenger(scenario) -> None:
    assert (scenario.v1.version, scenario.v2.version, scenario.v3.version) == ("1", "2", "3")
    assert scenario.aliases_after_rejection == {"champion": "1", "challenger": "2"}


def test_each_published_bundle_carries_its_training_profile(scenario) -> None:
    """The drift reference (core.profile) travels with the bundle, under its checksum."""
    from core.bundle import read_manifest
    from core.profile import load_profile

    for outcome in (scenario.v1, scenario.v2):
        manifest = read_manifest(outcome.bundle_dir)
        profile = load_profile(outcome.bundle_dir, manifest.reference_profile_sha256)
        assert profile is not None
        assert [c.name for c in profile.features] == manifest.feature_names


def test_the_first_model_becomes_champion(scenario) -> None:
    p = scenario.first
    assert p.promoted and not p.forced and p.champion_before is None
    assert p.champion_after == "1" and p.decision is None
    assert "first model becomes champion" in p.note


def test_a_worse_challenger_is_rejected_and_the_champion_stays(scenario) -> None:
    p = scenario.rejected
    assert not p.promoted and p.champion_after == "1"
    assert p.decision is not None and not p.decision.passed
    assert p.decision.auc_delta < -scenario.pipeline.configs.training.promotion.auc_tolerance
    assert any("below the champion" in r for r in p.decision.reasons)
    assert any("strongest baseline" in r or "not above" in r for r in p.reasons)
    with client_of(scenario) as client:
        run = client.get_run(p.run_id)
    assert run.data.tags["intent.decision"] == "rejected"
    assert run.data.tags["intent.candidate_version"] == "2"
    assert run.data.metrics["delta_test_roc_auc"] == pytest.approx(p.decision.auc_delta)


def test_force_promotes_and_is_recorded_as_forced(scenario) -> None:
    p = scenario.forced
    assert p.promoted and p.forced and p.champion_before == "1" and p.champion_after == "2"
    with client_of(scenario) as client:
        run = client.get_run(p.run_id)
    assert run.data.tags["intent.forced"] == "true"
    assert run.data.tags["intent.force_flag"] == "true"
    assert run.data.params["force"] == "True"


def test_a_better_challenger_passes_the_gate(scenario) -> None:
    p = scenario.gated
    assert p.promoted and not p.forced and p.champion_before == "2" and p.champion_after == "3"
    assert p.decision.passed and p.decision.auc_delta > 0
    with client_of(scenario) as client:
        assert aliases(client, MODEL) == {"champion": "3"}  # the decided challenger is cleared
        with pytest.raises(TrackingError, match="no intent-scorer@challenger"):
            promote(scenario.layout, scenario.pipeline.configs.training)


def test_promoting_the_champion_again_is_a_no_op(scenario) -> None:
    again = promote(scenario.layout, scenario.pipeline.configs.training, version="3")
    assert not again.promoted and again.run_id is None and "already champion" in again.note


def test_the_run_logs_what_an_ml_engineer_looks_for(scenario) -> None:
    with client_of(scenario) as client:
        run = client.get_run(scenario.v1.run_id)
        files = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
        evaluation = {a.path for a in client.list_artifacts(run.info.run_id, "evaluation")}
        version = client.get_model_version(MODEL, "1")
        logged = client.get_logged_model(version.source.removeprefix("models:/"))
        info = get_model_info(version.source)  # fluent: reads the session's tracking URI
    m, p = run.data.metrics, run.data.params
    for key in (
        "test_roc_auc",
        "rules_test_roc_auc",
        "oracle_test_roc_auc",
        "test_ece",
        "test_lift_top_decile",
        "test_auc_ratio_oracle",
        "parity_max_abs_diff",
    ):
        assert key in m
    assert m["parity_max_abs_diff"] <= 1e-5
    assert p["calibration"] == "platt" and p["feature_service"] == "intent_model_v1"
    assert {
        "plots/roc.png",
        "plots/precision_recall.png",
        "plots/calibration.png",
        "plots/feature_importance.png",
        "plots/contributions.png",
    } <= files
    assert "evaluation/test_frame.parquet" in evaluation
    contexts = sorted(i.tags[0].value for i in run.inputs.dataset_inputs)
    assert contexts == ["test", "train", "validation"]
    assert version.run_id == run.info.run_id and version.source.startswith("models:/")
    assert logged.name == "model" and set(info.flavors) == {"python_function"}  # the bundle
    assert info.signature is not None and info.saved_input_example_info is not None
    assert [c.name for c in info.signature.inputs.inputs] == list(scenario.v1.fitted.schema.names)
    assert run.data.tags["intent.behaviour"] == "passed"


def test_the_bundle_follows_the_serving_registry_contract(scenario) -> None:
    layout = scenario.layout
    for outcome in (scenario.v1, scenario.v2, scenario.v3):
        manifest = read_manifest(layout.models / outcome.version)
        assert manifest.model_version == outcome.version and manifest.run_id == outcome.run_id
    assert not [p for p in layout.models.iterdir() if p.name.startswith(".staging")]
    cfg = ModelSourceConfig(
        registered_model=MODEL, alias="champion", tracking_uri=None, reload_interval_s=0
    )
    choice = choose_model(cfg, layout)
    assert choice.source == "registry" and choice.version == "3"
    # a fresh replica without models/ downloads the registered model and verifies its bundle
    replica = Layout.under(
        Path(layout.root), models=layout.root / "replica-models", mlruns=layout.mlruns
    )
    fresh = choose_model(cfg, replica)
    assert fresh.source == "registry" and fresh.version == "3"
    assert (
        load_bundle(replica.models / "3").manifest.onnx_sha256
        == read_manifest(layout.models / "3").onnx_sha256
    )


def test_the_comparison_run_records_segments(scenario) -> None:
    with client_of(scenario) as client:
        run = client.get_run(scenario.gated.run_id)
        local = client.download_artifacts(run.info.run_id, "comparison.json")
    record = json.loads(Path(local).read_text())
    assert record["passed"] is True and record["segments"]
    assert any(k.startswith("delta_test_roc_auc.") for k in run.data.metrics)


def test_failed_behavioural_checks_block_an_otherwise_passing_challenger(scenario) -> None:
    from training.promote import _test_window, _verdict

    cfg = scenario.pipeline.configs.training
    with client_of(scenario):
        frame = _test_window(tracking_uri(scenario.layout, cfg.tracking), scenario.v3.run_id)
    good, champion = (load_bundle(scenario.layout.models / v) for v in ("3", "1"))
    assert _verdict(frame, good, champion, "passed", cfg).passed
    blocked = _verdict(frame, good, champion, "failed: longer_pause", cfg)
    assert not blocked.passed
    assert blocked.reasons == ["behavioural checks of version 3: failed: longer_pause"]
    first = _verdict(frame, good, None, "failed: longer_pause", cfg)  # even as the first model
    assert not first.passed and first.decision is None
