"""Config models of the features package (files under `configs/`)."""

from __future__ import annotations

from enum import StrEnum

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, field_validator, model_validator

from core.settings import ConfigFile, StrictModel
from features.events import EventType


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


class UserAgentRule(StrictModel):
    """Declared automation in the user agent (crawlers, headless browsers, HTTP libraries)."""

    weight: float = Field(ge=0, le=1)
    patterns: list[str] = Field(min_length=1)  # RE2 regexes, matched case-insensitively

    @field_validator("patterns")
    @classmethod
    def _compiles(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            try:  # the batch scorer matches with Arrow's RE2, so check with it
                pc.match_substring_regex(pa.array([""]), pattern=pattern, ignore_case=True)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise ValueError(f"pattern {pattern!r} is not a valid regex: {exc}") from exc
        return patterns


class EventRateRule(StrictModel):
    """Events per minute: the score ramps from 0 at `human_per_min` to 1 at `bot_per_min`."""

    weight: float = Field(ge=0, le=1)
    human_per_min: float = Field(gt=0)
    bot_per_min: float = Field(gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> EventRateRule:
        if self.bot_per_min <= self.human_per_min:
            raise ValueError("bot_per_min must be greater than human_per_min")
        return self


class RegularGapsRule(StrictModel):
    """Robust coefficient of variation of the gaps: 1 at `bot_cv` or below, 0 from `human_cv`."""

    weight: float = Field(ge=0, le=1)
    bot_cv: float = Field(ge=0)
    human_cv: float = Field(gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> RegularGapsRule:
        if self.human_cv <= self.bot_cv:
            raise ValueError("human_cv must be greater than bot_cv")
        return self


class NoScrollHoverRule(StrictModel):
    """A session with enough events but not a single scroll or hover."""

    weight: float = Field(ge=0, le=1)


class BotConfig(StrictModel):
    """Per-session bot score: evidence combined by noisy-OR, `1 - prod(1 - weight * signal)`.

    Noisy-OR lets one decisive signal (a crawler user agent) flag a session on its own while
    behavioural signals only flag it together, which a weighted mean cannot express.
    """

    threshold: float = Field(gt=0, le=1)
    min_events: int = Field(ge=3)  # behavioural signals need this many events to mean anything
    user_agent: UserAgentRule
    event_rate: EventRateRule
    regular_gaps: RegularGapsRule
    no_scroll_hover: NoScrollHoverRule


class ImportLimits(StrictModel):
    """When an import is refused: most of a file failing means a wrong mapping, not bad rows."""

    max_quarantined_share: float = Field(ge=0, le=1)
    top_reasons: int = Field(ge=1)


class EventsConfig(ConfigFile):
    """Validation, sessionization and bot scoring of incoming events."""

    file_name = "events.yaml"

    future_tolerance_s: float = Field(ge=0)
    session_gap_minutes: float = Field(gt=0)
    bots: BotConfig
    imports: ImportLimits


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


class LabelKind(StrEnum):
    """What a decision point's label asks (configs/signals.yaml `label_kind`).

    horizon: the step is not completed within `label_horizon_minutes` (any session counts);
    session_end: the session ends without completing the step or reaching the goal. The
    second needs no horizon, so short exports (one day of a shop) are not mostly censored.
    """

    HORIZON = "horizon"
    SESSION_END = "session_end"


class AssistiveInference(StrictModel):
    """When a session without the explicit flag is read as using assistive technology
    (features.signals.assistive_reason); each criterion can be switched off."""

    user_agent_patterns: list[str] = Field(
        default_factory=list,
        description="case-insensitive regexes on the user agent / client hints (screen readers)",
    )
    keyboard_only_min_events: int | None = Field(
        1, ge=1, description="this many keyboard events and no pointer event (None: off)"
    )
    long_pause_s: float = Field(20.0, gt=0, description="a gap this long is a long pause")
    long_pauses_min: int | None = Field(
        None,
        ge=1,
        description="this many long pauses and no pointer event (None, the default: off; "
        "data without scroll / hover tracking would read every session as assistive)",
    )

    @field_validator("user_agent_patterns")
    @classmethod
    def _compiles(cls, patterns: list[str]) -> list[str]:
        import re

        for p in patterns:
            try:
                re.compile(p)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {p!r}: {exc}") from exc
        return patterns


class SignalsConfig(ConfigFile):
    """Session signals, micro-moment detectors and the abandonment label."""

    file_name = "signals.yaml"

    primary_targets: list[str] = Field(min_length=1)
    help_targets: list[str] = Field(min_length=1)
    moments: MomentsConfig
    label_kind: LabelKind
    label_horizon_minutes: float = Field(gt=0)
    assistive: AssistiveInference = Field(default_factory=AssistiveInference)

    @property
    def pause_threshold_s(self) -> float:
        """The shortest gap that counts as a pause (the first checkpoint)."""
        return self.moments.pause_checkpoints_s[0]
