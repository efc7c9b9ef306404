"""Config models of the features package (files under `configs/`)."""

from __future__ import annotations

from pydantic import Field, field_validator

from features.events import EventType
from features.settings import ConfigFile, StrictModel


class FunnelConfig(ConfigFile):
    """The onboarding funnel: ordered steps; the last step's completion is the goal."""

    file_name = "funnel.yaml"

    name: str
    steps: list[str] = Field(min_length=1)

    @field_validator("steps")
    @classmethod
    def _unique(cls, steps: list[str]) -> list[str]:
        if len(set(steps)) != len(steps):
            raise ValueError("steps must be unique")
        return steps

    def index(self, step: str | None) -> int:
        """Position of a step in the funnel, -1 when unknown (other funnels, missing)."""
        try:
            return self.steps.index(step) if step is not None else -1
        except ValueError:
            return -1


class EventsConfig(ConfigFile):
    """Validation and sessionization of incoming events."""

    file_name = "events.yaml"

    future_tolerance_s: float = Field(ge=0)
    session_gap_minutes: float = Field(gt=0)


class MomentsConfig(StrictModel):
    """Micro-moment detectors: where the dispatcher calls and where training rows come from."""

    pause_checkpoints_s: list[float] = Field(min_length=1)
    shallow_scroll_max_depth: float = Field(ge=0, le=100)
    shallow_scroll_on: list[str] = Field(min_length=1)
    cta_fail_min: int = Field(ge=1)
    low_click_rate_max: float = Field(ge=0, le=1)
    low_click_rate_min_interactions: int = Field(ge=1)
    rapid_back_s: float = Field(gt=0)
    help_hover_min_s: float = Field(gt=0)

    @field_validator("pause_checkpoints_s")
    @classmethod
    def _ascending(cls, checkpoints: list[float]) -> list[float]:
        if any(c <= 0 for c in checkpoints) or checkpoints != sorted(set(checkpoints)):
            raise ValueError("pause checkpoints must be positive, unique and ascending")
        return checkpoints

    @field_validator("shallow_scroll_on")
    @classmethod
    def _known_types(cls, types: list[str]) -> list[str]:
        known = {t.value for t in EventType}
        unknown = sorted(set(types) - known)
        if unknown:
            raise ValueError(f"unknown event types: {', '.join(unknown)}")
        return types


class SignalsConfig(ConfigFile):
    """Session signals, micro-moment detectors and the abandonment label."""

    file_name = "signals.yaml"

    primary_targets: list[str] = Field(min_length=1)
    help_targets: list[str] = Field(min_length=1)
    moments: MomentsConfig
    label_horizon_minutes: float = Field(gt=0)

    @property
    def pause_threshold_s(self) -> float:
        """The shortest gap that counts as a pause (the first checkpoint)."""
        return self.moments.pause_checkpoints_s[0]
