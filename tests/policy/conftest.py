"""Fixtures of the policy-learning tests: a small real model bundle for simulated runs."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small real bundle (bench.synthetic): LightGBM on request signals, ONNX."""
    from bench.synthetic import make_bundle

    directory = tmp_path_factory.mktemp("models") / "1"
    make_bundle(directory, version="1", n_trees=20, rows=1500, seed=0)
    return directory
