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

import numpy as np

from features.signals import MomentType
from serving.config import HeuristicConfig, SignalRule

# The signal behind each heuristic component.
SCROLL_SIGNAL = "scroll_depth"
DELAY_SIGNAL = "pause_s"
SECONDARY_SIGNAL = "secondary_clicks"


def heuristic_components(
    scroll_depth: Any, pause_s: Any, secondary_clicks: Any, cfg: HeuristicConfig
) -> tuple[Any, Any, Any]:
    """(scroll, delay, secondary_clicks) components in 0..1; NaN inputs give 0.

    Shallower scroll, longer pause and more secondary clicks each raise their component
    (monotone); each saturates at its configured `*_full` value. Plain numbers (the server,
    one decision at a time) take the same steps in Python floats - numpy's per-call cost on
    scalars was a fifth of a rules decision; arrays (training) go through numpy. Both give
    bit-identical results (tested).
    """
    if all(isinstance(v, int | float) for v in (scroll_depth, pause_s, secondary_clicks)):
        depth = float(scroll_depth)
        return (
            0.0 if math.isnan(depth) else 1.0 - _saturate(depth, cfg.scroll_full_depth),
            _saturate(float(pause_s), cfg.delay_full_s),
            _saturate(float(secondary_clicks), cfg.secondary_clicks_full),
        )
    depth = np.asarray(scroll_depth, dtype=np.float64)
    pause = np.asarray(pause_s, dtype=np.float64)
    clicks = np.asarray(secondary_clicks, dtype=np.float64)
    scroll = np.where(
        np.isnan(depth),
        0.0,
        1.0 - np.clip(depth, 0.0, cfg.scroll_full_depth) / cfg.scroll_full_depth,
    )
    delay = np.where(np.isnan(pause), 0.0, np.clip(pause, 0.0, cfg.delay_full_s) / cfg.delay_full_s)
    secondary = np.where(
        np.isnan(clicks),
        0.0,
        np.clip(clicks, 0.0, cfg.secondary_clicks_full) / cfg.secondary_clicks_full,
    )
    return scroll, delay, secondary


def _saturate(value: float, full: float) -> float:
    """`clip(value, 0, full) / full`, NaN (not observed) -> 0."""
    if math.isnan(value):
        return 0.0
    return min(max(value, 0.0), full) / full


def heuristic_score(
    scroll_depth: Any, pause_s: Any, secondary_clicks: Any, cfg: HeuristicConfig
) -> Any:
    """0.3 * scroll + 0.5 * delay + 0.2 * secondary clicks (weights from config), in 0..1."""
    scroll, delay, secondary = heuristic_components(scroll_depth, pause_s, secondary_clicks, cfg)
    w = cfg.weights
    score = w.scroll * scroll + w.delay * delay + w.secondary_clicks * secondary
    if isinstance(score, float):
        return score
    return float(score) if np.ndim(score) == 0 else score


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
