"""Config model of the data profile and readiness checks (`configs/profile.yaml`)."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from core.settings import ConfigFile, StrictModel


class LabelThresholds(StrictModel):
    """When a label kind is usable: little censoring, both classes, enough rows."""

    max_censored_share: float = Field(ge=0, le=1)
    min_positive_rate: float = Field(ge=0, le=1)
    max_positive_rate: float = Field(ge=0, le=1)
    min_labelled: int = Field(ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> LabelThresholds:
        if self.min_positive_rate >= self.max_positive_rate:
            raise ValueError("min_positive_rate must be below max_positive_rate")
        return self


class DataThresholds(StrictModel):
    """What the data must hold for each family of features to mean something."""

    min_days_for_step_stats: int = Field(ge=1)
    min_returning_user_share: float = Field(ge=0, le=1)
    min_step_event_share: float = Field(ge=0, le=1)


class ProfileConfig(ConfigFile):
    """Candidate label horizons and the thresholds of `intent data profile`."""

    file_name = "profile.yaml"

    horizons_minutes: list[float] = Field(min_length=1)
    label: LabelThresholds
    data: DataThresholds

    @field_validator("horizons_minutes")
    @classmethod
    def _ascending(cls, horizons: list[float]) -> list[float]:
        if any(h <= 0 for h in horizons) or horizons != sorted(set(horizons)):
            raise ValueError("horizons must be positive, unique and ascending")
        return horizons
