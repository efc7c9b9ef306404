"""The contract between the behaviour simulator and any trigger policy.

The simulator calls `decide()` at every detected micro-moment and `observe()` with what the
user did about a shown intervention. The serving decision engine implements this protocol,
so a policy evaluated in simulation is the exact code the server runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import pyarrow as pa

from core.vocabulary import ActionType, Outcome
from features.signals import Moment, SessionState


@dataclass(frozen=True, slots=True)
class MomentContext:
    """Everything a live dispatcher would know when it calls at a micro-moment."""

    user_id: str
    session_id: str
    now: float  # epoch seconds of the decision
    moment: Moment
    state: SessionState  # live session state; read it, never mutate it
    tz: str | None
    device: str | None
    channel: str | None
    prior_events: Callable[[], pa.Table]  # the user's events before this session (canonical)


@dataclass(frozen=True, slots=True)
class Intervention:
    """A policy's answer: what to show (ActionType.NONE = nothing), under which decision id."""

    action: ActionType
    decision_id: str
    arm: str | None = None


class Policy(Protocol):
    """A trigger policy the simulator can call."""

    def decide(self, ctx: MomentContext) -> Intervention: ...

    def observe(self, decision_id: str, outcome: Outcome, now: float) -> None: ...


class NoTriggers:
    """The baseline policy: never show anything."""

    def decide(self, ctx: MomentContext) -> Intervention:
        return Intervention(ActionType.NONE, f"{ctx.session_id}:{ctx.now:.3f}")

    def observe(self, decision_id: str, outcome: Outcome, now: float) -> None:
        return None
