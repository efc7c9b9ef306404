"""Serving fixtures: a tiny real LightGBM -> ONNX bundle, configs, engines on tmp layouts."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from serving_helpers import REPO_CONFIGS

from core.policy_config import PolicyConfig
from core.settings import load_config
from features.config import SignalsConfig
from serving.config import ServingConfig


@pytest.fixture(scope="session")
def policy_cfg() -> PolicyConfig:
    return load_config(PolicyConfig, REPO_CONFIGS / "policy.yaml")


@pytest.fixture(scope="session")
def serving_cfg() -> ServingConfig:
    return load_config(ServingConfig, REPO_CONFIGS / "serving.yaml")


@pytest.fixture(scope="session")
def signals_cfg() -> SignalsConfig:
    return load_config(SignalsConfig, REPO_CONFIGS / "signals.yaml")


@pytest.fixture(scope="session")
def bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small bundle: LightGBM (30 trees) converted with onnxmltools, isotonic calibration."""
    from bench.synthetic import make_bundle

    directory = tmp_path_factory.mktemp("models") / "1"
    make_bundle(directory, version="1", n_trees=30, rows=2000, seed=0)
    return directory


@pytest.fixture(scope="session")
def bundle(bundle_dir: Path):
    from core.bundle import load_bundle

    return load_bundle(bundle_dir)


@pytest.fixture
def redis_prefix(redis_url):
    """A key prefix of this test's own on the shared Redis; its keys are deleted after."""
    import redis

    prefix = f"test-{uuid.uuid4().hex}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(f"{prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()
