"""What the decision engine takes and gives: plain, immutable records.

`DecisionRequest` is built from an HTTP request (`serving.schemas`) or from the simulator's
`MomentContext` (`serving.engine.EnginePolicy`); `Decision` is what the engine answers, logs
and counts. Both are dataclasses (no validation cost on the hot path): validation happens
once, at the edge.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from core.vocabulary import ActionType, MomentType, Source
from serving.decision_log import to_json
from serving.policy import Reason
from serving.rules import signal_value


class FallbackReason(StrEnum):
    """Why the rules answered instead of the model."""

    COLD_START = "cold_start"  # the user is unknown to the online store
    FEATURE_STORE_ERROR = "feature_store_error"  # no online store, or the read failed
    FEATURE_BUDGET_EXCEEDED = "feature_budget_exceeded"  # the read overran its budget
    NO_MODEL = "no_model"  # no champion and no bundle: rules-only mode
    MODEL_ERROR = "model_error"  # the model could not score these features


@dataclass(frozen=True, slots=True)
class DecisionRequest:
    """One call at a micro-moment. `signals` override stored signals of the same name."""

    user_id: str
    session_id: str
    step: str
    now: float  # epoch seconds of the decision
    moment: MomentType | None = None
    signals: Mapping[str, float] = field(default_factory=dict)
    episode: str | None = None
    tz: str | None = None
    device: str | None = None
    channel: str | None = None
    returning: bool | None = None
    assistive: bool = False  # assistive technology in use (serving.assistive)


def default_episode(
    moment: MomentType | None, step: str, now: float, signals: Mapping[str, float]
) -> str:
    """The episode id when the caller sent none, in the detectors' formats (features.signals):
    a pause is identified by when it began, other moments by the step visit."""
    pause, backs, visits = (signal_value(signals, n) for n in ("pause_s", "backs", "step_visits"))
    if moment == MomentType.PAUSE and not math.isnan(pause):
        return f"pause@{now - pause:.3f}"
    if moment == MomentType.BACKTRACK and not math.isnan(backs):
        return f"backtrack@{int(backs)}"
    visit = int(visits) if not math.isnan(visits) and visits >= 1 else 1
    return f"{moment.value if moment else 'none'}@{step}#{visit}"


@dataclass(frozen=True, slots=True)
class Decision:
    """The engine's answer; `action` is what to show (NONE when held out or capped)."""

    decision_id: str
    request: DecisionRequest
    score: float
    band: str
    moment: MomentType | None
    episode: str
    action: ActionType
    content: str | None
    reasons: tuple[Reason, ...]
    source: Source
    fallback_reason: FallbackReason | None
    model_version: str | None
    arm: str | None
    holdout: bool
    would_action: ActionType  # what the policy chose before holdout and caps
    capped: bool
    cap_reason: str | None  # a core.policy_config.CapKind value, or "store_error"
    signals: Mapping[str, Any]  # the merged signals the decision used
    tz: str
    latency_ms: float
    # the chosen action's probability under the policy that chose it (1.0: deterministic;
    # the holdout's `none` is deterministic) and the eligible set (serving.bandit)
    propensity: float = 1.0
    eligible: tuple[str, ...] = ()
    # which runtime answered (serving.rollout: "champion", or "challenger" for a canary user)
    served_by: str = "champion"

    def log_row(self) -> dict[str, Any]:
        """The decision-log row (`serving.decision_log.DECISION_COLUMNS`)."""
        req = self.request
        return {
            "decision_id": self.decision_id,
            "ts": req.now,
            "user_id": req.user_id,
            "session_id": req.session_id,
            "step": req.step,
            "moment": self.moment.value if self.moment else None,
            "episode": self.episode,
            "score": self.score,
            "band": self.band,
            "action": self.action.value,
            "content": self.content,
            "source": self.source.value,
            "fallback_reason": self.fallback_reason.value if self.fallback_reason else None,
            "model_version": self.model_version,
            "arm": self.arm,
            "holdout": int(self.holdout),
            "would_action": self.would_action.value,
            "capped": int(self.capped),
            "cap_reason": self.cap_reason,
            "reasons": to_json([reason_dict(r) for r in self.reasons]),
            "signals": to_json(
                self.signals if isinstance(self.signals, dict) else dict(self.signals)
            ),
            "device": req.device,
            "channel": req.channel,
            "tz": self.tz,
            "latency_ms": self.latency_ms,
            "propensity": self.propensity,
            "eligible_actions": to_json(list(self.eligible)),
            "shadow_score": None,  # set later by the shadow scorer (serving.rollout)
            "shadow_version": None,
        }


def reason_dict(reason: Reason) -> dict[str, Any]:
    value = reason.value
    if value is not None and not math.isfinite(value):
        value = None
    return {"kind": reason.kind, "name": reason.name, "value": value, "detail": reason.detail}
