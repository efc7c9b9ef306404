"""Random streams keyed by what they are for, so a run does not depend on processing order.

Each user gets a child of the run's seed, `SeedSequence(seed, spawn_key=(user,))`, feeding a
PCG64. Every stream of that user (a session's return decision, a step attempt's behaviour,
the responses to interventions on it) is a disjoint window of 2**64 draws of that PCG64,
reached with `advance()`: its position is a function of the stream's key, never of how many
numbers were drawn before. So two runs with the same seed give each user, session and step
attempt the same numbers whatever else was simulated, and two policies compared on one seed
see the same users behave the same until an intervention changes something (common random
numbers: paired comparisons need far fewer users). Windows cost ~2 us where a fresh
SeedSequence + PCG64 costs ~30 us, which matters at ~100k step attempts per run.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Sequence
from enum import IntEnum
from typing import Any

import numpy as np

from features.simulator.config import IntRange, LogNormal

WINDOW_BITS = 64  # each stream owns 2**64 consecutive PCG64 draws (the period is 2**128)
STEP_SLOTS = 64  # funnel steps addressable by a stream key
SESSION_SLOTS = 1 << 20


class Purpose(IntEnum):
    """What a stream is for; one live stream per purpose and user at a time."""

    USER = 0  # traits and arrival
    SESSION = 1  # return decision and delay after a session
    ATTEMPT = 2  # behaviour on one step attempt
    RESPONSE = 3  # reactions to interventions on one step attempt


# Purposes whose streams are never in use at the same time share a bit generator.
_SLOT = {Purpose.USER: 0, Purpose.SESSION: 0, Purpose.ATTEMPT: 1, Purpose.RESPONSE: 2}


class UserStreams:
    """The random streams of one user.

    A stream stays valid until the next `stream()` call of the same purpose (and USER /
    SESSION share one): the engine uses one attempt stream at a time, and so on.
    """

    __slots__ = ("_base", "_bitgens")

    def __init__(self, seed: int, user: int) -> None:
        first = np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(user,)))
        self._base: dict[str, Any] = first.state
        self._bitgens: list[np.random.PCG64 | None] = [first, None, None]

    def stream(self, purpose: Purpose, session: int = 0, step: int = 0) -> Draws:
        """The stream of `purpose` for the user's session `session` and funnel step `step`."""
        if not 0 <= session < SESSION_SLOTS or not 0 <= step < STEP_SLOTS:
            raise ValueError(f"stream key out of range: session {session}, step {step}")
        slot = _SLOT[purpose]
        bitgen = self._bitgens[slot]
        if bitgen is None:
            bitgen = self._bitgens[slot] = np.random.PCG64(0)
        bitgen.state = self._base
        window = (session * len(Purpose) + purpose) * STEP_SLOTS + step
        bitgen.advance(window << WINDOW_BITS)
        return Draws(np.random.Generator(bitgen))


class Draws:
    """The few draws the simulator needs, as plain floats (scalar numpy calls, no arrays)."""

    __slots__ = ("_gen",)

    def __init__(self, gen: np.random.Generator) -> None:
        self._gen = gen

    def uniform(self) -> float:
        return self._gen.random()

    def chance(self, p: float) -> bool:
        return self._gen.random() < p

    def normal(self, mean: float = 0.0, sd: float = 1.0) -> float:
        return mean + sd * self._gen.standard_normal()

    def lognormal(self, dist: LogNormal, scale: float = 1.0) -> float:
        value = scale * dist.median * math.exp(dist.sigma * self._gen.standard_normal())
        return value if dist.max is None else min(value, scale * dist.max)

    def integer(self, bounds: IntRange) -> int:
        return int(self._gen.integers(bounds.min, bounds.max + 1))

    def below(self, n: int) -> int:
        """Uniform in 0..n-1."""
        return int(self._gen.integers(n))

    def pick(self, options: Weighted) -> str:
        return options.names[bisect.bisect_right(options.cumulative, self._gen.random())]


class Weighted:
    """Names with shares, prepared once for fast repeated picks."""

    __slots__ = ("cumulative", "names")

    def __init__(self, shares: dict[str, float] | Sequence[tuple[str, float]]) -> None:
        items = list(shares.items()) if isinstance(shares, dict) else list(shares)
        total = sum(w for _, w in items)
        if not items or total <= 0:
            raise ValueError("at least one option with a positive weight is required")
        self.names = [str(n) for n, _ in items]
        self.cumulative = [c / total for c in itertools.accumulate(w for _, w in items)]
        self.cumulative[-1] = 1.0 + 1e-12  # a uniform draw in [0, 1) always lands
