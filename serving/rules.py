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


def _saturate(value: float, full: float) -> float:
    """`clip(value, 0, full) / full`, NaN (not observed) -> 0."""
    if math.isnan(value):
        return 0.0
    return min(max(value, 0.0), full) / full


def _score(depth: float, pause: float, clicks: float, cfg: HeuristicConfig) -> float:
    """The formula, once: shallower scroll, longer pause and more secondary clicks each raise
    their component (monotone, saturating at the configured `*_full`); NaN adds nothing."""
    w = cfg.weights
    scroll = 0.0 if math.isnan(depth) else 1.0 - _saturate(depth, cfg.scroll_full_depth)
    return (
        w.scroll * scroll
        + w.delay * _saturate(pause, cfg.delay_full_s)
        + w.secondary_clicks * _saturate(clicks, cfg.secondary_clicks_full)
    )


def heuristic_score(
    scroll_depth: Any, pause_s: Any, secondary_clicks: Any, cfg: HeuristicConfig
) -> Any:
    """0.3 * scroll + 0.5 * delay + 0.2 * secondary clicks (weights from config), in 0..1.

    Plain numbers (the server, one decision at a time) give a float; arrays or columns (the
    training baseline, once per run) give an array of the same formula applied row by row.
    """
    if all(isinstance(v, int | float) for v in (scroll_depth, pause_s, secondary_clicks)):
        return _score(float(scroll_depth), float(pause_s), float(secondary_clicks), cfg)
    columns = np.broadcast_arrays(
        *(np.asarray(v, dtype=np.float64) for v in (scroll_depth, pause_s, secondary_clicks))
    )
    if columns[0].ndim == 0:
        return _score(*(float(c) for c in columns), cfg)
    flat = (c.ravel().tolist() for c in columns)
    scores = [_score(d, p, c, cfg) for d, p, c in zip(*flat, strict=True)]
    return np.array(scores, dtype=np.float64).reshape(columns[0].shape)


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
