"""`bentoml build` -> `bentoml serve <bento>`: the Bento serves the champion it pinned at
build time, without the registry, from the online store, writing state outside the Bento.
`intent bento build` pins the same model the same way."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
import yaml
from serving_helpers import REPO_ROOT

from bench.serving import free_port, stop_server, wait_ready
from core.layout import BENTO_CHAMPION_ALIAS

pytestmark = pytest.mark.slow
REPO_CONFIGS = REPO_ROOT / "configs"
# Building resolves ~200 pinned packages (uv, warm cache) and starting imports Feast, MLflow
# and ONNX Runtime; both are generous on a shared 2-core machine.
BUILD_TIMEOUT_S = float(os.environ.get("INTENT_TEST_BENTO_BUILD_TIMEOUT_S", 1200))
START_TIMEOUT_S = float(os.environ.get("INTENT_TEST_BENTO_START_TIMEOUT_S", 300))
REQUEST_TIMEOUT_S = 60


def call(port: int, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT_S)
    payload = json.dumps(body).encode() if body is not None else None
    conn.request(method, path, body=payload, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, json.loads(data)


@pytest.fixture(scope="module")
def champion_home(tmp_path_factory: pytest.TempPathFactory):
    """A simulated world with materialized Feast features and a promoted champion."""
    sys.path.insert(0, str(REPO_ROOT / "tests" / "training"))
    try:
        from training_pipeline import simulated_layout
    finally:
        sys.path.pop(0)
    from core.settings import load_config
    from features.store.config import FeatureStoreConfig
    from features.store.repo import materialize
    from training.fit import fit_model
    from training.frame import load_training_frame
    from training.pipeline import TrainingConfigs
    from training.promote import promote
    from training.run import record_training

    layout = simulated_layout(tmp_path_factory.mktemp("bento-home"))
    materialize(layout, load_config(FeatureStoreConfig, layout=layout))
    configs = TrainingConfigs.load(layout)
    data = load_training_frame(layout, configs.features)
    fitted = fit_model(data.frame, data.service_features, configs.training, configs.heuristic)
    outcome = record_training(layout, configs.training, fitted, data, run_name="bento")
    assert promote(layout, configs.training).promoted
    return layout, outcome


def known_session(layout) -> dict:
    """A decision of a session the online store holds, at a time its rows are fresh."""
    snaps = pd.read_parquet(layout.features / "session_snapshots.parquet")
    points = pd.read_parquet(layout.features / "decision_points.parquet")
    last = snaps.groupby("session_id")["event_timestamp"].max()
    row = points[points["session_id"].isin(last.index)].iloc[-1]
    ts = pd.Timestamp(last[row["session_id"]]) + timedelta(minutes=1)
    return {
        "user_id": row["user_id"],
        "session_id": row["session_id"],
        "step": row["step"],
        "moment": row["moment"],
        "ts": ts.isoformat(),
        "signals": {"pause_s": 14},
    }


def build(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        command,
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
        check=False,
    )


def bento_info(env: dict[str, str], tag: str) -> dict:
    name, version = tag.split(":")
    bento_file = Path(env["BENTOML_HOME"]) / "bentos" / name / version / "bento.yaml"
    return yaml.safe_load(bento_file.read_text())


def pinned_models(info: dict) -> list[dict]:
    return [m for s in info["services"] for m in s["models"] if m.get("alias")]


def test_the_bento_serves_the_pinned_champion_from_the_online_store(champion_home, tmp_path):
    layout, outcome = champion_home
    env = {k: v for k, v in os.environ.items() if not k.startswith("INTENT_")}
    env |= {"BENTOML_HOME": str(tmp_path / "bentoml"), "BENTOML_DO_NOT_TRACK": "true"}
    build_env = env | {"INTENT_HOME": str(layout.root), "INTENT_CONFIGS": str(REPO_CONFIGS)}
    bin_dir = Path(sys.executable).parent
    # the plain BentoML command, as a user types it in the checkout
    built = build([str(bin_dir / "bentoml"), "build", "--output", "tag"], build_env)
    assert built.returncode == 0, built.stdout + built.stderr
    tag = built.stdout.strip().splitlines()[-1].removeprefix("__tag__:")
    pinned = pinned_models(bento_info(env, tag))
    assert [m["alias"] for m in pinned] == [BENTO_CHAMPION_ALIAS], pinned
    assert pinned[0]["tag"].startswith(f"intent-scorer:v{outcome.version}-"), pinned
    # `intent bento build` pins the very same model
    ours = build([str(bin_dir / "intent"), "bento", "build"], build_env)
    assert ours.returncode == 0, ours.stdout + ours.stderr
    assert f"champion v{outcome.version}" in ours.stdout
    assert pinned_models(bento_info(env, ours.stdout.split()[1])) == pinned

    # the Bento needs no registry and no local bundles: take both away
    shutil.move(layout.mlruns, tmp_path / "mlruns-away")
    shutil.move(layout.models, tmp_path / "models-away")
    serve_env = env | {"INTENT_HOME": str(layout.root)}  # runtime state: the prepared data/
    port = free_port()
    log = open(tmp_path / "server.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "bentoml", "serve", tag, "--port", str(port)],
        cwd=tmp_path,
        env=serve_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        ready = wait_ready(port, START_TIMEOUT_S, proc)
        assert ready["model_source"] == "registry" and not ready["degraded"], ready
        status, info = call(port, "GET", "/model")
        assert status == 200
        assert info["model_version"] == outcome.version and info["run_id"] == outcome.run_id
        assert "pinned in the Bento" in info["detail"]
        status, known = call(port, "POST", "/score", known_session(layout))
        assert status == 200, known
        assert known["source"] == "model" and known["fallback_reason"] is None, known
        assert known["model_version"] == outcome.version
        unknown = known_session(layout) | {"user_id": "u-nobody", "session_id": "s-nobody"}
        status, cold = call(port, "POST", "/score", unknown)
        assert status == 200 and cold["fallback_reason"] == "cold_start", cold
    finally:
        stop_server(proc)
        log.close()
    bento_dir = Path(env["BENTOML_HOME"]) / "bentos"
    assert not list(bento_dir.rglob("*.db")) and not list(bento_dir.rglob("data"))
    assert list((layout.data / "serving").iterdir())  # caps / sessions / decision log here
