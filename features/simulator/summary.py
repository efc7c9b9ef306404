"""Funnel statistics of a simulated data set: what calibration and the CLI summary report.

Counted per human user over the whole period (a user who comes back days later and
completes a step has not dropped off there), as the source document's case study counts.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import pyarrow as pa

from features.config import FunnelConfig
from features.events import EventType


@dataclass(frozen=True)
class StepStats:
    step: str
    reached: int  # human users who saw the step
    completed: int  # ... and completed it at some point

    @property
    def dropoff(self) -> float:
        return 1.0 - self.completed / self.reached if self.reached else float("nan")


@dataclass(frozen=True)
class FunnelSummary:
    humans: int
    bots: int
    sessions: int
    events: int
    goals: int  # human users who reached the goal
    steps: tuple[StepStats, ...]

    @property
    def completion_rate(self) -> float:
        return self.goals / self.humans if self.humans else float("nan")

    def dropoff(self, step: str) -> float:
        """Share of the human users reaching `step` who never complete it."""
        for stats in self.steps:
            if stats.step == step:
                return stats.dropoff
        raise KeyError(f"step {step!r} is not in the summary")


def funnel_summary(events: pa.Table, users: pa.Table, funnel: FunnelConfig) -> FunnelSummary:
    """Per-step reach and completion of human users (bots per the users table)."""
    con = duckdb.connect()
    con.register("events", events.select(["user_id", "session_id", "type", "step"]))
    con.register("users", users.select(["user_id", "is_bot"]))
    humans, bots = con.execute(
        "select count(*) filter (where not is_bot), count(*) filter (where is_bot) from users"
    ).fetchone()
    sessions, n_events = con.execute(
        "select count(distinct session_id), count(*) from events"
    ).fetchone()
    human_events = """
        select e.* from events e join users u using (user_id) where not u.is_bot
    """
    goals = con.execute(
        f"select count(distinct user_id) from ({human_events}) where type = ?",
        [EventType.GOAL.value],
    ).fetchone()[0]
    rows = con.execute(
        f"""
        select step,
               count(distinct user_id) as reached,
               count(distinct user_id) filter (where type = ?) as completed
        from ({human_events}) where step is not null group by step
        """,
        [EventType.STEP_COMPLETE.value],
    ).fetchall()
    by_step = {step: (reached, completed) for step, reached, completed in rows}
    steps = tuple(StepStats(s, *by_step.get(s, (0, 0))) for s in funnel.steps)
    return FunnelSummary(humans, bots, sessions, n_events, goals, steps)
