"""The rules fallback: the source document's heuristic score and its signal table.

Used when the model cannot answer (cold start, feature-store error or budget overrun, no
model) and as the training baseline. `heuristic_score` works on scalars and on numpy arrays /
pandas columns alike, so the training baseline and the server share one formula.

Signals are a mapping of `features.signals` names (SNAPSHOT_COUNTERS / DERIVED_FIELDS) to
floats; a missing or NaN signal is "not observed": it adds nothing to the score and never
makes a rule fire.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from core.heuristic import (
    DELAY_SIGNAL,
    SCROLL_SIGNAL,
    SECONDARY_SIGNAL,
    HeuristicConfig,
    heuristic_score,
)
from core.policy_config import SignalRule
from core.vocabulary import MomentType


def signal_value(signals: Mapping[str, Any], name: str) -> float:
    """A signal as a float; missing, None or non-numeric (a store's text value) -> NaN."""
    value = signals.get(name)
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    return math.nan


def score_signals(signals: Mapping[str, Any], cfg: HeuristicConfig) -> float:
    """The heuristic score of one request's signals."""
    return heuristic_score(
        signal_value(signals, SCROLL_SIGNAL),
        signal_value(signals, DELAY_SIGNAL),
        signal_value(signals, SECONDARY_SIGNAL),
        cfg,
    )


@dataclass(frozen=True, slots=True)
class RuleHit:
    """A rule that fired and the signal value that made it fire."""

    rule: SignalRule
    value: float

    def describe(self) -> str:
        r = self.rule
        return f"{r.signal} {self.value:g} {r.op} {r.threshold:g}"


def holds(rule: SignalRule, value: float | None) -> bool:
    """`value op threshold`; a missing / NaN value never holds."""
    if value is None or math.isnan(value):
        return False
    t = rule.threshold
    match rule.op:
        case "<":
            return value < t
        case "<=":
            return value <= t
        case ">":
            return value > t
        case ">=":
            return value >= t
    raise ValueError(f"unknown operator {rule.op!r}")  # unreachable: the config is validated


def first_hit(
    rules: Sequence[SignalRule], moment: MomentType | None, signals: Mapping[str, float]
) -> RuleHit | None:
    """The first rule (table order = priority) of `moment` whose condition holds."""
    if moment is None:
        return None
    for rule in rules:
        if moment in rule.moments:
            value = signal_value(signals, rule.signal)
            if holds(rule, value):
                return RuleHit(rule, value)
    return None


def detect_moment(rules: Sequence[SignalRule], signals: Mapping[str, float]) -> MomentType | None:
    """The moment the signals show when the dispatcher sent none: the first rule that holds."""
    for rule in rules:
        if holds(rule, signal_value(signals, rule.signal)):
            return rule.moments[0]
    return None
