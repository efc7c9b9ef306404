"""Config models of the features package (files under `configs/`)."""

from __future__ import annotations

from pydantic import Field, field_validator

from features.settings import ConfigFile


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
