"""`intent policy ...`: explore in simulation, learn the bandit, evaluate it off-policy."""

from __future__ import annotations

import typer

from features import cli_kit as kit


def register(app: typer.Typer) -> None:
    """Add the `policy` group to the `intent` app."""
    kit.group(app, "policy", "Policy learning: exploration, the contextual bandit, OPE.")
