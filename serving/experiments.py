"""Experiment assignment: salted hashes, sticky per user, no state to store or lose.

A user's position in a layer is `sha256(salt:user) / 2**64`, so the same user always lands in
the same place and a new salt reshuffles everyone. The global holdout is checked first with
its own salt: holdout users are in no experiment and never get a trigger (the engine logs
what they would have got, so the holdout measures the policy's lift). Inside a layer,
experiments occupy consecutive slices of [0, 1) and are therefore mutually exclusive;
different layers use different salts and are independent.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache

from core.policy_config import Cohort, ExperimentsConfig, ThresholdOverrides

HOLDOUT_ARM = "holdout"


@lru_cache(maxsize=262_144)
def bucket(salt: str, unit: str) -> float:
    """A uniform, deterministic position in [0, 1) for `unit` under `salt`."""
    digest = hashlib.sha256(f"{salt}:{unit}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


@dataclass(frozen=True, slots=True)
class Assignment:
    """Where one user stands: holdout or not, and the arm of each experiment they are in."""

    holdout: bool
    arms: tuple[tuple[str, str], ...]  # (experiment, arm)
    overrides: tuple[tuple[str, ThresholdOverrides], ...]  # ("experiment.arm", overrides)
    # ("experiment.arm", cohort): the arms' cohort overrides, applied where the user matches
    cohorts: tuple[tuple[str, Cohort], ...] = ()

    @property
    def label(self) -> str | None:
        """`holdout`, `exp=arm[,exp=arm]`, or None when the user is in no experiment."""
        if self.holdout:
            return HOLDOUT_ARM
        return ",".join(f"{e}={a}" for e, a in self.arms) or None


def assign(unit: str, cfg: ExperimentsConfig) -> Assignment:
    """The assignment of `unit` (the user id, or the anonymous id before identification)."""
    if bucket(cfg.holdout.salt, unit) < cfg.holdout.share:
        return Assignment(True, (), ())
    arms: list[tuple[str, str]] = []
    overrides: list[tuple[str, ThresholdOverrides]] = []
    cohorts: list[tuple[str, Cohort]] = []
    for layer in cfg.layers:
        position = bucket(layer.salt, unit)
        start = 0.0
        for exp in layer.experiments:
            if start <= position < start + exp.share:
                # Rescale the position inside the experiment's slice to pick the arm.
                inner = (position - start) / exp.share
                total = sum(a.weight for a in exp.arms)
                edge = 0.0
                chosen = exp.arms[-1]
                for arm in exp.arms:
                    edge += arm.weight / total
                    if inner < edge:
                        chosen = arm
                        break
                arms.append((exp.name, chosen.name))
                if not chosen.overrides.is_empty():
                    overrides.append((f"{exp.name}.{chosen.name}", chosen.overrides))
                cohorts += [(f"{exp.name}.{chosen.name}", c) for c in chosen.cohorts]
                break
            start += exp.share
    return Assignment(False, tuple(arms), tuple(overrides), tuple(cohorts))


class Assigner:
    """`assign` with a per-process cache (assignment is pure, so caching is safe)."""

    def __init__(self, cfg: ExperimentsConfig, cache_size: int = 100_000) -> None:
        self.cfg = cfg
        self._assign = lru_cache(maxsize=cache_size)(self._compute)

    def _compute(self, unit: str) -> Assignment:
        return assign(unit, self.cfg)

    def __call__(self, unit: str) -> Assignment:
        return self._assign(unit)
