"""Accessibility guard: what an assistive-technology session may be shown.

A screen-reader or keyboard user pauses to listen and navigate, not because they hesitate,
and auto-playing video talks over their reader. The guard runs after the policy and any
learned selector, so no path (rules, model, bandit) can get round it. Pure: outcome in,
outcome out, with a reason saying why.
"""

from __future__ import annotations

from core.policy_config import AssistiveConfig
from core.vocabulary import ActionType, MomentType
from features.config import SignalsConfig
from features.signals import SessionState, assistive_reason
from serving.policy import PolicyOutcome, Reason, content_key


def session_assistive(
    flagged: bool, session: SessionState | None, cfg: SignalsConfig
) -> str | None:
    """Why this decision treats the session as assistive (None: it does not): the request's
    flag, else the session's own evidence (features.signals.assistive_reason)."""
    if flagged:
        return "flag"
    return assistive_reason(session, cfg) if session is not None else None


def guard(
    outcome: PolicyOutcome,
    moment: MomentType | None,
    step: str,
    cfg: AssistiveConfig,
    template: str,
    why: str = "flag",
) -> PolicyOutcome:
    """`outcome` for an assistive session (`why`: session_assistive's reason): no action at a
    hesitation moment, excluded actions replaced by their substitute (or none). Non-actions
    pass through unchanged."""
    action = outcome.action
    if action == ActionType.NONE:
        return outcome
    if moment is not None and moment in cfg.hesitation_moments:
        why = Reason(
            "assistive",
            "hesitation_moment",
            None,
            f"assistive session ({why}): {moment} is read as navigation, not hesitation; "
            f"{action} suppressed",
        )
        return PolicyOutcome(outcome.band, ActionType.NONE, None, (*outcome.reasons, why))
    if action in cfg.excluded_actions:
        sub = cfg.substitutes.get(action, ActionType.NONE)
        why = Reason(
            "assistive",
            "excluded_action",
            None,
            f"assistive session ({why}): {action} auto-plays; replaced by {sub}",
        )
        content = None if sub == ActionType.NONE else content_key(template, sub, moment, step)
        return PolicyOutcome(outcome.band, sub, content, (*outcome.reasons, why))
    return outcome
