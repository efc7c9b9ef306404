"""The source document's heuristic score, once for rules, baselines, fallback."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pydantic import Field, model_validator

from core.settings import StrictModel


class HeuristicWeights(StrictModel):
    scroll: float = Field(ge=0)
    delay: float = Field(ge=0)
    secondary_clicks: float = Field(ge=0)

    @model_validator(mode="after")
    def _sum_to_one(self) -> HeuristicWeights:
        total = self.scroll + self.delay + self.secondary_clicks
        if abs(total - 1.0) > 1e-9:
            raise ValueError(f"weights must sum to 1 (got {total:g}) so the score stays in 0..1")
        return self


class HeuristicConfig(StrictModel):
    """The source document's weighted heuristic; each component is normalised to 0..1."""

    weights: HeuristicWeights
    scroll_full_depth: float = Field(gt=0, le=100)
    delay_full_s: float = Field(gt=0)
    secondary_clicks_full: float = Field(gt=0)


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
