"""Simulated users: latent traits, context (device, time zone, channel) and first arrival.

Traits are latent: they drive behaviour and outcomes but never appear in the event stream,
only in the evaluation-only users table.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import cache
from zoneinfo import ZoneInfo

from features.simulator.config import PopulationConfig, SimulatorConfig
from features.simulator.randomness import Draws, Weighted

BOT = "bot"  # the archetype name of scripted users


@dataclass(frozen=True, slots=True)
class User:
    """One simulated user's latent traits and context."""

    index: int
    user_id: str
    archetype: str
    is_bot: bool
    device: str
    tz: str
    channel: str
    user_agent: str
    confusion: float  # logit shift of getting stuck
    motivation: float  # logit shift of abandoning (archetype + individual + channel)
    distraction: float
    receptivity: float
    annoyance: float
    speed: float
    return_prob: float
    break_prob: float
    arrival: float  # epoch seconds of the first session
    tick_s: float  # bots: the script's interval between actions (0 for humans)
    assistive: bool = False  # uses assistive technology (features.simulator.behaviour)
    assistive_flagged: bool = False  # ...and its events carry the explicit flag


@dataclass(frozen=True, slots=True)
class PopulationPicks:
    """The population config prepared for fast draws."""

    archetypes: Weighted
    devices: Weighted
    channels: Weighted
    zones: Weighted
    hours: Weighted

    @classmethod
    def of(cls, cfg: PopulationConfig) -> PopulationPicks:
        return cls(
            archetypes=Weighted({k: a.share for k, a in cfg.archetypes.items()}),
            devices=Weighted(cfg.devices),
            channels=Weighted({k: c.share for k, c in cfg.channels.items()}),
            zones=Weighted(cfg.time_zones),
            hours=Weighted({str(h): w for h, w in enumerate(cfg.local_hour_weights)}),
        )


def user_id(index: int) -> str:
    """The id of the index-th simulated user."""
    return f"u{index:06d}"


@cache
def zone(name: str) -> ZoneInfo:
    """A cached ZoneInfo (construction is the slow part of local-time conversions)."""
    return ZoneInfo(name)


def draw_user(
    cfg: SimulatorConfig, picks: PopulationPicks, index: int, start: datetime, days: int, rng: Draws
) -> User:
    """The index-th user of a run, from the user's own stream (Purpose.USER)."""
    pop = cfg.population
    is_bot = rng.chance(pop.bot_share)
    tz = rng.pick(picks.zones)
    channel = rng.pick(picks.channels)
    arrival = _arrival(rng, picks, start, days, tz, uniform_hours=is_bot)
    if is_bot:
        bots = cfg.bots
        agents = bots.user_agents
        return User(
            index=index,
            user_id=user_id(index),
            archetype=BOT,
            is_bot=True,
            device=bots.device,
            tz=tz,
            channel=channel,
            user_agent=agents[rng.below(len(agents))],
            confusion=0.0,
            motivation=0.0,
            distraction=0.0,
            receptivity=0.0,
            annoyance=0.0,
            speed=1.0,
            return_prob=0.0,
            break_prob=0.0,
            arrival=arrival,
            tick_s=rng.lognormal(bots.interval_s),
        )
    name = rng.pick(picks.archetypes)
    arch = pop.archetypes[name]
    device = rng.pick(picks.devices)
    agents = pop.user_agents[device]
    human = User(
        index=index,
        user_id=user_id(index),
        archetype=name,
        is_bot=False,
        device=device,
        tz=tz,
        channel=channel,
        user_agent=agents[rng.below(len(agents))],
        confusion=rng.normal(arch.confusion, arch.trait_sd),
        motivation=rng.normal(arch.motivation, arch.trait_sd) + pop.channels[channel].motivation,
        distraction=arch.distraction,
        receptivity=arch.receptivity,
        annoyance=arch.annoyance,
        speed=arch.speed,
        return_prob=arch.return_prob,
        break_prob=arch.break_prob,
        arrival=arrival,
        tick_s=0.0,
    )
    # drawn last, and only when the persona is on, so the other traits stay as they were
    share = cfg.assistive.share
    if not (share > 0 and rng.chance(share)):
        return human
    flagged = rng.chance(cfg.assistive.flagged_share)
    return replace(human, assistive=True, assistive_flagged=flagged)


def _arrival(
    rng: Draws, picks: PopulationPicks, start: datetime, days: int, tz: str, uniform_hours: bool
) -> float:
    """First visit: a uniform day of the period, an hour of the user's local day by weight."""
    day = start.date() + timedelta(days=rng.below(days))
    hour = rng.below(24) if uniform_hours else int(rng.pick(picks.hours))
    local = datetime(day.year, day.month, day.day, hour, tzinfo=zone(tz))
    return local.timestamp() + rng.uniform() * 3600.0


USER_COLUMNS: tuple[str, ...] = (
    "user_id",
    "archetype",
    "is_bot",
    "device",
    "tz",
    "channel",
    "user_agent",
    "confusion",
    "motivation",
    "distraction",
    "receptivity",
    "annoyance",
    "speed",
    "return_prob",
    "break_prob",
    "arrival",
    "assistive",
    "assistive_flagged",
)
