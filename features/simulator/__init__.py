"""Behaviour simulator: synthetic onboarding users for training, serving and policy tests.

`simulate()` returns the events (canonical schema), the users' latent traits and the oracle
(true abandonment probabilities); `intent simulate` writes them under `data/`. The names
below load on first use, so importing the CLI module (at every `intent` start) stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from features.simulator.config import SimulatorConfig
    from features.simulator.engine import SimulationResult, simulate

__all__ = ["SimulationResult", "SimulatorConfig", "simulate"]

_HOMES = {
    "SimulatorConfig": "features.simulator.config",
    "SimulationResult": "features.simulator.engine",
    "simulate": "features.simulator.engine",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_HOMES[name]), name)
