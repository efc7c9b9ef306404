"""Session signals: the one definition used offline (replaying history) and online (live state).

A session is folded event by event into a `SessionState`. `snapshot()` turns the state
into the stored feature row (what the server pushes to Feast and what offline replay writes
at each decision point); `derive()` computes the request-time signals (pause, time on
step, ...) from a snapshot and the decision time, in the Feast on-demand view and nowhere
else. `event_moments()` and `pause_moments()` are the micro-moment detectors: the same
code decides where training rows come from and where the simulated dispatcher calls.

Timestamps inside the state are epoch seconds (float): cheap to compare and storable as
Feast Float64 features.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from operator import attrgetter
from typing import NamedTuple

from core.vocabulary import MomentType
from features.config import SignalsConfig
from features.events import DEPTH_RANGE, SYSTEM_TYPES, EventType

NAN = math.nan


class Ev(NamedTuple):
    """The slice of an event that signals need (cheap to build from arrow columns or pydantic)."""

    ts: float  # epoch seconds
    type: str
    step: str | None = None
    target: str | None = None
    value: float | None = None
    user_agent: str | None = None  # user agent / client hints (assistive_reason only)


@dataclass(frozen=True, slots=True)
class Moment:
    """A candidate decision point: the dispatcher would call /score here."""

    type: MomentType
    ts: float
    step: str | None
    episode: str  # unique within the session: one trigger at most per episode


# Meaningful interactions reset the pause clock; system events and the session end do not.
_NOT_INTERACTIONS = SYSTEM_TYPES | {EventType.EXIT, EventType.GOAL, EventType.STEP_COMPLETE}
_TERMINAL = frozenset({EventType.EXIT, EventType.GOAL})


@dataclass(slots=True)
class SessionState:
    """Running accumulator of one session; `update` mutates it in place for speed.

    Step-level counters describe the current *step visit* (from entering a step until
    entering another one); session-level counters span the whole session.
    """

    session_id: str
    user_id: str | None = None
    # clocks (epoch seconds)
    started_at: float = NAN
    last_event_at: float = NAN
    last_interaction_at: float = NAN
    step_entered_at: float = NAN
    last_scroll_at: float = NAN
    # where the user is
    step: str | None = None
    step_visits: int = 0  # visits of the current step in this session (1 = first visit)
    reentered: bool = False  # current step was left incomplete earlier in the session
    # step-visit counters
    scroll_depth: float = 0.0  # max depth reached on the current screen
    scroll_velocity: float = 0.0  # depth change per second of the latest scroll
    cta_fails: int = 0
    clicks: int = 0  # click attempts, failed CTA clicks included
    secondary_clicks: int = 0  # clicks on anything but the primary CTA
    interactions: int = 0
    help_hover_s: float = 0.0
    field_errors: int = 0
    exit_intents: int = 0
    pauses: int = 0  # finished gaps >= the pause threshold
    max_pause_s: float = 0.0
    last_gap_s: float = NAN  # gap closed by the latest event (NaN: it closed none)
    # session counters
    events: int = 0
    steps_completed: int = 0
    help_opens: int = 0
    backs: int = 0
    rapid_backtracks: int = 0
    triggers_shown: int = 0
    ended: bool = False
    assistive: bool = False  # an event of the session carried the assistive flag (sticky)
    # evidence of assistive technology without the flag (assistive_reason; not model features)
    keyboard_events: int = 0
    pointer_events: int = 0  # scroll, hover
    long_pauses: int = 0  # finished gaps >= assistive.long_pause_s
    ua_hint: bool = False  # a user agent matched assistive.user_agent_patterns (sticky)
    # bookkeeping for detectors (not features)
    visits: dict[str, int] = field(default_factory=dict)
    completed: set[str] = field(default_factory=set)
    left_incomplete: set[str] = field(default_factory=set)
    fired: set[str] = field(default_factory=set)  # one-per-visit detectors already fired


def new_state(session_id: str, user_id: str | None = None) -> SessionState:
    """An empty state for a session that has not seen an event yet."""
    return SessionState(session_id=session_id, user_id=user_id)


def _enter_step(state: SessionState, step: str, ts: float) -> None:
    previous = state.step
    if previous is not None and previous not in state.completed:
        state.left_incomplete.add(previous)
    state.step = step
    state.step_entered_at = ts
    state.visits[step] = state.visits.get(step, 0) + 1
    state.step_visits = state.visits[step]
    state.reentered = step in state.left_incomplete
    for name, value in _STEP_RESETS:
        setattr(state, name, value)
    state.last_scroll_at = NAN
    state.fired = set()


def update(state: SessionState, ev: Ev, cfg: SignalsConfig) -> SessionState:
    """Fold one event into the state (events must arrive in timestamp order).

    Returns the same object, mutated: callers that need a frozen copy take `snapshot()`.
    """
    etype = ev.type
    ts = ev.ts
    state.events += 1
    state.last_gap_s = NAN
    if math.isnan(state.started_at):
        state.started_at = ts
    state.last_event_at = ts
    if etype == EventType.TRIGGER_SHOWN:
        state.triggers_shown += 1
    if etype in SYSTEM_TYPES:
        return state
    if ev.user_agent is not None and not state.ua_hint:
        state.ua_hint = user_agent_hint(ev.user_agent, tuple(cfg.assistive.user_agent_patterns))
    if etype in _TERMINAL:
        state.ended = True
        return state

    if ev.step is not None and ev.step != state.step:
        _enter_step(state, ev.step, ts)

    if etype == EventType.STEP_COMPLETE:
        if state.step is not None:
            state.completed.add(state.step)
            state.left_incomplete.discard(state.step)
        state.steps_completed += 1
        return state

    # A meaningful interaction: close the running gap, then count it.
    if state.last_interaction_at >= state.step_entered_at:  # the gap began on this visit
        gap = ts - state.last_interaction_at
        if gap >= cfg.pause_threshold_s:
            state.pauses += 1
        if gap >= cfg.assistive.long_pause_s:
            state.long_pauses += 1
        state.max_pause_s = max(state.max_pause_s, gap)
        state.last_gap_s = gap
    state.last_interaction_at = ts
    state.interactions += 1

    if etype == EventType.SCROLL:
        low, high = DEPTH_RANGE
        depth = min(max(ev.value if ev.value is not None else 0.0, low), high)
        since = state.last_scroll_at if not math.isnan(state.last_scroll_at) else None
        start = since if since is not None else state.step_entered_at
        previous_depth = state.scroll_depth
        dt = ts - start
        state.scroll_velocity = (depth - previous_depth) / dt if dt > 0 else 0.0
        state.scroll_depth = max(previous_depth, depth)
        state.last_scroll_at = ts
        state.pointer_events += 1
    elif etype == EventType.CLICK:
        state.clicks += 1
        if ev.target not in cfg.primary_targets:
            state.secondary_clicks += 1
    elif etype == EventType.CTA_FAIL:
        state.clicks += 1
        state.cta_fails += 1
    elif etype == EventType.HOVER:
        state.pointer_events += 1
        if ev.target in cfg.help_targets:
            state.help_hover_s += max(ev.value or 0.0, 0.0)
    elif etype == EventType.KEY:
        state.keyboard_events += 1
    elif etype == EventType.BACK:
        state.backs += 1
        if ts - state.step_entered_at <= cfg.moments.rapid_back_s:
            state.rapid_backtracks += 1
    elif etype == EventType.FIELD_ERROR:
        state.field_errors += 1
    elif etype == EventType.HELP_OPEN:
        state.help_opens += 1
    elif etype == EventType.EXIT_INTENT:
        state.exit_intents += 1
    return state


def replay(
    session_id: str, events: Iterable[Ev], cfg: SignalsConfig, user_id: str | None = None
) -> SessionState:
    """Fold a whole (sorted) event sequence; the offline path for one session."""
    state = new_state(session_id, user_id)
    for ev in events:
        update(state, ev, cfg)
    return state


# --- assistive technology ------------------------------------------------------------------


@lru_cache(maxsize=4096)
def user_agent_hint(user_agent: str, patterns: tuple[str, ...]) -> bool:
    """The user agent (or a client-hint string) names an assistive technology."""
    return any(re.search(p, user_agent, re.IGNORECASE) for p in patterns)


def assistive_reason(state: SessionState, cfg: SignalsConfig) -> str | None:
    """Why the session is read as using assistive technology, or None: the explicit flag, a
    user-agent hint, keyboard-only navigation, or long pauses without a pointer. The one
    definition: the server's guard, the bot rules, the simulator's dispatcher all call it.

    The behavioural criteria need a session without a single pointer event (scroll, hover):
    a sighted user who tabs through a form still scrolls, a screen-reader user never does.
    """
    if state.assistive:
        return "flag"
    if state.ua_hint:
        return "user_agent"
    if state.pointer_events > 0:
        return None
    a = cfg.assistive
    if (
        a.keyboard_only_min_events is not None
        and state.keyboard_events >= a.keyboard_only_min_events
    ):
        return "keyboard_only"
    if a.long_pauses_min is not None and state.long_pauses >= a.long_pauses_min:
        return "long_pauses_without_pointer"
    return None


# --- the signal table ----------------------------------------------------------------------


class SignalKind(StrEnum):
    """How a signal is kept and served."""

    CLOCK = "clock"  # epoch seconds in the stored row: an input of `derive`, never a feature
    COUNTER = "counter"  # folded by `update`, stored, served as is
    DERIVED = "derived"  # `derive`: from the stored row and the decision time
    USER_DERIVED = "user_derived"  # `derive_user`: from the user's stored row and the time


class Scope(StrEnum):
    """What resets a state signal: entering another step, or nothing before the session ends."""

    STEP = "step"
    SESSION = "session"


@dataclass(frozen=True, slots=True)
class SignalSpec:
    """One signal: what it is, how it is kept, and what values can mean anything at all.

    `reset` is the value a step-scoped signal takes on entering a step (None: `_enter_step`
    sets it itself). `low`..`high` is the physical range the API accepts (not a product
    threshold: thresholds live in configs/).
    """

    name: str
    kind: SignalKind
    scope: Scope | None = None  # state signals only
    reset: float | None = None
    low: float = 0.0
    high: float = math.inf

    @property
    def served(self) -> bool:
        """A model feature (clocks are inputs only)."""
        return self.kind is not SignalKind.CLOCK

    @property
    def requestable(self) -> bool:
        """The dispatcher may send it with a /score request (overriding the stored value)."""
        return self.kind in (SignalKind.COUNTER, SignalKind.DERIVED)


_C, _K, _D = SignalKind.CLOCK, SignalKind.COUNTER, SignalKind.DERIVED
_STEP, _SESSION = Scope.STEP, Scope.SESSION
_INF = math.inf

# The one table. Order is the stored row's column order (Feast schemas follow it).
SIGNALS: tuple[SignalSpec, ...] = (
    SignalSpec("started_at", _C, _SESSION),
    SignalSpec("step_entered_at", _C, _STEP),
    SignalSpec("last_interaction_at", _C, _SESSION),
    SignalSpec("step_visits", _K, _STEP),  # visits of the current step (1 = first)
    SignalSpec("reentered", _K, _STEP, high=1.0),  # the step was left incomplete before
    SignalSpec("scroll_depth", _K, _STEP, reset=0.0, high=100.0),  # max % on this screen
    SignalSpec("scroll_velocity", _K, _STEP, reset=0.0, low=-_INF),  # negative: back up
    SignalSpec("cta_fails", _K, _STEP, reset=0),
    SignalSpec("clicks", _K, _STEP, reset=0),  # failed CTA clicks included
    SignalSpec("secondary_clicks", _K, _STEP, reset=0),  # anything but the primary CTA
    SignalSpec("interactions", _K, _STEP, reset=0),
    SignalSpec("help_hover_s", _K, _STEP, reset=0.0),
    SignalSpec("field_errors", _K, _STEP, reset=0),
    SignalSpec("exit_intents", _K, _STEP, reset=0),
    SignalSpec("pauses", _K, _STEP, reset=0),  # finished gaps >= the pause threshold
    SignalSpec("max_pause_s", _K, _STEP, reset=0.0),
    SignalSpec("events", _K, _SESSION),
    SignalSpec("steps_completed", _K, _SESSION),
    SignalSpec("help_opens", _K, _SESSION),
    SignalSpec("backs", _K, _SESSION),
    SignalSpec("rapid_backtracks", _K, _SESSION),
    SignalSpec("triggers_shown", _K, _SESSION),
    SignalSpec("pause_s", _D),  # since the last meaningful interaction
    SignalSpec("time_on_step_s", _D),
    SignalSpec("session_duration_s", _D),
    SignalSpec("click_rate", _D, high=1.0),
    SignalSpec("reentry_pause", _D, high=1.0),  # re-entered the step, then paused
    SignalSpec("pause_rel_step", _D),  # pause / the step's typical pause
    SignalSpec("user_days_since_first_seen", SignalKind.USER_DERIVED),
)
SIGNAL_SPECS: dict[str, SignalSpec] = {spec.name: spec for spec in SIGNALS}


def _names(kind: SignalKind) -> tuple[str, ...]:
    return tuple(spec.name for spec in SIGNALS if spec.kind is kind)


def signal_range(name: str) -> tuple[float, float]:
    """The values a signal can take at all (what the API accepts)."""
    spec = SIGNAL_SPECS[name]
    return spec.low, spec.high


# --- stored feature row -------------------------------------------------------------------

# Fields of the stored session row, in order. Clock fields are epoch seconds: they are not
# model features themselves, `derive()` turns them into durations at decision time.
SNAPSHOT_CLOCKS: tuple[str, ...] = _names(SignalKind.CLOCK)
SNAPSHOT_COUNTERS: tuple[str, ...] = _names(SignalKind.COUNTER)
SNAPSHOT_FIELDS: tuple[str, ...] = SNAPSHOT_CLOCKS + SNAPSHOT_COUNTERS
# Signals the dispatcher may send with a request.
REQUEST_SIGNALS: frozenset[str] = frozenset(spec.name for spec in SIGNALS if spec.requestable)
# What entering a step resets (the rest of the step-scoped state is set by `_enter_step`).
_STEP_RESETS: tuple[tuple[str, float], ...] = tuple(
    (spec.name, spec.reset) for spec in SIGNALS if spec.scope is _STEP and spec.reset is not None
)


_snapshot_values = attrgetter(*SNAPSHOT_FIELDS)


def snapshot(state: SessionState) -> dict[str, float]:
    """The stored session feature row (all float, NaN where a clock has not started)."""
    return dict(zip(SNAPSHOT_FIELDS, map(float, _snapshot_values(state)), strict=True))


# --- request-time signals ----------------------------------------------------------------

DERIVED_FIELDS: tuple[str, ...] = _names(SignalKind.DERIVED)


def derive(
    snap: Mapping[str, float],
    now: float,
    cfg: SignalsConfig,
    step_typical_pause_s: float | None = None,
) -> dict[str, float]:
    """Signals that depend on the decision time, from a stored row and `now` (epoch s).

    NaN means "not observed" (no interaction yet, unknown step statistics); LightGBM and
    the rules treat it as missing.
    """
    pause = _since(now, snap["last_interaction_at"])
    interactions = snap["interactions"]
    typical = step_typical_pause_s
    return {
        "pause_s": pause,
        "time_on_step_s": _since(now, snap["step_entered_at"]),
        "session_duration_s": _since(now, snap["started_at"]),
        "click_rate": snap["clicks"] / interactions if interactions > 0 else NAN,
        "reentry_pause": float(bool(snap["reentered"]) and pause >= cfg.pause_threshold_s),
        "pause_rel_step": pause / typical
        if typical is not None and typical > 0 and not math.isnan(typical)
        else NAN,
    }


# Request-time signals of the user (not the session): they need the user's stored row only.
USER_FIRST_SEEN = "user_first_seen_at"  # a stored clock, input only (feast_defs.is_clock)
USER_DERIVED_FIELDS: tuple[str, ...] = _names(SignalKind.USER_DERIVED)
_SECONDS_PER_DAY = 86_400.0


def derive_user(now: float, first_seen_at: float) -> dict[str, float]:
    """User signals at `now` from the stored first-seen clock (NaN: user not known yet).

    Tenure as a decision-time difference, never the clock itself: a model given the raw clock
    could learn the calendar instead of behaviour.
    """
    return {"user_days_since_first_seen": _since(now, first_seen_at) / _SECONDS_PER_DAY}


def _since(now: float, then: float) -> float:
    return NAN if math.isnan(then) else max(now - then, 0.0)


# --- micro-moment detectors ---------------------------------------------------------------


def _once(state: SessionState, kind: MomentType, ts: float) -> Moment | None:
    """A one-per-step-visit moment, or None when it already fired on this visit."""
    if kind in state.fired:
        return None
    state.fired.add(kind)
    return Moment(kind, ts, state.step, f"{kind}@{state.step}#{state.step_visits}")


def event_moments(state: SessionState, ev: Ev, cfg: SignalsConfig) -> list[Moment]:
    """Moments an event triggers; call right after `update(state, ev)`.

    Marks one-per-visit detectors as fired, so call it exactly once per event. A step
    already completed in the session is no candidate (as in `pause_moments`): the label asks
    whether the step gets completed, which it already is.
    """
    if (
        state.ended
        or ev.type in SYSTEM_TYPES
        or state.step is None
        or state.step in state.completed
    ):
        return []
    m = cfg.moments
    found: list[Moment | None] = []
    etype = ev.type
    if etype == EventType.CTA_FAIL and state.cta_fails >= m.cta_fail_min:
        found.append(_once(state, MomentType.CTA_FAIL, ev.ts))
    if (
        etype in m.shallow_scroll_on
        and state.scroll_depth < m.shallow_scroll_max_depth
        and state.step not in state.completed
    ):
        found.append(_once(state, MomentType.SHALLOW_SCROLL, ev.ts))
    if etype == EventType.BACK and ev.ts - state.step_entered_at <= m.rapid_back_s:
        # the rapid back itself is the moment; each one is its own episode
        found.append(Moment(MomentType.BACKTRACK, ev.ts, state.step, f"backtrack@{state.backs}"))
    if (
        state.interactions >= m.low_click_rate_min_interactions
        and state.clicks / state.interactions < m.low_click_rate_max
    ):
        found.append(_once(state, MomentType.LOW_CLICK_RATE, ev.ts))
    if state.help_hover_s >= m.help_hover_min_s:
        found.append(_once(state, MomentType.HELP_HOVER, ev.ts))
    return [moment for moment in found if moment is not None]


def pause_moments(state: SessionState, until: float, cfg: SignalsConfig) -> list[Moment]:
    """Pause checkpoints in [latest event, `until`) (the next event, or the session's end).

    A pause episode is the gap after one interaction; the dispatcher calls at each
    checkpoint (12 s, 30 s by default) that the gap reaches, all with the same episode id.
    Checkpoints before the latest folded event were due before it, so calling this before
    every event (system events, which do not end the gap, included) yields each one once.
    """
    if state.ended or state.step is None or math.isnan(state.last_interaction_at):
        return []
    if state.step in state.completed:
        return []
    start = state.last_interaction_at
    since = state.last_event_at
    episode = f"pause@{start:.3f}"
    return [
        Moment(MomentType.PAUSE, start + c, state.step, episode)
        for c in cfg.moments.pause_checkpoints_s
        if since <= start + c < until
    ]
