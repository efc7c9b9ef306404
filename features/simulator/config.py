"""Config of the behaviour simulator (`configs/simulator.yaml`).

Every behavioural and calibration number of the simulator lives in the YAML file; these
models only give it a shape and reject typos. Cross-file consistency (funnel steps, CTA and
help targets known to the signals config) is checked by `check_compatible`, because one
file's model cannot see the others.
"""

from __future__ import annotations

import math
from datetime import date
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator

from core.settings import ConfigError, ConfigFile, StrictModel
from core.vocabulary import ActionType
from features.config import FunnelConfig, SignalsConfig

SHARE_TOLERANCE = 1e-6  # shares are probabilities: they must add up to 1 (float rounding aside)


class Need(StrEnum):
    """What a user lacks on a step attempt (latent): the thing a good intervention supplies."""

    NONE = "none"  # not stuck: help is unneeded
    FORM = "form"  # cannot get the form / CTA to go through (tooltip, tip)
    LOST = "lost"  # does not see what to do or where to look (walkthrough, guide, video)
    DOUBT = "doubt"  # hesitates: why this data, is it safe (tip, live chat, video)
    BREAK = "break"  # leaves on purpose to fetch documents; help cannot replace them


STUCK: tuple[Need, ...] = (Need.FORM, Need.LOST, Need.DOUBT)


def _check_shares(shares: dict[str, float], what: str) -> None:
    if not shares:
        raise ValueError(f"{what}: at least one entry is required")
    if any(s < 0 for s in shares.values()):
        raise ValueError(f"{what} must be >= 0")
    total = sum(shares.values())
    if not math.isclose(total, 1.0, abs_tol=SHARE_TOLERANCE):
        raise ValueError(f"{what} must add up to 1 (they add up to {total:g})")


class LogNormal(StrictModel):
    """A positive random amount: `median * exp(sigma * N(0, 1))`, optionally capped."""

    median: float = Field(gt=0)
    sigma: float = Field(ge=0)
    max: float | None = Field(default=None, gt=0)  # None = uncapped


class IntRange(StrictModel):
    """An inclusive integer range drawn uniformly."""

    min: int = Field(ge=0)
    max: int = Field(ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> IntRange:
        if self.max < self.min:
            raise ValueError("max must be >= min")
        return self


class Archetype(StrictModel):
    """A user type: the latent traits its users scatter around."""

    share: float = Field(ge=0, le=1)  # of human users
    confusion: float  # logit shift of getting stuck on a step
    motivation: float  # logit shift of abandoning a step (negative = more committed)
    trait_sd: float = Field(ge=0)  # per-user spread of confusion and motivation (logit units)
    distraction: float = Field(ge=0, le=1)  # chance of an off-task pause on a step attempt
    receptivity: float = Field(ge=0, le=1)  # chance to engage with help that fits their need
    annoyance: float = Field(ge=0)  # multiplier of what an unhelpful intervention costs
    speed: float = Field(gt=0)  # multiplier of every gap between actions (>1 = slower)
    return_prob: float = Field(ge=0, le=1)  # comes back another time after leaving mid-funnel
    break_prob: float = Field(ge=0, le=1)  # leaves on purpose at a break step (documents)


class Channel(StrictModel):
    """An acquisition channel: paid social browses, referrals mean it."""

    share: float = Field(ge=0, le=1)
    motivation: float  # logit shift of abandoning, added to the archetype's


class PopulationConfig(StrictModel):
    """Who the simulated users are."""

    bot_share: float = Field(ge=0, lt=1)  # of all users
    archetypes: dict[str, Archetype]
    devices: dict[str, float]  # shares
    channels: dict[str, Channel]
    time_zones: dict[str, float]  # IANA name -> share
    local_hour_weights: list[float] = Field(min_length=24, max_length=24)  # first visits by hour
    user_agents: dict[str, list[str]]  # device -> user agents drawn uniformly

    @field_validator("archetypes")
    @classmethod
    def _archetype_shares(cls, archetypes: dict[str, Archetype]) -> dict[str, Archetype]:
        _check_shares({k: a.share for k, a in archetypes.items()}, "archetype shares")
        return archetypes

    @field_validator("devices")
    @classmethod
    def _device_shares(cls, devices: dict[str, float]) -> dict[str, float]:
        _check_shares(devices, "device shares")
        return devices

    @field_validator("channels")
    @classmethod
    def _channel_shares(cls, channels: dict[str, Channel]) -> dict[str, Channel]:
        _check_shares({k: c.share for k, c in channels.items()}, "channel shares")
        return channels

    @field_validator("time_zones")
    @classmethod
    def _zones(cls, zones: dict[str, float]) -> dict[str, float]:
        _check_shares(zones, "time zone shares")
        for name in zones:
            try:
                ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError) as exc:
                raise ValueError(f"unknown IANA time zone {name!r}") from exc
        return zones

    @field_validator("local_hour_weights")
    @classmethod
    def _hours(cls, weights: list[float]) -> list[float]:
        if any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError("hour weights must be >= 0 with a positive sum")
        return weights

    @model_validator(mode="after")
    def _agents_per_device(self) -> PopulationConfig:
        missing = sorted(d for d in self.devices if not self.user_agents.get(d))
        if missing:
            raise ValueError(f"user_agents: no user agents for devices {', '.join(missing)}")
        return self


class SessionsConfig(StrictModel):
    """How users come back: returns resume the funnel where they left it."""

    max_sessions: int = Field(ge=1)
    return_delay_h: LogNormal  # from the end of a session to the next one
    return_decay: float = Field(ge=0, le=1)  # return chance multiplier per session already made
    break_return_prob: float = Field(ge=0, le=1)  # comes back after leaving for documents
    break_delay_h: LogNormal
    stuck_again: float  # logit shift of getting stuck again where they got stuck last time
    next_step_gap_s: LogNormal  # step_complete -> the next screen


class StepConfig(StrictModel):
    """One funnel step: how hard it is and what it asks for."""

    abandon_logit: float  # abandonment logit of a user who is not stuck (calibrated)
    stuck_logit: float  # logit of getting stuck on entering the step
    stuck_kinds: dict[Need, float]  # which need a stuck user has, shares over form/lost/doubt
    device_stuck: dict[str, float]  # logit shift of getting stuck by device
    device_abandon: dict[str, float]  # logit shift of abandoning by device
    fields: int = Field(ge=0)  # form fields to fill (field clicks, field errors)
    read_s: LogNormal  # from the view to the first action
    depth_logit: float  # logit of the scroll depth a user who is not lost reaches
    break_step: bool  # a returning user may leave here to fetch documents

    @field_validator("stuck_kinds")
    @classmethod
    def _kinds(cls, kinds: dict[Need, float]) -> dict[Need, float]:
        wrong = sorted(str(k) for k in kinds if k not in STUCK)
        if wrong:
            raise ValueError(f"stuck kinds must be among form/lost/doubt, got {', '.join(wrong)}")
        _check_shares({str(k): v for k, v in kinds.items()}, "stuck kind shares")
        return kinds


class AbandonConfig(StrictModel):
    """Abandonment logit shifts of the latent state on a step attempt."""

    need: dict[Need, float]  # by need (none = 0 by convention, break = leaving on purpose)
    away: float  # an off-task pause on the attempt
    later_session: float  # an attempt in a session after the user's first

    @field_validator("need")
    @classmethod
    def _all_needs(cls, need: dict[Need, float]) -> dict[Need, float]:
        missing = sorted(str(n) for n in Need if n not in need)
        if missing:
            raise ValueError(f"missing needs: {', '.join(missing)}")
        return need


class Symptoms(StrictModel):
    """Chances that a user with one need shows each behaviour on a step attempt."""

    pause: float = Field(ge=0, le=1)  # a long confused pause
    cta_fail: float = Field(ge=0, le=1)  # failed CTA clicks (a burst)
    field_error: float = Field(ge=0, le=1)  # per form field
    help_hover: float = Field(ge=0, le=1)
    help_open: float = Field(ge=0, le=1)
    backtrack: float = Field(ge=0, le=1)  # rapid back to the previous screen and forth again
    wander: float = Field(ge=0, le=1)  # scrolling / hovering around without clicking
    secondary: float = Field(ge=0, le=1)  # clicks on links / options off the main path


class ScrollConfig(StrictModel):
    """Scroll depth reached on a screen: `100 * sigmoid(logit)`, logit ~ N(mean, sd)."""

    sd: float = Field(ge=0)
    lost_logit: float  # mean depth logit of a lost user (replaces the step's depth_logit)
    stuck_shift: float  # shift of the step's depth logit for other stuck users
    device: dict[str, float]  # shift by device (phones scroll further on narrow screens)
    events: IntRange  # scroll events to get there


class BehaviourConfig(StrictModel):
    """Timing and shape of what users do on a screen."""

    action_gap_s: LogNormal  # between ordinary actions
    typing_s: LogNormal  # per form field
    confused_pause_s: LogNormal
    away_pause_s: LogNormal  # an off-task pause (phone call, other tab); keep < session gap
    away_tab_hidden: float = Field(ge=0, le=1)  # an off-task pause starts with exit_intent
    final_gap_s: LogNormal  # before the final CTA click or leaving
    exit_intent_before_exit: float = Field(ge=0, le=1)  # abandoners' exit_intent before exit
    exit_gap_s: LogNormal  # exit_intent -> exit
    submit_s: LogNormal  # CTA click -> step_complete (and the last step -> goal)
    rapid_back_s: LogNormal  # view -> back of a rapid backtrack
    backtrack_stay_s: LogNormal  # time on the previous screen before coming forth again
    cta_fails: IntRange
    wander_events: IntRange
    secondary_clicks: IntRange
    help_hover_s: LogNormal
    scroll: ScrollConfig
    symptoms: dict[Need, Symptoms]

    @field_validator("symptoms")
    @classmethod
    def _all_needs(cls, symptoms: dict[Need, Symptoms]) -> dict[Need, Symptoms]:
        missing = sorted(str(n) for n in Need if n not in symptoms)
        if missing:
            raise ValueError(f"missing needs: {', '.join(missing)}")
        return symptoms


class ResponseConfig(StrictModel):
    """How users respond to an intervention the policy shows."""

    display_latency_s: float = Field(gt=0)  # decision -> trigger on screen (scoring + render)
    reaction_s: LogNormal  # trigger on screen -> accepted / dismissed
    accept_unneeded: float = Field(ge=0, le=1)  # users who need nothing still click sometimes
    fatigue_accept: float = Field(ge=0, le=1)  # acceptance multiplier per earlier trigger today
    effect: dict[Need, dict[ActionType, float]]  # P(need resolved | accepted), per action
    mistimed_factor: float = Field(ge=0, le=1)  # effect multiplier: user away or already leaving
    helped_logit: float  # abandonment logit shift of a helped user (vs. one never stuck)
    intrusiveness: dict[ActionType, float]  # abandonment logit cost of an unhelpful trigger
    fatigue: float = Field(ge=0)  # cost growth per earlier trigger today: cost * (1 + f * n)
    carry: float = Field(ge=0, le=1)  # share of the annoyance carried to later steps

    @field_validator("effect")
    @classmethod
    def _effects(cls, effect: dict[Need, dict[ActionType, float]]) -> dict[Need, dict]:
        shown = [a for a in ActionType if a != ActionType.NONE]
        for need in Need:
            row = effect.get(need)
            if row is None:
                raise ValueError(f"missing need {need}")
            missing = sorted(str(a) for a in shown if a not in row)
            if missing:
                raise ValueError(f"{need}: missing actions {', '.join(missing)}")
            if any(not 0 <= v <= 1 for v in row.values()):
                raise ValueError(f"{need}: effects are probabilities (0..1)")
        return effect

    @field_validator("intrusiveness")
    @classmethod
    def _costs(cls, costs: dict[ActionType, float]) -> dict[ActionType, float]:
        missing = sorted(str(a) for a in ActionType if a != ActionType.NONE and a not in costs)
        if missing:
            raise ValueError(f"missing actions {', '.join(missing)}")
        if any(v < 0 for v in costs.values()):
            raise ValueError("costs must be >= 0")
        return costs


class AssistivePersona(StrictModel):
    """Users of assistive technology (screen reader, keyboard only): they read and tab through
    a screen, so long pauses without pointer events, and their events carry the flag."""

    share: float = Field(0.0, ge=0, lt=1)  # of human users
    pause_factor: float = Field(2.5, ge=1)  # gaps between their actions, times a sighted user's
    # of assistive users, those whose events carry the explicit flag; the others are known
    # only from their behaviour (features.signals.assistive_reason)
    flagged_share: float = Field(1.0, ge=0, le=1)
    focus_s: float = Field(1.0, gt=0)  # the first Tab into a screen, after it appears


class BotsConfig(StrictModel):
    """Scripted sign-ups: regular fast gaps, no scroll or hover, automation user agents."""

    interval_s: LogNormal  # each bot's own tick (drawn once per bot)
    jitter: float = Field(ge=0, lt=1)  # relative spread of its gaps around the tick
    user_agents: list[str] = Field(min_length=1)
    device: str
    stop_step: str  # the step bots fail at (CTA fails, then exit)
    fails: IntRange
    sessions: IntRange


class CalibrationConfig(StrictModel):
    """The no-trigger funnel the defaults are tuned to (source document, pre-trigger column).

    `step_dropoff` spreads the headline figures over the steps (what `intent simulate
    calibrate` fits each step's abandon_logit to); it must agree with them.
    """

    completion_rate: float = Field(gt=0, lt=1)  # of human users, over the simulated period
    dropoff_step: str
    dropoff_rate: float = Field(gt=0, lt=1)  # of human users who reach dropoff_step
    tolerance: float = Field(gt=0, lt=1)  # absolute, for tests and the summary's check mark
    step_dropoff: dict[str, float]  # per step: share of users reaching it who never complete it

    @model_validator(mode="after")
    def _consistent(self) -> CalibrationConfig:
        if any(not 0 <= d < 1 for d in self.step_dropoff.values()):
            raise ValueError("step_dropoff values must be in [0, 1)")
        if self.step_dropoff.get(self.dropoff_step) != self.dropoff_rate:
            raise ValueError(f"step_dropoff.{self.dropoff_step} must equal dropoff_rate")
        completion = math.prod(1 - d for d in self.step_dropoff.values())
        if abs(completion - self.completion_rate) > self.tolerance / 2:
            raise ValueError(
                f"step_dropoff implies a completion rate of {completion:.3f}, "
                f"not completion_rate {self.completion_rate}"
            )
        return self


class SimulatorConfig(ConfigFile):
    """The behaviour simulator behind `intent simulate`."""

    file_name = "simulator.yaml"

    start_date: date | None  # None: the simulated period ends at today's UTC midnight
    cta_target: str = Field(min_length=1)  # target of the primary call to action
    help_target: str = Field(min_length=1)  # target of help affordances
    population: PopulationConfig
    sessions: SessionsConfig
    steps: dict[str, StepConfig]
    abandon: AbandonConfig
    behaviour: BehaviourConfig
    response: ResponseConfig
    bots: BotsConfig
    calibration: CalibrationConfig
    assistive: AssistivePersona = Field(default_factory=AssistivePersona)

    @model_validator(mode="after")
    def _devices_known(self) -> SimulatorConfig:
        devices = set(self.population.devices)
        for name, step in self.steps.items():
            shifts_by_kind = {
                "device_stuck": step.device_stuck,
                "device_abandon": step.device_abandon,
            }
            for what, shifts in shifts_by_kind.items():
                unknown = sorted(set(shifts) - devices)
                if unknown:
                    raise ValueError(f"steps.{name}.{what}: unknown devices {', '.join(unknown)}")
        unknown = sorted(set(self.behaviour.scroll.device) - devices)
        if unknown:
            raise ValueError(f"behaviour.scroll.device: unknown devices {', '.join(unknown)}")
        if self.bots.device not in devices:
            raise ValueError(f"bots.device: unknown device {self.bots.device!r}")
        return self


def check_compatible(sim: SimulatorConfig, funnel: FunnelConfig, signals: SignalsConfig) -> None:
    """Raise ConfigError naming every mismatch between the simulator and the other configs."""
    problems: list[str] = []
    missing = [s for s in funnel.steps if s not in sim.steps]
    extra = [s for s in sim.steps if s not in funnel.steps]
    if missing:
        problems.append(f"steps: no parameters for funnel steps {', '.join(missing)}")
    if extra:
        problems.append(f"steps: {', '.join(extra)} not in funnel {funnel.name!r}")
    if sorted(sim.calibration.step_dropoff) != sorted(funnel.steps):
        problems.append("calibration.step_dropoff: needs exactly the funnel's steps")
    for key, step in (
        ("bots.stop_step", sim.bots.stop_step),
        ("calibration.dropoff_step", sim.calibration.dropoff_step),
    ):
        if step not in funnel.steps:
            problems.append(f"{key}: {step!r} is not a step of funnel {funnel.name!r}")
    if sim.cta_target not in signals.primary_targets:
        problems.append(f"cta_target: {sim.cta_target!r} is not in signals primary_targets")
    if sim.help_target not in signals.help_targets:
        problems.append(f"help_target: {sim.help_target!r} is not in signals help_targets")
    if problems:
        raise ConfigError("\n".join(f"{sim.file_name}: {p}" for p in problems))
