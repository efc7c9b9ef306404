"""The registered model is the served model: `models:/intent-scorer@champion` loads as a pyfunc
that carries the serving bundle and scores exactly as the server does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from training_pipeline import Pipeline, with_store

from core.bundle import MANIFEST_FILE, load_bundle, read_manifest
from core.layout import Layout
from core.registry import ModelSourceConfig, choose_model
from training.fit import FittedModel
from training.promote import promote
from training.run import record_training
from training.tracking import session, tracking_uri

pytestmark = pytest.mark.slow
MODEL = "intent-scorer"
SERVED_TOLERANCE = 1e-6  # the bar: pyfunc score == served score
PARITY_TOLERANCE = 1e-5  # ONNX float32 graph vs LightGBM (the export's own parity bar)


@pytest.fixture(scope="module")
def champion(pipeline: Pipeline, fitted: FittedModel, tmp_path_factory) -> Layout:
    layout = with_store(pipeline.layout, tmp_path_factory.mktemp("pyfunc"))
    cfg = pipeline.configs.training
    record_training(layout, cfg, fitted, pipeline.data, run_name="pyfunc")
    assert promote(layout, cfg).promoted
    return layout


def served_scores(layout: Layout, frame) -> np.ndarray:
    """What the server computes, on a fresh replica that only has the registry: the champion
    downloaded from the registered model, one request row at a time (`DecisionEngine._model`)."""
    replica = Layout.under(Path(layout.root), models=layout.root / "replica", mlruns=layout.mlruns)
    cfg = ModelSourceConfig(
        registered_model=MODEL, alias="champion", tracking_uri=None, reload_interval_s=0
    )
    choice = choose_model(cfg, replica)
    assert choice.source == "registry", choice.detail
    bundle = choice.bundle
    rows = frame.astype(object).where(frame.notna(), None).to_dict(orient="records")
    return np.array([float(bundle.predict(bundle.vectorize([row]))[0]) for row in rows])


def test_the_champion_pyfunc_scores_what_the_server_serves(champion, pipeline, fitted) -> None:
    import mlflow

    test = fitted.frames["test"][list(fitted.schema.names)].reset_index(drop=True)
    with session(tracking_uri(champion, pipeline.configs.training.tracking)):
        model = mlflow.pyfunc.load_model(f"models:/{MODEL}@champion")
        got = np.asarray(model.predict(test), dtype=np.float64)
    served = served_scores(champion, test)
    assert got.shape == (len(test),)
    assert np.max(np.abs(got - served)) <= SERVED_TOLERANCE
    # ... and both are LightGBM + calibration, not the raw booster
    assert np.max(np.abs(got - fitted.score(fitted.frames["test"]))) <= PARITY_TOLERANCE
    raw = fitted.score_raw(fitted.frames["test"])
    assert np.max(np.abs(got - raw)) > 10 * PARITY_TOLERANCE


def test_the_registered_version_carries_the_bundle_and_its_manifest(champion, pipeline) -> None:
    cfg = pipeline.configs.training
    with session(tracking_uri(champion, cfg.tracking)) as client:
        version = client.get_model_version_by_alias(MODEL, "champion")
        import mlflow

        local = Path(mlflow.artifacts.download_artifacts(f"models:/{MODEL}/{version.version}"))
        info = mlflow.models.get_model_info(f"models:/{MODEL}/{version.version}")
    manifests = list(local.rglob(MANIFEST_FILE))
    assert len(manifests) == 1
    manifest = read_manifest(manifests[0].parent)
    assert manifest.model_version == str(version.version) and manifest.run_id == version.run_id
    assert version.tags["onnx_sha256"] == manifest.onnx_sha256
    assert load_bundle(manifests[0].parent).manifest == read_manifest(
        champion.models / str(version.version)
    )
    assert set(info.flavors) == {"python_function"}  # no pickled estimator in the artefact
    assert [c.name for c in info.signature.inputs.inputs] == manifest.feature_names
    assert info.saved_input_example_info is not None


def test_a_failed_publish_leaves_no_registered_version(pipeline, fitted, tmp_path) -> None:
    from training.mlflow_model import register_served_model
    from training.tracking import experiment_id

    layout = with_store(pipeline.layout, tmp_path)
    cfg = pipeline.configs.training
    import mlflow

    def publish(version: str) -> Path:
        raise RuntimeError(f"disk full while writing version {version}")

    with session(tracking_uri(layout, cfg.tracking)) as client:
        exp = experiment_id(client, cfg.registry.experiment, layout)
        with mlflow.start_run(experiment_id=exp) as run, pytest.raises(RuntimeError, match="disk"):
            register_served_model(
                client,
                MODEL,
                run_id=run.info.run_id,
                example=fitted.frames["test"][list(fitted.schema.names)].head(2),
                publish=publish,
                tags={},
                description="test",
            )
        assert client.search_model_versions(f"name='{MODEL}'") == []
