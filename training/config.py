"""Config model of the training package (`configs/training.yaml`)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from core.settings import ConfigFile, StrictModel

# The cohort segment computed from the frame (a user with a stored user_stats row).
RETURNING = "returning"
_SEGMENT_COLUMNS = frozenset({"step", "moment", "device", "channel", RETURNING})


class TrackingBackend(StrEnum):
    SQLITE = "sqlite"
    POSTGRES = "postgres"


class RegistryConfig(StrictModel):
    model_name: str = Field(min_length=1)
    champion_alias: str = Field(pattern=r"^[a-z][a-z0-9_-]*$")
    challenger_alias: str = Field(pattern=r"^[a-z][a-z0-9_-]*$")
    experiment: str = Field(min_length=1)

    @model_validator(mode="after")
    def _distinct(self) -> RegistryConfig:
        if self.champion_alias == self.challenger_alias:
            raise ValueError("champion_alias and challenger_alias must differ")
        return self


class TrackingConfig(StrictModel):
    backend: TrackingBackend
    postgres_url: str = Field(pattern=r"^postgresql(\+\w+)?://")


class FeatureSelection(StrictModel):
    context: list[str]
    exclude: list[str]


class SplitConfig(StrictModel):
    validation_fraction: float = Field(gt=0, lt=1)
    test_fraction: float = Field(gt=0, lt=1)
    min_rows: int = Field(ge=1)
    min_positives: int = Field(ge=1)

    @model_validator(mode="after")
    def _room_for_training(self) -> SplitConfig:
        if self.validation_fraction + self.test_fraction >= 0.9:
            raise ValueError("validation_fraction + test_fraction must leave >= 10% for training")
        return self


class LightGBMConfig(StrictModel):
    learning_rate: float = Field(gt=0, le=1)
    num_leaves: int = Field(ge=2)
    min_data_in_leaf: int = Field(ge=1)
    feature_fraction: float = Field(gt=0, le=1)
    bagging_fraction: float = Field(gt=0, le=1)
    bagging_freq: int = Field(ge=0)
    lambda_l2: float = Field(ge=0)
    max_cat_to_onehot: int = Field(ge=1)
    max_rounds: int = Field(ge=1)
    early_stopping_rounds: int = Field(ge=1)
    num_threads: int = Field(ge=1)
    seed: int = Field(ge=0)
    monotone_increasing: list[str]


class ImbalanceConfig(StrictModel):
    strategy: Literal["balanced", "none"]
    max_weight: float = Field(ge=1)


class CalibrationConfig(StrictModel):
    """Which calibrator, fitted on which rows, and when it is refused (training.calibration)."""

    method: Literal["auto", "isotonic", "platt", "none"]
    fit_rows: Literal["window", "split"]
    min_rows_isotonic: int = Field(ge=2)
    cv_folds: int = Field(ge=2)
    cv_seed: int = Field(ge=0)
    auc_tolerance: float = Field(ge=0, lt=0.1)
    max_isotonic_slope: float = Field(gt=0)


class BaselineConfig(StrictModel):
    """The fitted baselines of every run (training.baselines)."""

    prior_rows: float = Field(ge=0)
    logistic_c: float = Field(gt=0)
    max_iter: int = Field(ge=10)


class GuardConfig(StrictModel):
    """When a run is `no_signal` and cannot be promoted (training.guards)."""

    min_auc_margin: float = Field(ge=-1, lt=0.5)  # negative: tolerate a model this far below
    confidence: float = Field(gt=0.5, lt=1)  # one-sided level of the DeLong lower bound
    min_trees: int = Field(ge=1)


def _known_segments(segments: list[str]) -> list[str]:
    unknown = sorted(set(segments) - _SEGMENT_COLUMNS)
    if unknown:
        raise ValueError(
            f"unknown segments {unknown}; known: {', '.join(sorted(_SEGMENT_COLUMNS))}"
        )
    return segments


Segments = Annotated[list[str], AfterValidator(_known_segments)]


class EvaluationConfig(StrictModel):
    ece_bins: int = Field(ge=2)
    ece_binning: Literal["equal_mass", "equal_width"]
    ece_resamples: int = Field(ge=0)  # 0: no interval, no floor
    ece_confidence: float = Field(gt=0, lt=1)
    ece_seed: int = Field(ge=0)
    top_fraction: float = Field(gt=0, lt=1)
    min_segment_rows: int = Field(ge=2)
    segments: Segments
    shap_rows: int = Field(ge=10)
    plot_top_features: int = Field(ge=1)
    behaviour_rows: int = Field(ge=10)
    behaviour_pause_step_s: float = Field(gt=0)
    behaviour_cta_fails_step: int = Field(ge=1)


class PromotionConfig(StrictModel):
    auc_tolerance: float = Field(ge=0, lt=1)
    min_margin_over_best_baseline: float = Field(ge=-1, lt=1)
    segment_tolerance: float = Field(ge=0, lt=1)
    min_segment_rows: int = Field(ge=2)
    segments: Segments


class ExportConfig(StrictModel):
    parity_tolerance: float = Field(gt=0, le=1e-3)
    target_opset: int = Field(ge=9)


class RetrainConfig(StrictModel):
    window_days: int = Field(ge=1)


class FeedbackConfig(StrictModel):
    """How decisions the policy already acted on enter training (see training.yaml)."""

    exposure_weights: bool


class TrainingConfig(ConfigFile):
    """Training, evaluation, tracking, export and promotion (see comments in training.yaml)."""

    file_name = "training.yaml"

    registry: RegistryConfig
    tracking: TrackingConfig
    features: FeatureSelection
    split: SplitConfig
    lightgbm: LightGBMConfig
    imbalance: ImbalanceConfig
    calibration: CalibrationConfig
    baselines: BaselineConfig
    guards: GuardConfig
    evaluation: EvaluationConfig
    promotion: PromotionConfig
    export: ExportConfig
    retrain: RetrainConfig
    feedback: FeedbackConfig

    def override(self, **sections: dict) -> TrainingConfig:
        """A validated copy with some section keys replaced (CLI options, tests)."""
        raw = self.model_dump()
        for section, values in sections.items():
            raw[section].update(values)
        return type(self).model_validate(raw)
