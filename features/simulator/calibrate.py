"""Fit each step's `abandon_logit` so the no-trigger funnel matches the calibration targets.

Drop-off at a step depends on much more than its base logit (who is stuck, who comes back
days later, who reaches the step at all), so there is no closed form: simulate, compare
each step's drop-off with its target, shift the logit by the difference in log-odds, and
repeat. A few rounds converge to within sampling noise.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

from features.config import FunnelConfig, SignalsConfig
from features.simulator.config import SimulatorConfig
from features.simulator.engine import simulate
from features.simulator.summary import FunnelSummary, funnel_summary

_EDGE = 1e-4  # keeps log-odds finite for a step nobody (or everybody) drops off at


def _logit(p: float) -> float:
    p = min(max(p, _EDGE), 1 - _EDGE)
    return math.log(p / (1 - p))


@dataclass(frozen=True)
class CalibrationRound:
    abandon_logits: dict[str, float]  # used in this round
    summary: FunnelSummary  # what they gave


def fit_abandon_logits(
    sim_cfg: SimulatorConfig,
    signals_cfg: SignalsConfig,
    funnel: FunnelConfig,
    users: int,
    days: int,
    seed: int,
    start: date,
    rounds: int,
    on_round: Callable[[CalibrationRound], None] | None = None,
) -> tuple[SimulatorConfig, list[CalibrationRound]]:
    """Return the config with fitted step logits and every round's result (the last one is
    the fitted config's own check)."""
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1 (got {rounds})")
    targets = sim_cfg.calibration.step_dropoff
    cfg = sim_cfg
    history: list[CalibrationRound] = []
    for i in range(rounds + 1):
        result = simulate(cfg, signals_cfg, funnel, users, days, seed, start=start)
        summary = funnel_summary(result.events, result.users, funnel)
        logits = {name: step.abandon_logit for name, step in cfg.steps.items()}
        history.append(CalibrationRound(logits, summary))
        if on_round is not None:
            on_round(history[-1])
        if i == rounds:
            break
        steps = {
            name: step.model_copy(
                update={
                    "abandon_logit": round(
                        step.abandon_logit + _logit(targets[name]) - _logit(summary.dropoff(name)),
                        2,
                    )
                }
            )
            for name, step in cfg.steps.items()
        }
        cfg = cfg.model_copy(update={"steps": steps})
    return cfg, history
