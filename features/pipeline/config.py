"""Config model of the offline feature pipeline's aggregates (`configs/aggregates.yaml`)."""

from __future__ import annotations

from pydantic import Field, field_validator

from core.settings import ConfigFile


class AggregatesConfig(ConfigFile):
    """Window lengths of the user aggregates and the step statistics."""

    file_name = "aggregates.yaml"

    user_windows_days: list[int] = Field(min_length=1)
    step_window_days: int = Field(ge=1)
    step_fallback_every_minutes: int = Field(ge=1, le=24 * 60)

    @field_validator("user_windows_days")
    @classmethod
    def _ascending(cls, windows: list[int]) -> list[int]:
        if any(w < 1 for w in windows) or windows != sorted(set(windows)):
            raise ValueError("windows must be whole days >= 1, unique and ascending")
        return windows
