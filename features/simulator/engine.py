"""The simulation run: users' sessions over days, the policy hook, and the output tables.

Each user is a process (a Python generator) that plays their sessions step attempt by step
attempt. Without a policy the processes never pause and run one after the other, without
the signal detectors (fast path). With a policy, each session's events are folded through
`features.signals` as they happen; at every detected micro-moment the process yields a
`Decide` request and waits for the policy's `Intervention`. A scheduler answers the
requests of all users in time order, so a policy with global state (caps, experiments, a
learning bandit) sees the world as the server would.
"""

from __future__ import annotations

import copy
import gc
import heapq
import itertools
import json
from collections import deque
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from functools import partial

import pyarrow as pa

from core.vocabulary import ActionType, Outcome
from features.config import FunnelConfig, SignalsConfig
from features.signals import (
    Ev,
    Moment,
    SessionState,
    event_moments,
    new_state,
    pause_moments,
    update,
)
from features.simulator.behaviour import (
    AWAY,
    COMMIT,
    EXIT,
    FINAL,
    FINALIZE,
    GOAL,
    OUTCOME,
    PLAIN,
    POINTER_TYPES,
    STEP_COMPLETE,
    TRIGGER_OUTCOME,
    TRIGGER_SHOWN,
    VIEW,
    Attempt,
    Entry,
    StepPicks,
    assistive_plan,
    bot_attempt,
    bot_entries,
    bot_tick,
    enter_attempt,
    final_entries,
    plan_attempt,
    recovery_entries,
    step_picks,
)
from features.simulator.config import STUCK, Need, SimulatorConfig, check_compatible
from features.simulator.hook import Intervention, MomentContext, Policy
from features.simulator.population import PopulationPicks, User, draw_user, zone
from features.simulator.randomness import Draws, Purpose, UserStreams
from features.simulator.response import Response, ignored, respond
from features.simulator.tables import (
    EventRow,
    OracleRow,
    events_table,
    oracle_table,
    users_table,
)


@dataclass(frozen=True, slots=True)
class Decide:
    """A process asks the policy what to show at a micro-moment."""

    now: float
    ctx: MomentContext


@dataclass(frozen=True, slots=True)
class Observe:
    """A process reports what came of a shown intervention."""

    now: float
    decision_id: str
    outcome: Outcome


Request = Decide | Observe
Process = Generator[Request, Intervention | None, None]


@dataclass(frozen=True)
class SimulationResult:
    """Tables of one run. `users` and `oracle` are for evaluation only, never features."""

    events: pa.Table  # canonical event columns (features.events.EVENT_SCHEMA)
    users: pa.Table  # latent traits and realised outcomes per user
    oracle: pa.Table  # session_id, step, step_visit, ts_from, p_abandon
    start: datetime  # the simulated period, UTC (sessions may run a little past `end`)
    end: datetime
    seed: int


def period(start: date | datetime | None, days: int) -> tuple[datetime, datetime]:
    """The simulated period: from `start` (UTC midnight) or ending at today's UTC midnight."""
    if start is None:
        end = datetime.combine(datetime.now(UTC).date(), time(0), tzinfo=UTC)
        return end - timedelta(days=days), end
    day = start.date() if isinstance(start, datetime) else start
    begin = datetime.combine(day, time(0), tzinfo=UTC)
    return begin, begin + timedelta(days=days)


def simulate(
    sim_cfg: SimulatorConfig,
    signals_cfg: SignalsConfig,
    funnel: FunnelConfig,
    users: int,
    days: int,
    seed: int,
    start: date | datetime | None = None,
    policy: Policy | None = None,
    progress: Callable[[int], None] | None = None,
) -> SimulationResult:
    """Simulate `users` users arriving over `days` days, deterministic for `seed`.

    `start` defaults to the config's `start_date`, and when that is null too, the period
    ends at today's UTC midnight. With `policy`, it is called at every detected moment (in
    time order across users) and its interventions change what users do. `progress` is
    called with 1 for every user finished.
    """
    if users < 1:
        raise ValueError(f"users must be >= 1 (got {users})")
    if days < 1:
        raise ValueError(f"days must be >= 1 (got {days})")
    check_compatible(sim_cfg, funnel, signals_cfg)
    begin, end = period(start if start is not None else sim_cfg.start_date, days)
    run = Run(sim_cfg, signals_cfg, funnel, seed, begin, end, policy is not None)
    with _gc_paused():
        sims = [UserSim(run, i, days) for i in range(users)]
        people = [s.user for s in sims]
        if policy is None:
            for sim in sims:
                for _ in sim.process():
                    raise AssertionError("a run without policy never asks for decisions")
                if progress is not None:
                    progress(1)
        else:
            _schedule(sims, policy, progress)
        return SimulationResult(
            events=events_table(run.rows, people),
            users=users_table(people, [s.outcome() for s in sims]),
            oracle=oracle_table(run.oracle),
            start=begin,
            end=end,
            seed=seed,
        )


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while the run allocates millions of small tuples.

    They hold no reference cycles (reference counting frees what is dropped), but each
    full collection walks all of them: a third of the run time. Restored afterwards.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _within(user: User, run: Run) -> User:
    """Fold an arrival that a time zone pushed outside the period back into it."""
    span = run.end_ts - run.start_ts
    arrival = run.start_ts + (user.arrival - run.start_ts) % span
    return user if arrival == user.arrival else replace(user, arrival=arrival)


def _schedule(sims: list[UserSim], policy: Policy, progress: Callable[[int], None] | None) -> None:
    """Answer every process's requests in time order (ties: user index, then request order)."""
    heap: list[tuple[float, int, int, Request, Process]] = []
    order = itertools.count()

    def advance(index: int, proc: Process, reply: Intervention | None) -> None:
        try:
            request = proc.send(reply)
        except StopIteration:
            if progress is not None:
                progress(1)
            return
        heapq.heappush(heap, (request.now, index, next(order), request, proc))

    for sim in sims:
        advance(sim.user.index, sim.process(), None)
    while heap:
        _, index, _, request, proc = heapq.heappop(heap)
        if isinstance(request, Decide):
            advance(index, proc, policy.decide(request.ctx))
        else:
            policy.observe(request.decision_id, request.outcome, request.now)
            advance(index, proc, None)


class Run:
    """What every user process of one run shares: configs, the period, the output rows."""

    def __init__(
        self,
        cfg: SimulatorConfig,
        signals: SignalsConfig,
        funnel: FunnelConfig,
        seed: int,
        start: datetime,
        end: datetime,
        with_policy: bool,
    ) -> None:
        self.cfg = cfg
        self.signals = signals
        self.funnel = funnel
        self.steps = funnel.steps
        self.seed = seed
        self.start_ts = start.timestamp()
        self.end_ts = end.timestamp()
        self.with_policy = with_policy
        self.first_pause_s = signals.moments.pause_checkpoints_s[0]
        self.population = PopulationPicks.of(cfg.population)
        self.step_picks: dict[str, StepPicks] = step_picks(cfg)
        self.rows: list[EventRow] = []
        self.oracle: list[OracleRow] = []


def _no_prior() -> pa.Table:
    return events_table([], {})


@dataclass(slots=True)
class SessionCursor:
    """Where a user is inside the current session."""

    number: int  # 0-based session index of the user
    session_id: str
    state: SessionState | None  # live signals (policy runs only)
    events: int = 0
    last_ts: float = 0.0  # time of the latest event
    step: str | None = None
    visits: dict[str, int] = field(default_factory=dict)
    seen_pauses: set[tuple[str, float]] = field(default_factory=set)
    prior_events: Callable[[], pa.Table] = _no_prior  # the user's events before this session


class UserSim:
    """One user's process: sessions until the goal, giving up, or the end of the period."""

    def __init__(self, run: Run, index: int, days: int) -> None:
        self.run = run
        self.streams = UserStreams(run.seed, index)
        rng = self.streams.stream(Purpose.USER)
        start = datetime.fromtimestamp(run.start_ts, UTC)
        self.user = _within(draw_user(run.cfg, run.population, index, start, days, rng), run)
        self.next_step = 0  # index of the first step not completed yet
        self.sessions = 0
        self.completed = False
        self.stuck_at: set[str] = set()  # steps where the user was last left stuck
        self.breaks: set[str] = set()  # steps where the user left on purpose already
        self.trigger_days: list[date] = []
        self.rows: list[EventRow] = []  # own rows (policy runs: prior events for the policy)
        self.cur = SessionCursor(0, "", None)
        self._prior_cache: tuple[int, pa.Table] | None = None
        self._response: tuple[tuple[int, int], Draws] | None = None
        self._last_ev: Ev | None = None
        self._last_oracle: tuple[tuple[str, str, int], float, str] | None = None

    def outcome(self) -> tuple[int, bool, str | None, int]:
        """(sessions, completed, furthest step reached, triggers shown)."""
        steps = self.run.steps
        furthest = steps[min(self.next_step, len(steps) - 1)] if self.sessions else None
        return self.sessions, self.completed, furthest, len(self.trigger_days)

    # --- sessions --------------------------------------------------------------------------

    def process(self) -> Process:
        run, user = self.run, self.user
        cfg = run.cfg
        t = user.arrival
        if user.is_bot:
            limit = self.streams.stream(Purpose.SESSION, 0, 1).integer(cfg.bots.sessions)
        else:
            limit = cfg.sessions.max_sessions
        for k in range(limit):
            if t >= run.end_ts:
                break
            t, last_need = yield from self.session(k, t)
            if self.completed:
                break
            rng = self.streams.stream(Purpose.SESSION, k)
            if user.is_bot:
                back, delay = True, rng.lognormal(cfg.sessions.return_delay_h)
            elif last_need == Need.BREAK:
                back = rng.chance(cfg.sessions.break_return_prob)
                delay = rng.lognormal(cfg.sessions.break_delay_h)
            else:
                back = rng.chance(user.return_prob * cfg.sessions.return_decay**k)
                delay = rng.lognormal(cfg.sessions.return_delay_h)
            if not back:
                break
            t += delay * 3600.0

    def session(
        self, k: int, t: float
    ) -> Generator[Request, Intervention | None, tuple[float, Need]]:
        run, user, cfg = self.run, self.user, self.run.cfg
        self.sessions += 1
        sid = f"{user.user_id}-{k + 1}"
        state = new_state(sid, user.user_id) if run.with_policy else None
        if state is not None:
            state.assistive = user.assistive_flagged  # the flag is on every event
        self.cur = SessionCursor(
            k, sid, state, prior_events=partial(self._prior_events, len(self.rows))
        )
        carried = 0.0
        while True:
            index = self.next_step
            step = run.steps[index]
            previous = run.steps[index - 1] if index > 0 else None
            rng = self.streams.stream(Purpose.ATTEMPT, k, index)
            if user.is_bot:
                stop = step == cfg.bots.stop_step
                attempt = bot_attempt(step, index, stop)
                plan = bot_entries(cfg, user, step, stop, rng)
            else:
                attempt = enter_attempt(
                    cfg,
                    run.step_picks,
                    user,
                    step,
                    index,
                    k,
                    stuck_before=step in self.stuck_at,
                    may_break=step not in self.breaks,
                    carried_annoyance=carried,
                    rng=rng,
                )
                plan = plan_attempt(cfg, attempt, user, previous, rng)
                if user.assistive:
                    plan = assistive_plan(cfg, plan)
            t, done = yield from self.attempt(attempt, plan, t, rng)
            if attempt.need == Need.BREAK:
                self.breaks.add(step)
            if attempt.need in STUCK and not attempt.helped:
                self.stuck_at.add(step)
            else:
                self.stuck_at.discard(step)
            if not done:
                return t, attempt.need
            self.next_step += 1
            if self.next_step == len(run.steps):
                t += rng.lognormal(cfg.behaviour.submit_s)
                self.emit(t, GOAL, step, run.funnel.name, None)
                self.completed = True
                return t, attempt.need
            carried = attempt.annoy * cfg.response.carry
            if user.is_bot:
                t += bot_tick(cfg, user, rng)
            else:
                t += rng.lognormal(cfg.sessions.next_step_gap_s)

    # --- one step attempt ------------------------------------------------------------------

    def attempt(
        self, a: Attempt, entries: list[Entry], t: float, rng: Draws
    ) -> Generator[Request, Intervention | None, tuple[float, bool]]:
        """Play a step attempt from entering the step; returns (end time, step completed)."""
        cfg, user = self.run.cfg, self.user
        with_policy = self.run.with_policy
        plan: deque[Entry] = deque(entries)
        t = self.emit(t, VIEW, a.step, None, None)
        self.oracle(a, t)
        while plan:
            entry = plan.popleft()
            gap, etype, step, target, value, tag, note = entry
            if tag & FINALIZE:
                plan.extendleft(reversed(final_entries(cfg, a, user, gap, tag, rng)))
                continue
            t_next = t + gap
            if tag & AWAY:
                a.away_until = t_next
            if with_policy:
                shown = yield from self.pause_decisions(a, plan, entry, t_next, rng)
                if shown is not None:
                    t = shown
                    continue
            if tag & OUTCOME:
                t = self.emit(t_next, TRIGGER_OUTCOME, self.cur.step, target, None, _props(note))
                self.oracle(a, t)
                if with_policy:
                    yield Observe(t, note, Outcome(target))
                continue
            t = self.emit(t_next, etype, step or a.step, target, value)
            if etype == VIEW and step is None:  # back on the attempt's step: a new visit
                self.oracle(a, t)
            if tag & COMMIT:
                a.committed = True
                self.oracle(a, t)
            if etype in (STEP_COMPLETE, EXIT):
                done = etype == STEP_COMPLETE
                if with_policy:
                    result = Outcome.STEP_COMPLETED if done else Outcome.ABANDONED
                    for decision_id in a.decisions:
                        yield Observe(t, decision_id, result)
                return t, done
            if with_policy and self.cur.state is not None and self._last_ev is not None:
                found = event_moments(self.cur.state, self._last_ev, self.run.signals)
                # Every moment of one event is decided on the state as of that event: a
                # trigger shown for the first is stamped display_latency_s later, so the
                # live state must not pass it to the second (an event from the future).
                # A shallow copy suffices: a trigger_shown only changes scalar fields.
                as_of = copy.copy(self.cur.state) if len(found) > 1 else None
                for moment in found:
                    shown = yield from self.decide(a, moment, plan, rng, as_of)
                    if shown is not None:
                        t = shown
        raise AssertionError("a step attempt plan always ends the step or the session")

    def pause_decisions(
        self, a: Attempt, plan: deque[Entry], entry: Entry, t_next: float, rng: Draws
    ) -> Generator[Request, Intervention | None, float | None]:
        """Decide at each pause checkpoint before `t_next`; the shown time if one was shown.

        `entry` (due at `t_next`) goes back to the front of the plan while deciding, so an
        intervention rewrites it like any other pending action.
        """
        cur = self.cur
        state = cur.state
        assert state is not None
        if not t_next - state.last_interaction_at >= self.run.first_pause_s:
            return None  # the gap cannot reach a checkpoint (or no interaction yet: NaN)
        for moment in pause_moments(state, t_next, self.run.signals):
            key = (moment.episode, moment.ts)
            if key in cur.seen_pauses:
                continue
            cur.seen_pauses.add(key)
            plan.appendleft(entry)
            shown = yield from self.decide(a, moment, plan, rng)
            if shown is not None:
                return shown
            plan.popleft()
        return None

    def decide(
        self,
        a: Attempt,
        moment: Moment,
        plan: deque[Entry],
        rng: Draws,
        state: SessionState | None = None,
    ) -> Generator[Request, Intervention | None, float | None]:
        """Ask the policy; show what it chose. Returns the time it was shown, if it was.

        `state` is the session state to show the policy (default: the live one).
        """
        cur, user = self.cur, self.user
        assert cur.state is not None
        ctx = MomentContext(
            user_id=user.user_id,
            session_id=cur.session_id,
            now=moment.ts,
            moment=moment,
            state=state if state is not None else cur.state,
            tz=user.tz,
            device=user.device,
            channel=user.channel,
            prior_events=cur.prior_events,
        )
        choice = yield Decide(moment.ts, ctx)
        if choice is None or choice.action == ActionType.NONE:
            return None
        return self.intervene(a, choice, moment, plan, rng)

    def intervene(
        self, a: Attempt, choice: Intervention, moment: Moment, plan: deque[Entry], rng: Draws
    ) -> float:
        """Show a trigger, draw the user's response, and rewrite what they do next."""
        user, cfg = self.user, self.run.cfg
        last = self.cur.last_ts  # the plan's gaps count from here
        props = json.dumps(
            {"decision_id": choice.decision_id, "moment": str(moment.type), "arm": choice.arm},
            separators=(",", ":"),
        )
        shown = self.emit(
            moment.ts + cfg.response.display_latency_s,
            TRIGGER_SHOWN,
            self.cur.step,
            str(choice.action),
            None,
            props,
        )
        a.decisions.append(choice.decision_id)
        today = datetime.fromtimestamp(shown, zone(user.tz)).date()
        shown_today = sum(1 for d in self.trigger_days if d == today)
        self.trigger_days.append(today)
        if user.is_bot:
            response = ignored(user.tick_s)
        else:
            response = respond(
                cfg.response,
                choice.action,
                a.need if a.needed_help else Need.NONE,
                mistimed=a.committed or shown < a.away_until,
                receptivity=user.receptivity,
                annoyance=user.annoyance,
                shown_today=shown_today,
                rng=self._response_rng(a),
            )
        react_at = max(shown, a.away_until) + response.reaction_s
        elsewhere = self.cur.step != a.step  # on the previous screen (a backtrack)
        _rewrite(cfg, a, user, response, plan, last, react_at, elsewhere, rng)
        outcome = str(response.outcome)
        plan.appendleft(
            (react_at - shown, TRIGGER_OUTCOME, None, outcome, None, OUTCOME, choice.decision_id)
        )
        return shown

    def _response_rng(self, a: Attempt) -> Draws:
        """The attempt's response stream (created on the first intervention only)."""
        key = (self.cur.number, a.index)
        if self._response is None or self._response[0] != key:
            rng = self.streams.stream(Purpose.RESPONSE, self.cur.number, a.index)
            self._response = (key, rng)
        return self._response[1]

    # --- output ----------------------------------------------------------------------------

    def emit(
        self,
        ts: float,
        etype: str,
        step: str | None,
        target: str | None,
        value: float | None,
        props: str | None = None,
    ) -> float:
        """Record one event at `ts` (rounded to the microsecond); returns the rounded time.

        Event ids `s<seed>-<session>-<n>` are the same when a seed is re-run (re-imports are
        idempotent), differ across seeds, and sort like time within a session (the replay
        breaks timestamp ties by event id).
        """
        cur = self.cur
        us = round(ts * 1_000_000)
        ts = us / 1_000_000
        if self.user.assistive and etype in POINTER_TYPES:
            return ts  # keyboard / screen reader: the pointer never moves, nothing to record
        cur.events += 1
        cur.last_ts = ts
        event_id = f"s{self.run.seed}-{cur.session_id}-{cur.events:05d}"
        row = (self.user.index, event_id, cur.session_id, us, etype, step, target, value, props)
        self.run.rows.append(row)
        if etype == VIEW:
            cur.step = step
            cur.visits[step] = cur.visits.get(step, 0) + 1
        if cur.state is not None:
            self.rows.append(row)
            ev = Ev(ts, etype, step, target, value)
            update(cur.state, ev, self.run.signals)
            self._last_ev = ev
        return ts

    def oracle(self, a: Attempt, ts: float) -> None:
        """Record the attempt's p when it differs from the last row of this visit."""
        cur = self.cur
        visit = cur.visits.get(a.step, 0)
        p = a.p()
        need = str(a.need if a.needed_help else Need.NONE)
        key = (cur.session_id, a.step, visit)
        if self._last_oracle == (key, p, need):
            return
        self._last_oracle = (key, p, need)
        self.run.oracle.append((cur.session_id, a.step, visit, round(ts * 1_000_000), p, need))

    def _prior_events(self, cut: int) -> pa.Table:
        """The user's first `cut` events: those before a session (MomentContext.prior_events)."""
        if self._prior_cache is None or self._prior_cache[0] != cut:
            self._prior_cache = (cut, events_table(self.rows[:cut], {self.user.index: self.user}))
        return self._prior_cache[1]


def _rewrite(
    cfg: SimulatorConfig,
    a: Attempt,
    user: User,
    response: Response,
    plan: deque[Entry],
    last: float,
    react_at: float,
    elsewhere: bool,
    rng: Draws,
) -> None:
    """Apply a response to the attempt and rewrite the plan after the user's reaction.

    A helped user drops what they were struggling with and gets on with the step; anyone
    else carries on where they were (an action due before the reaction waits for it) and,
    unless already leaving, re-decides the final action with the new p. `last` is the time
    the plan's next gap counts from; `elsewhere` when the user is on another step's screen.
    """
    if response.helped:
        a.helped = True
        a.committed = False
        pending = [e for e in plan if e[5] & OUTCOME]  # reactions to earlier triggers
        plan.clear()
        plan.extend(pending)
        if elsewhere:  # back to the step first
            gap = rng.lognormal(cfg.behaviour.action_gap_s, user.speed)
            plan.append((gap, VIEW, None, None, None, PLAIN, None))
        plan.extend(recovery_entries(cfg, a, user, rng))
        return
    a.annoy += response.cost
    if plan:
        gap, etype, step, target, value, tag, note = plan.popleft()
        left = last + gap - react_at
        if left <= 0:  # due while the trigger was up: right after the reaction instead
            left = rng.lognormal(cfg.behaviour.action_gap_s, user.speed)
            tag &= ~AWAY  # back at the screen already
        plan.appendleft((left, etype, step, target, value, tag, note))
    if not a.committed and response.cost > 0:
        kept = [e for e in plan if not e[5] & FINAL]
        if not any(e[5] & FINALIZE for e in kept):
            kept.append((0.0, "", None, None, None, FINALIZE, None))
        plan.clear()
        plan.extend(kept)


def _props(decision_id: str | None) -> str:
    return json.dumps({"decision_id": decision_id}, separators=(",", ":"))
