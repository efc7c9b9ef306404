"""Champion lookup through the MLflow registry alias, fallbacks, and the hot swap on promotion."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
from serving_helpers import QUIET, tmp_layout

from bench.synthetic import make_bundle
from core.bundle import BundleError
from core.layout import Layout
from core.registry import (
    ChampionRef,
    RegistryUnavailable,
    champion_ref,
    choose_model,
    materialize,
    tracking_uri,
)
from serving.assemble import Configs, build_engine, refresh_model
from serving.caps import MemoryCapStore
from serving.decision_log import memory_log

MODEL = "intent-scorer"


def register_version(layout: Layout, tmp: Path, seed: int) -> str:
    """What the training export does: run -> bundle artifact -> registered version."""
    import mlflow
    from mlflow import MlflowClient

    uri = f"sqlite:///{layout.mlruns / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    if client.get_experiment_by_name("intent") is None:
        client.create_experiment("intent", artifact_location=str(layout.mlruns / "artifacts"))
    exp = client.get_experiment_by_name("intent")
    run = client.create_run(exp.experiment_id)
    try:
        client.get_registered_model(MODEL)
    except mlflow.exceptions.MlflowException:
        client.create_registered_model(MODEL)
    version = str(len(client.search_model_versions(f"name='{MODEL}'")) + 1)
    staging = tmp / f"export-{version}"
    make_bundle(staging, version=version, run_id=run.info.run_id, n_trees=5, rows=600, seed=seed)
    client.log_artifacts(run.info.run_id, str(staging), artifact_path="bundle")
    client.set_terminated(run.info.run_id)
    mv = client.create_model_version(
        MODEL, source=f"{run.info.artifact_uri}/bundle", run_id=run.info.run_id
    )
    assert str(mv.version) == version
    return version


def promote(layout: Layout, version: str) -> None:
    from mlflow import MlflowClient

    uri = f"sqlite:///{layout.mlruns / 'mlflow.db'}"
    MlflowClient(tracking_uri=uri, registry_uri=uri).set_registered_model_alias(
        MODEL, "champion", version
    )


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory):
    """A layout whose MLflow registry has versions 1 and 2, version 1 the champion."""
    root = tmp_path_factory.mktemp("registry")
    layout = tmp_layout(root, QUIET)
    v1 = register_version(layout, root, seed=1)
    v2 = register_version(layout, root, seed=2)
    promote(layout, v1)
    return layout, v1, v2


@pytest.mark.slow
def test_champion_is_downloaded_verified_and_swapped_on_promotion(registry) -> None:
    layout, v1, v2 = registry
    configs = Configs.load(layout)
    cfg = configs.serving
    assert not (layout.models / v1).exists()
    choice = choose_model(cfg.model, layout)
    assert choice.source == "registry" and choice.version == v1
    assert (layout.models / v1 / "model.onnx").exists()  # materialized from the run artifact

    engine = build_engine(
        layout, configs, caps=MemoryCapStore(configs.policy.caps), decision_log=memory_log()
    )
    assert engine.runtime.source == "registry" and engine.runtime.model_version == v1
    assert refresh_model(engine, cfg, layout) is False  # nothing new
    promote(layout, v2)
    try:
        assert refresh_model(engine, cfg, layout) is True
        assert engine.runtime.model_version == v2
        assert refresh_model(engine, cfg, layout) is False
    finally:
        promote(layout, v1)
        engine.close()


@pytest.mark.slow
def test_registry_outage_and_missing_models(registry, tmp_path: Path) -> None:
    layout, _v1, _ = registry
    cfg = Configs.load(layout).serving
    # keeps working from the newest local bundle when the registry cannot be read
    gone = cfg.model.model_copy(update={"tracking_uri": f"sqlite:///{tmp_path / 'none.db'}"})
    choose_model(cfg.model, layout)  # make sure models/<v1> exists
    choice = choose_model(gone, layout)
    assert choice.source == "bundle" and choice.version is not None
    assert "no tracking store" in choice.detail
    with pytest.raises(RegistryUnavailable):
        champion_ref(gone.tracking_uri, MODEL, "champion")
    # ... and in rules-only mode when there is no bundle either
    empty = Layout.under(tmp_path / "empty", configs=layout.config_dirs).ensure()
    choice = choose_model(gone, empty)
    assert choice.source == "rules" and choice.bundle is None
    # an unknown alias is "no champion", not an outage
    assert champion_ref(tracking_uri(cfg.model, layout), MODEL, "nobody") is None


@pytest.mark.slow
def test_a_local_folder_of_another_run_is_refused(registry, tmp_path: Path) -> None:
    layout, v1, _ = registry
    uri = tracking_uri(Configs.load(layout).serving.model, layout)
    models = tmp_path / "models"
    shutil.copytree(layout.models / v1, models / v1) if (layout.models / v1).exists() else None
    make_bundle(models / v1, version=v1, run_id="someone-else", n_trees=3, rows=300, overwrite=True)
    with pytest.raises(BundleError, match="is not the champion's run"):
        materialize(
            ChampionRef(v1, champion_ref(uri, MODEL, "champion").run_id, MODEL), uri, models
        )


@pytest.mark.slow
def test_sqlite_champion_agrees_with_the_mlflow_client(registry, tmp_path: Path) -> None:
    """The direct read of MLflow's tables answers what the client answers, before and after
    a promotion; a file without MLflow's tables is left to the client."""
    from mlflow import MlflowClient

    from core.registry import _NOT_READ, sqlite_champion

    layout, v1, v2 = registry
    db = layout.mlruns / "mlflow.db"
    client = MlflowClient(tracking_uri=f"sqlite:///{db}", registry_uri=f"sqlite:///{db}")

    def from_client() -> ChampionRef:
        mv = client.get_model_version_by_alias(MODEL, "champion")
        return ChampionRef(str(mv.version), mv.run_id, MODEL)

    assert sqlite_champion(db, MODEL, "champion") == from_client()
    assert from_client().version == v1
    promote(layout, v2)
    try:
        assert sqlite_champion(db, MODEL, "champion") == from_client()
        assert from_client().version == v2
    finally:
        promote(layout, v1)
    assert sqlite_champion(db, MODEL, "nobody") is None
    assert sqlite_champion(db, "no-such-model", "champion") is None
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE t (x)")
    assert sqlite_champion(other, MODEL, "champion") is _NOT_READ


@pytest.mark.slow
def test_server_start_up_imports_neither_mlflow_nor_dask(registry) -> None:
    """Choosing the champion on a sqlite registry and opening the online reader skip the
    MLflow client and Feast's dask offline store (about 1.5 s of CPU per worker start)."""
    import json
    import os
    import subprocess
    import sys

    layout, v1, _ = registry
    code = (
        "import json, sys\n"
        "from core.layout import Layout\n"
        "from serving.assemble import Configs, open_runtime\n"
        "layout = Layout.from_env()\n"
        "cfg = Configs.load(layout).serving\n"
        "features = cfg.features.model_copy(update={'online_store': 'feast'})\n"
        "rt = open_runtime(cfg.model_copy(update={'features': features}), layout)\n"
        "mods = {m: m in sys.modules for m in ('mlflow', 'dask')}\n"
        "print(json.dumps({'source': rt.source, 'version': rt.model_version, **mods}))\n"
    )
    env = {
        **os.environ,
        "INTENT_CONFIGS": str(layout.configs),
        "INTENT_MODELS_DIR": str(layout.models),
        "INTENT_MLRUNS_DIR": str(layout.mlruns),
        "INTENT_DATA_DIR": str(layout.data),
    }
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"source": "registry", "version": v1, "mlflow": False, "dask": False}
