"""How a user responds to an intervention: accept or dismiss, helped or annoyed.

Help works when it fits the need (a tooltip for a form that will not go through, a
walkthrough for a user who does not know where to look, a tip or a person for doubts about
identity verification), reaches a user who is looking at the screen, and is welcome: every
trigger already shown to the user today makes the next one less welcome and costlier.
An intervention that does not help costs abandonment probability, more for intrusive
actions (live chat) and for users who mind them.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.vocabulary import ActionType, Outcome
from features.simulator.config import Need, ResponseConfig
from features.simulator.randomness import Draws


@dataclass(frozen=True, slots=True)
class Response:
    """What a shown intervention did."""

    accepted: bool
    helped: bool  # the need is resolved
    cost: float  # abandonment logit added (0 when helped)
    reaction_s: float  # from the trigger on screen (or the user's return) to accept / dismiss

    @property
    def outcome(self) -> Outcome:
        return Outcome.ACCEPTED if self.accepted else Outcome.DISMISSED


def respond(
    cfg: ResponseConfig,
    action: ActionType,
    need: Need,
    mistimed: bool,
    receptivity: float,
    annoyance: float,
    shown_today: int,
    rng: Draws,
) -> Response:
    """Draw the response of a human user to `action`.

    `need` is what the user still lacks (Need.NONE when nothing or already helped);
    `mistimed` when the user is off-task or already leaving; `shown_today` counts the
    triggers this user saw earlier on the same local day. The draws are made in a fixed
    order whatever the branch, so two policies compared on one seed stay paired.
    """
    if action == ActionType.NONE:
        raise ValueError("respond() is for shown interventions; ActionType.NONE shows nothing")
    needed = need != Need.NONE
    welcome = cfg.fatigue_accept**shown_today
    accept_p = (receptivity if needed else cfg.accept_unneeded) * welcome
    accepted = rng.chance(accept_p)
    effect = cfg.effect[need][action] * (cfg.mistimed_factor if mistimed else 1.0)
    helped = rng.chance(effect) and accepted and needed
    cost = (
        0.0 if helped else cfg.intrusiveness[action] * annoyance * (1.0 + cfg.fatigue * shown_today)
    )
    return Response(accepted, helped, cost, rng.lognormal(cfg.reaction_s))


def ignored(reaction_s: float) -> Response:
    """A script does not read triggers: dismissed, no effect."""
    return Response(accepted=False, helped=False, cost=0.0, reaction_s=reaction_s)
