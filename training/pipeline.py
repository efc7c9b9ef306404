"""`intent train` as one call: frame from Feast -> fit -> MLflow run, bundle, challenger.

Other areas (`intent quickstart`) call `train_from_store`; the CLI adds progress and output.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from core.heuristic import HeuristicConfig
from core.layout import Layout
from core.policy_config import PolicyConfig
from core.settings import load_config
from features.pipeline.readiness import check_trainable
from features.store.config import FeatureStoreConfig
from training.config import TrainingConfig
from training.fit import fit_model
from training.frame import load_training_frame
from training.run import TrainOutcome, record_training


@dataclass(frozen=True)
class TrainingConfigs:
    """Every config a training run reads."""

    training: TrainingConfig
    features: FeatureStoreConfig
    heuristic: HeuristicConfig

    @classmethod
    def load(cls, layout: Layout) -> TrainingConfigs:
        return cls(
            training=load_config(TrainingConfig, layout=layout),
            features=load_config(FeatureStoreConfig, layout=layout),
            heuristic=load_config(PolicyConfig, layout=layout).heuristic,
        )


def train_from_store(
    layout: Layout,
    configs: TrainingConfigs,
    *,
    run_name: str | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> TrainOutcome:
    """Train on the layout's decision points through its applied FeatureService, log the
    run, export and verify the bundle, register it as challenger."""
    stage = on_stage or (lambda _s: None)
    check_trainable(layout, configs.training.split)  # unusable data: cause and fix, not a symptom
    stage("reading the point-in-time frame (Feast)")
    data = load_training_frame(
        layout, configs.features, exposure_weights=configs.training.feedback.exposure_weights
    )
    stage(f"training LightGBM on {len(data.frame):,} decision points")
    fitted = fit_model(data.frame, data.service_features, configs.training, configs.heuristic)
    stage("logging to MLflow, exporting ONNX, checking parity")
    name = run_name or f"train-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    return record_training(layout, configs.training, fitted, data, run_name=name)
