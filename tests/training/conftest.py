"""Fixtures of the training tests: one small simulated pipeline and one fitted model, shared
by the whole session (read-only); every test that writes gets its own MLflow store."""

from __future__ import annotations

import pytest
from training_pipeline import Pipeline, simulated_layout, with_store

from core.layout import Layout
from training.fit import FittedModel, fit_model
from training.frame import load_training_frame
from training.pipeline import TrainingConfigs


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Pipeline:
    """400 simulated users over 10 days -> validated events -> features -> Feast -> frame."""
    layout = simulated_layout(tmp_path_factory.mktemp("pipeline"))
    configs = TrainingConfigs.load(layout)
    return Pipeline(layout, configs, load_training_frame(layout, configs.features))


@pytest.fixture(scope="session")
def fitted(pipeline: Pipeline) -> FittedModel:
    """The model trained with the repo's configs on the shared frame."""
    c = pipeline.configs
    return fit_model(pipeline.data.frame, pipeline.data.service_features, c.training, c.heuristic)


@pytest.fixture
def store_layout(pipeline: Pipeline, tmp_path) -> Layout:
    """The shared data with a fresh MLflow store and models folder of this test."""
    return with_store(pipeline.layout, tmp_path)
