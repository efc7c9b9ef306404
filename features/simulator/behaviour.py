"""What a user does on one step attempt: the latent state, and a plan of timed actions.

A step attempt starts when a user enters a step they have not completed yet and ends with
`step_complete` or the session's end. On entering, the latent state is drawn: the user's
need (stuck or not, and on what), an off-task episode, and a uniform `u` that fixes the
outcome: the user abandons iff `u < p`, where `p` is the abandonment probability of the
latent state (the oracle). Behaviour depends on the latent state but not on `u`; only the
final action (CTA click or leaving) does. So at any decision point before that final action
the oracle `p` is exactly the probability of abandoning given everything about the user,
and the observable signals reveal it only partially: a long pause means confusion or a
phone call, a shallow scroll means a lost user or a short screen, and so on.

Interventions change `p` (help resolves the need, an unhelpful trigger annoys); keeping `u`
fixed couples the outcomes before and after, so a helped user who would have stayed still
stays, and the effect of a policy is measured with little noise.

A plan is a list of entries `(gap_s, type, step, target, value, tag, note)`: each happens
`gap_s` after the previous one; `step` None means the attempt's step; `note` carries the
decision id of a trigger outcome. The last entry is a FINALIZE
marker expanded into the final action only when reached, so it uses the `p` of that time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from features.events import EventType
from features.simulator.config import STUCK, Need, SimulatorConfig
from features.simulator.population import User
from features.simulator.randomness import Draws, Weighted

# Entry tags (bit flags).
PLAIN = 0
AWAY = 1  # the gap before this entry is an off-task pause (the user is not looking)
FINAL = 2  # part of the final action (re-decided when an intervention changes p)
COMMIT = 4  # the exit_intent of a user who has decided to leave: p becomes 1
FINALIZE = 8  # marker: expand into the final action with the p of that moment
OUTCOME = 16  # the user's reaction to a trigger on screen (target = accepted / dismissed)

Entry = tuple[float, str, str | None, str | None, float | None, int, str | None]

VIEW = EventType.VIEW.value
CLICK = EventType.CLICK.value
CTA_FAIL = EventType.CTA_FAIL.value
SCROLL = EventType.SCROLL.value
HOVER = EventType.HOVER.value
KEY = EventType.KEY.value
BACK = EventType.BACK.value
FIELD_ERROR = EventType.FIELD_ERROR.value
HELP_OPEN = EventType.HELP_OPEN.value
EXIT_INTENT = EventType.EXIT_INTENT.value
STEP_COMPLETE = EventType.STEP_COMPLETE.value
GOAL = EventType.GOAL.value
EXIT = EventType.EXIT.value
TRIGGER_SHOWN = EventType.TRIGGER_SHOWN.value
TRIGGER_OUTCOME = EventType.TRIGGER_OUTCOME.value

# Non-primary targets the simulator uses (anything outside signals' primary / help targets).
FIELD = "field"
LINK = "link"
CONTENT = "content"
TAB_HIDDEN = "tab_hidden"
POINTER_LEAVE = "pointer_leave"


def sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


@dataclass(slots=True)
class Attempt:
    """Latent state of one step attempt (mutated by interventions)."""

    step: str
    index: int  # position of the step in the funnel
    need: Need
    away: bool  # an off-task pause happens on this attempt
    base: float  # abandonment logit of the user on this step, before need / away / annoyance
    need_shift: float
    away_shift: float
    helped_shift: float
    u: float  # abandon iff u < p at the final action
    fixed_p: float | None = None  # scripted users (bots) have a fixed outcome
    annoy: float = 0.0  # logit cost of unhelpful interventions so far
    helped: bool = False
    committed: bool = False  # decided to leave (exit_intent shown): p = 1 unless saved
    away_until: float = -math.inf  # the user is off-task until then (epoch s)
    decisions: list[str] = field(default_factory=list)  # shown decision ids, for observe()

    def p(self) -> float:
        """The oracle: P(leave the session without completing the step | latent state)."""
        if self.committed:
            return 1.0
        if self.fixed_p is not None:
            return self.fixed_p
        need = self.helped_shift if self.helped else self.need_shift
        return sigmoid(self.base + need + (self.away_shift if self.away else 0.0) + self.annoy)

    @property
    def needed_help(self) -> bool:
        """Whether a matching intervention could still change something."""
        return self.need != Need.NONE and not self.helped


@dataclass(frozen=True, slots=True)
class StepPicks:
    """Per-step config prepared for fast draws."""

    kinds: Weighted


def step_picks(cfg: SimulatorConfig) -> dict[str, StepPicks]:
    return {
        name: StepPicks(Weighted({str(k): v for k, v in s.stuck_kinds.items()}))
        for name, s in cfg.steps.items()
    }


def enter_attempt(
    cfg: SimulatorConfig,
    picks: dict[str, StepPicks],
    user: User,
    step: str,
    index: int,
    session_no: int,
    stuck_before: bool,
    may_break: bool,
    carried_annoyance: float,
    rng: Draws,
) -> Attempt:
    """Draw the latent state of a human user entering `step`."""
    sc = cfg.steps[step]
    ab = cfg.abandon
    stuck_logit = sc.stuck_logit + user.confusion + sc.device_stuck.get(user.device, 0.0)
    if stuck_before:
        stuck_logit += cfg.sessions.stuck_again
    taking_break = may_break and sc.break_step and rng.chance(user.break_prob)
    stuck = rng.chance(sigmoid(stuck_logit))
    kind = Need(rng.pick(picks[step].kinds))
    need = Need.BREAK if taking_break else kind if stuck else Need.NONE
    away = rng.chance(user.distraction)
    base = sc.abandon_logit + user.motivation + sc.device_abandon.get(user.device, 0.0)
    if session_no > 0:
        base += ab.later_session
    return Attempt(
        step=step,
        index=index,
        need=need,
        away=away,
        base=base + carried_annoyance,
        need_shift=ab.need[need],
        away_shift=ab.away,
        helped_shift=cfg.response.helped_logit,
        u=rng.uniform(),
    )


def bot_attempt(step: str, index: int, stop: bool) -> Attempt:
    """Bots pass every step until the one they are stopped at."""
    return Attempt(
        step=step,
        index=index,
        need=Need.NONE,
        away=False,
        base=0.0,
        need_shift=0.0,
        away_shift=0.0,
        helped_shift=0.0,
        u=0.5,
        fixed_p=1.0 if stop else 0.0,
    )


def _depth(cfg: SimulatorConfig, user: User, step: str, need: Need, rng: Draws) -> float:
    scroll = cfg.behaviour.scroll
    if need == Need.LOST:
        mean = scroll.lost_logit
    else:
        mean = cfg.steps[step].depth_logit + (scroll.stuck_shift if need in STUCK else 0.0)
    mean += scroll.device.get(user.device, 0.0)
    return round(100.0 * sigmoid(rng.normal(mean, scroll.sd)), 1)


def act(
    gap: float,
    etype: str,
    target: str | None = None,
    value: float | None = None,
    step: str | None = None,
    tag: int = PLAIN,
) -> Entry:
    """A plan entry on the attempt's step (or `step`)."""
    return (gap, etype, step, target, value, tag, None)


POINTER_TYPES = frozenset({SCROLL, HOVER})  # events an assistive (keyboard) user never emits


def assistive_plan(cfg: SimulatorConfig, plan: list[Entry]) -> list[Entry]:
    """A sighted user's plan as a keyboard / screen-reader user lives it: a Tab into the
    screen `focus_s` after it appears, a Tab (`key`) where the sighted user scrolls or hovers
    (no pointer), every gap `pause_factor` times longer (listening, tabbing)."""
    persona = cfg.assistive
    factor = persona.pause_factor
    return [(persona.focus_s, KEY, None, "Tab", None, PLAIN, None)] + [
        (e[0] * factor, KEY, e[2], "Tab", None, *e[5:])
        if e[1] in POINTER_TYPES
        else (e[0] * factor, *e[1:])
        for e in plan
    ]


def plan_attempt(
    cfg: SimulatorConfig, attempt: Attempt, user: User, previous_step: str | None, rng: Draws
) -> list[Entry]:
    """The actions of a human user on a step attempt, ending with the FINALIZE marker."""
    beh = cfg.behaviour
    sym = beh.symptoms[attempt.need]
    sc = cfg.steps[attempt.step]
    speed = user.speed

    def gap() -> float:
        return rng.lognormal(beh.action_gap_s, speed)

    entries: list[Entry] = []
    if previous_step is not None and rng.chance(sym.backtrack):
        # rapid back to the previous screen and forth again: a second visit of the step
        entries.append(act(rng.lognormal(beh.rapid_back_s), BACK))
        entries.append(act(gap(), VIEW, step=previous_step))
        entries.append(act(rng.lognormal(beh.backtrack_stay_s), VIEW))

    # read, then scroll down to the depth this user reaches on this screen
    depth = _depth(cfg, user, attempt.step, attempt.need, rng)
    scrolls = max(rng.integer(beh.scroll.events), 1)
    first = rng.lognormal(sc.read_s, speed)
    for i in range(1, scrolls + 1):
        entries.append(act(first if i == 1 else gap(), SCROLL, value=round(depth * i / scrolls, 1)))

    # the task: fill the form
    body: list[Entry] = []
    for f in range(1, sc.fields + 1):
        body.append(act(rng.lognormal(beh.typing_s, speed), CLICK, FIELD))
        if rng.chance(sym.field_error):
            body.append(act(gap(), FIELD_ERROR, f"{FIELD}_{f}"))

    # symptoms, each dropped in at a random point of the task
    extras: list[list[Entry]] = []
    if rng.chance(sym.secondary):
        extras.append([act(gap(), CLICK, LINK) for _ in range(rng.integer(beh.secondary_clicks))])
    if rng.chance(sym.help_hover):
        extras.append(
            [act(gap(), HOVER, cfg.help_target, round(rng.lognormal(beh.help_hover_s), 2))]
        )
    if rng.chance(sym.help_open):
        extras.append([act(gap(), HELP_OPEN, cfg.help_target)])
    if rng.chance(sym.wander):  # scrolling up and down, hovering content: no clicks
        wander: list[Entry] = []
        for j in range(rng.integer(beh.wander_events)):
            if j % 2 == 0:
                wander.append(act(gap(), SCROLL, value=round(depth * rng.uniform(), 1)))
            else:
                wander.append(act(gap(), HOVER, CONTENT, round(rng.lognormal(beh.action_gap_s), 2)))
        extras.append(wander)
    if rng.chance(sym.cta_fail):
        extras.append(
            [act(gap(), CTA_FAIL, cfg.cta_target) for _ in range(rng.integer(beh.cta_fails))]
        )
    for chunk in extras:
        at = rng.below(len(body) + 1)
        body[at:at] = chunk
    entries.extend(body)
    entries.append(act(0.0, "", tag=FINALIZE))
    final = len(entries) - 1
    first_task = final - len(body)

    if rng.chance(sym.pause):  # a long confused pause before a random later action
        _lengthen(
            entries,
            first_task + rng.below(len(body) + 1),
            rng.lognormal(beh.confused_pause_s, speed),
            PLAIN,
        )
    if attempt.away:  # an off-task pause (maybe in another tab) before a random later action
        i = first_task + rng.below(len(body) + 1)
        _lengthen(entries, i, rng.lognormal(beh.away_pause_s), AWAY)
        if rng.chance(beh.away_tab_hidden):
            entries.insert(i, act(gap(), EXIT_INTENT, TAB_HIDDEN))
    return entries


def _lengthen(entries: list[Entry], i: int, extra: float, tag: int) -> None:
    """Add `extra` seconds (and `tag`) to the gap before entry i."""
    g, t, s, tg, v, old, note = entries[i]
    entries[i] = (g + extra, t, s, tg, v, old | tag, note)


def final_entries(
    cfg: SimulatorConfig, attempt: Attempt, user: User, extra_gap: float, tag: int, rng: Draws
) -> list[Entry]:
    """The final action with today's p: CTA click + step_complete, or leaving."""
    beh = cfg.behaviour
    away = tag & AWAY
    gap = extra_gap + rng.lognormal(beh.final_gap_s, user.speed)
    if attempt.u >= attempt.p():
        return [
            (gap, CLICK, None, cfg.cta_target, None, FINAL | away, None),
            (rng.lognormal(beh.submit_s), STEP_COMPLETE, None, None, None, FINAL, None),
        ]
    if rng.chance(beh.exit_intent_before_exit):
        return [
            (gap, EXIT_INTENT, None, POINTER_LEAVE, None, FINAL | COMMIT | away, None),
            (rng.lognormal(beh.exit_gap_s), EXIT, None, None, None, FINAL, None),
        ]
    return [(gap, EXIT, None, None, None, FINAL | away, None)]


def recovery_entries(cfg: SimulatorConfig, attempt: Attempt, user: User, rng: Draws) -> list[Entry]:
    """A helped user gets on with the step: looks through the screen, fills what is left."""
    beh = cfg.behaviour
    sc = cfg.steps[attempt.step]
    depth = _depth(cfg, user, attempt.step, Need.NONE, rng)
    entries: list[Entry] = [
        (rng.lognormal(beh.action_gap_s, user.speed), SCROLL, None, None, depth, PLAIN, None)
    ]
    for _ in range((sc.fields + 1) // 2):
        entries.append(
            (rng.lognormal(beh.typing_s, user.speed), CLICK, None, FIELD, None, PLAIN, None)
        )
    entries.append((0.0, "", None, None, None, FINALIZE, None))
    return entries


def bot_tick(cfg: SimulatorConfig, user: User, rng: Draws) -> float:
    """A script's next gap: its own tick, barely jittered."""
    return user.tick_s * max(1.0 + cfg.bots.jitter * rng.normal(), 0.5)


def bot_entries(cfg: SimulatorConfig, user: User, step: str, stop: bool, rng: Draws) -> list[Entry]:
    """A script: field clicks at its tick, then the CTA (or a burst of failures and exit)."""
    bots = cfg.bots

    def tick() -> float:
        return bot_tick(cfg, user, rng)

    entries: list[Entry] = [
        (tick(), CLICK, None, FIELD, None, PLAIN, None) for _ in range(cfg.steps[step].fields)
    ]
    if stop:
        entries.extend(
            (tick(), CTA_FAIL, None, cfg.cta_target, None, PLAIN, None)
            for _ in range(rng.integer(bots.fails))
        )
        entries.append((tick(), EXIT, None, None, None, FINAL, None))
    else:
        entries.append((tick(), CLICK, None, cfg.cta_target, None, PLAIN, None))
        entries.append((tick(), STEP_COMPLETE, None, None, None, FINAL, None))
    return entries
