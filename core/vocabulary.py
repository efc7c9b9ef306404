"""The action, outcome and moment vocabulary shared by simulator, training and serving."""

from __future__ import annotations

from enum import StrEnum


class ActionType(StrEnum):
    """Interventions the dispatcher can show (`none` = do nothing)."""

    NONE = "none"
    CONTEXTUAL_TIP = "contextual_tip"
    GUIDE = "guide"  # progressive onboarding guide
    WALKTHROUGH = "walkthrough"  # animated walkthrough
    TOOLTIP = "tooltip"  # benefit-focused tooltip
    MICRO_VIDEO = "micro_video"
    LIVE_CHAT = "live_chat"


class Outcome(StrEnum):
    """What happened after a decision (POST /outcome, simulated trigger_outcome events)."""

    ACCEPTED = "accepted"
    DISMISSED = "dismissed"
    STEP_COMPLETED = "step_completed"
    ABANDONED = "abandoned"


class MomentType(StrEnum):
    """Kinds of candidate micro-moments (what the dispatcher reports in `moment`)."""

    PAUSE = "pause"
    SHALLOW_SCROLL = "shallow_scroll"
    CTA_FAIL = "cta_fail"
    LOW_CLICK_RATE = "low_click_rate"
    BACKTRACK = "backtrack"
    HELP_HOVER = "help_hover"


class Source(StrEnum):
    """Who scored: the model, or the rules fallback."""

    MODEL = "model"
    RULES = "rules"
