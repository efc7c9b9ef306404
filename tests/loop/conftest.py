"""Fixtures of the loop tests: a small real model bundle (LightGBM -> ONNX), configs."""

from __future__ import annotations

from pathlib import Path

import pytest
from loop_helpers import REPO_CONFIGS, loop_config

from core.layout import Layout
from loop.config import LoopConfig


@pytest.fixture(scope="session")
def loop_cfg() -> LoopConfig:
    return loop_config()


@pytest.fixture(scope="session")
def bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small real bundle (bench.synthetic): LightGBM on request signals, ONNX, isotonic."""
    from bench.synthetic import make_bundle

    directory = tmp_path_factory.mktemp("models") / "1"
    make_bundle(directory, version="1", n_trees=20, rows=1500, seed=0)
    return directory


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Layout:
    monkeypatch.setenv("INTENT_HOME", str(tmp_path))
    monkeypatch.setenv("INTENT_CONFIGS", str(REPO_CONFIGS))
    for name in ("INTENT_DATA_DIR", "INTENT_MODELS_DIR", "INTENT_MLRUNS_DIR"):
        monkeypatch.delenv(name, raising=False)
    return Layout.from_env().ensure()
