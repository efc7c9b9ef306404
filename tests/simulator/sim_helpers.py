"""Helpers of the simulator tests: configs, test policies, an offline replay, funnel outcomes."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.compute as pc

from core.settings import load_config
from core.vocabulary import ActionType, MomentType, Outcome
from features.config import FunnelConfig, SignalsConfig
from features.signals import Ev, Moment, event_moments, new_state, pause_moments, snapshot, update
from features.simulator.config import SimulatorConfig
from features.simulator.hook import Intervention, MomentContext

REPO_CONFIGS = Path(__file__).resolve().parents[2] / "configs"
START = date(2025, 1, 1)


@dataclass(frozen=True)
class Configs:
    sim: SimulatorConfig
    signals: SignalsConfig
    funnel: FunnelConfig

    @classmethod
    def load(cls) -> Configs:
        return cls(
            load_config(SimulatorConfig, REPO_CONFIGS / SimulatorConfig.file_name),
            load_config(SignalsConfig, REPO_CONFIGS / SignalsConfig.file_name),
            load_config(FunnelConfig, REPO_CONFIGS / FunnelConfig.file_name),
        )


# --- test policies ------------------------------------------------------------------------

# The source document's matches: tooltip for CTA failures, walkthrough for very shallow scroll,
# a tip for a pause (live chat once it passes 30 s), a micro-video for a low click rate.
MATCHED: dict[MomentType, ActionType] = {
    MomentType.CTA_FAIL: ActionType.TOOLTIP,
    MomentType.SHALLOW_SCROLL: ActionType.WALKTHROUGH,
    MomentType.LOW_CLICK_RATE: ActionType.MICRO_VIDEO,
    MomentType.BACKTRACK: ActionType.GUIDE,
    MomentType.HELP_HOVER: ActionType.CONTEXTUAL_TIP,
    MomentType.PAUSE: ActionType.CONTEXTUAL_TIP,
}
# Everything wrong: walkthroughs for doubts, videos for forms, tooltips for lost users.
MISMATCHED: dict[MomentType, ActionType] = {
    MomentType.CTA_FAIL: ActionType.WALKTHROUGH,
    MomentType.SHALLOW_SCROLL: ActionType.TOOLTIP,
    MomentType.LOW_CLICK_RATE: ActionType.TOOLTIP,
    MomentType.BACKTRACK: ActionType.TOOLTIP,
    MomentType.HELP_HOVER: ActionType.WALKTHROUGH,
    MomentType.PAUSE: ActionType.WALKTHROUGH,
}


def matched_action(ctx: MomentContext) -> ActionType:
    if ctx.moment.type == MomentType.PAUSE and ctx.now - ctx.state.last_interaction_at >= 30:
        return ActionType.LIVE_CHAT
    return MATCHED[ctx.moment.type]


@dataclass
class TestPolicy:
    """Shows `choose(ctx)` at every call (or at most once per episode and `per_day` a day)
    and records every call and observation."""

    choose: object  # Callable[[MomentContext], ActionType]
    per_day: int | None = None
    calls: list[MomentContext] = field(default_factory=list)
    observed: list[tuple[str, Outcome, float]] = field(default_factory=list)
    _episodes: set[tuple[str, str]] = field(default_factory=set)
    _days: dict[tuple[str, date], int] = field(default_factory=lambda: defaultdict(int))

    __test__ = False  # not a pytest class

    def decide(self, ctx: MomentContext) -> Intervention:
        self.calls.append(ctx)
        decision_id = f"d{len(self.calls)}"
        if self.per_day is not None:
            day = (ctx.user_id, datetime.fromtimestamp(ctx.now, ZoneInfo(ctx.tz)).date())
            episode = (ctx.session_id, ctx.moment.episode)
            if episode in self._episodes or self._days[day] >= self.per_day:
                return Intervention(ActionType.NONE, decision_id)
            self._episodes.add(episode)
            self._days[day] += 1
        return Intervention(self.choose(ctx), decision_id, arm="test")

    def observe(self, decision_id: str, outcome: Outcome, now: float) -> None:
        self.observed.append((decision_id, outcome, now))


# --- offline replay -----------------------------------------------------------------------


@dataclass(frozen=True)
class Point:
    """A decision point found by replaying events through the signal detectors."""

    session_id: str
    user_id: str
    device: str
    moment: Moment
    snap: dict[str, float]


def epoch_seconds(ts: pa.ChunkedArray) -> list[float]:
    """Timestamps as the epoch seconds the engine used (microseconds / 1e6)."""
    return (pc.cast(ts, pa.int64()).to_numpy() / 1e6).tolist()


def replay(events: pa.Table, signals: SignalsConfig) -> list[Point]:
    """Every moment the detectors find in `events`, each pause checkpoint once."""
    ev = events.sort_by(
        [("session_id", "ascending"), ("ts", "ascending"), ("event_id", "ascending")]
    )
    ts = epoch_seconds(ev["ts"])
    cols = {
        c: ev[c].to_pylist()
        for c in ("session_id", "user_id", "device", "type", "step", "target", "value")
    }
    points: list[Point] = []
    state = None
    seen: set[tuple[str, float]] = set()
    for i, at in enumerate(ts):
        sid = cols["session_id"][i]
        if state is None or state.session_id != sid:
            state, seen = new_state(sid), set()
        e = Ev(at, cols["type"][i], cols["step"][i], cols["target"][i], cols["value"][i])
        found = [m for m in pause_moments(state, at, signals) if (m.episode, m.ts) not in seen]
        seen.update((m.episode, m.ts) for m in found)
        update(state, e, signals)
        found += event_moments(state, e, signals)
        points.extend(
            Point(sid, cols["user_id"][i], cols["device"][i], m, snapshot(state)) for m in found
        )
    return points


# --- outcomes -----------------------------------------------------------------------------


def completed_steps(events: pa.Table) -> set[tuple[str, str]]:
    """(session_id, step) pairs completed in that session."""
    done = events.filter(pc.equal(events["type"], "step_complete"))
    return set(zip(done["session_id"].to_pylist(), done["step"].to_pylist(), strict=True))


def humans(result) -> set[str]:
    users = result.users
    return set(pc.filter(users["user_id"], pc.invert(users["is_bot"])).to_pylist())
