"""The challenger through the real MLflow registry and the served app: loaded by its alias
at start-up, labelled as the canary arm, swapped and removed by /reload."""

from __future__ import annotations

from pathlib import Path

import pytest
from serving_helpers import MINIMAL, QUIET, merge, start_bare, tmp_layout
from test_serving_registry import MODEL, promote, register_version

from core.layout import Layout
from serving.decision_log import sqlite_log
from serving.experiments import bucket

SALT = "canary-registry-test"
ROLLOUT = {
    "serving.yaml": {
        "rollout.shadow.enabled": True,
        "rollout.canary.enabled": True,
        "rollout.canary.share": 0.5,
        "rollout.canary.salt": SALT,
        # no online store in tests: every decision falls back, which is not the model's fault
        "rollout.canary.guard.ignore": ["cold_start", "feature_store_error"],
    }
}


def set_alias(layout: Layout, version: str | None, alias: str = "challenger") -> None:
    from mlflow import MlflowClient

    uri = f"sqlite:///{layout.mlruns / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    if version is None:
        client.delete_registered_model_alias(MODEL, alias)
    else:
        client.set_registered_model_alias(MODEL, alias, version)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory):
    """Versions 1, 2, 3: 1 the champion, 2 the challenger."""
    root = tmp_path_factory.mktemp("rollout-registry")
    layout = tmp_layout(root, merge(QUIET, ROLLOUT))
    versions = [register_version(layout, root, seed=s) for s in (1, 2, 3)]
    promote(layout, versions[0])
    set_alias(layout, versions[1])
    return layout, versions


def score(client, user_id: str) -> dict:
    response = client.post("/score", json=MINIMAL | {"user_id": user_id})
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.slow
def test_the_served_app_follows_the_challenger_alias(registry, monkeypatch) -> None:
    layout, (_, v2, v3) = registry
    users = [f"canary-user-{i}" for i in range(60)]
    with start_bare(monkeypatch, layout) as client:
        answers = [score(client, u) for u in users]
        arms = {a["arm"].rsplit("canary=", 1)[-1] for a in answers if a["arm"] != "holdout"}
        assert arms == {"champion", "challenger"}
        for a, u in zip(answers, users, strict=True):
            if a["arm"] != "holdout":
                canary = bucket(SALT, u) < 0.5
                assert a["arm"].endswith("canary=challenger" if canary else "canary=champion")

        set_alias(layout, v3)
        assert client.post("/reload").status_code == 200
        set_alias(layout, None)  # the alias gone: no challenger, no canary labels
        assert client.post("/reload").status_code == 200
        after = [score(client, u) for u in users]
        assert not any("canary=" in (a["arm"] or "") for a in after)
    log = sqlite_log(layout.serving / "decisions.db", synchronous="off", batch_max=1)
    try:
        frame = log.decisions()
    finally:
        log.close()
    assert frame["arm"].fillna("").str.contains("canary=challenger").sum() > 0
    set_alias(layout, v2)


@pytest.mark.slow  # the registry fixture trains and registers three bundles (~20 s)
def test_attach_loads_the_challenger_and_refresh_follows_the_alias(registry) -> None:
    from serving.assemble import Configs, build_engine
    from serving.caps import MemoryCapStore
    from serving.decision_log import memory_log
    from serving.rollout import attach_rollout, refresh_challenger

    layout, (v1, v2, v3) = registry
    configs = Configs.load(layout)
    engine = build_engine(
        layout, configs, caps=MemoryCapStore(configs.policy.caps), decision_log=memory_log()
    )
    cfg = configs.serving
    try:
        rollout = attach_rollout(engine, cfg, layout)
        assert rollout is not None and engine.rollout is rollout
        assert engine.runtime.model_version == v1
        assert rollout.challenger.model_version == v2 and rollout.challenger.role == "challenger"
        assert rollout.share == 0.5
        assert refresh_challenger(rollout, cfg, layout) is False  # nothing new
        set_alias(layout, v3)
        assert refresh_challenger(rollout, cfg, layout) is True
        assert rollout.challenger.model_version == v3
        set_alias(layout, v1)  # the challenger is the champion: nothing to compare
        assert refresh_challenger(rollout, cfg, layout) is True
        assert rollout.challenger is None and rollout.share == 0.0
    finally:
        set_alias(layout, v2)
        engine.close()


def test_rollout_is_off_by_default(tmp_path: Path) -> None:
    from serving.assemble import Configs, build_engine
    from serving.caps import MemoryCapStore
    from serving.decision_log import memory_log
    from serving.rollout import attach_rollout

    layout = tmp_layout(tmp_path, QUIET)
    configs = Configs.load(layout)
    assert not configs.serving.rollout.shadow.enabled
    assert not configs.serving.rollout.canary.enabled
    engine = build_engine(
        layout, configs, caps=MemoryCapStore(configs.policy.caps), decision_log=memory_log()
    )
    try:
        assert attach_rollout(engine, configs.serving, layout) is None
        assert engine.rollout is None
    finally:
        engine.close()
