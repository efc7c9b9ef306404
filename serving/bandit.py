"""Which action to show: the fixed table, the learned bandit, or an exploration draw.

The engine asks `ActionSelector.choose` once the table (or the model path) has chosen. The
selector logs what a learner needs from every decision - the eligible action set and the
chosen action's probability under the policy that chose it (1.0 when deterministic) - and,
behind `configs/bandit.yaml`, can

- explore: epsilon-greedy over the eligible actions (never for the global holdout; the caps
  judge the result afterwards, so exploration never shows more than the caps allow);
- decide with the learned policy (`intent policy learn`: a Vowpal Wabbit CB-ADF model with a
  manifest and checksum under `models/policy/`) for model-scored decisions; the table stays
  the fallback for cold start, feature-store errors and rules-only mode.

`context_features` is the one definition of a decision's context: the engine calls it on the
live decision and `training.policy` on the logged row, so learning and serving agree.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.bandit import (
    NONE,
    BanditConfig,
    Context,
    LearnedPolicy,
    PolicyArtefactError,
    context_features,
    resolve_artefact,
)
from core.policy_config import PolicyConfig
from core.vocabulary import ActionType, MomentType
from serving.policy import PolicyOutcome, Reason, content_key

# --- choosing ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Choice:
    """The action to show (before caps), its probability, the set it came from, and who chose."""

    action: str
    propensity: float
    eligible: tuple[str, ...]
    chooser: str  # table | learned
    explored: bool


def uniform(salt: str, key: str) -> float:
    """A deterministic draw in [0, 1) from a salted hash (replays exactly; thread-safe)."""
    digest = hashlib.blake2b(f"{salt}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def explore(
    greedy: str, eligible: Sequence[str], epsilon: float, u_explore: float, u_pick: float
) -> tuple[str, float, bool]:
    """Epsilon-greedy: (action, its probability, whether the uniform branch was taken)."""
    n = len(eligible)
    if epsilon <= 0 or n <= 1:
        return greedy, 1.0, False
    explored = u_explore < epsilon
    action = eligible[min(int(u_pick * n), n - 1)] if explored else greedy
    propensity = (1.0 - epsilon) * (action == greedy) + epsilon / n
    return action, propensity, explored


class ActionSelector:
    """The selector the engine consults after the table; stateless apart from the model."""

    def __init__(self, cfg: BanditConfig, learned: LearnedPolicy | None = None) -> None:
        self.cfg = cfg
        self.learned = learned if cfg.learned.enabled else None

    @property
    def label(self) -> str:
        return f"learned:{self.learned.version}" if self.learned is not None else "table"

    def choose(
        self,
        *,
        table_action: str,
        moment: MomentType | None,
        context: Context | None,
        holdout: bool,
        model_scored: bool,
        escalated: bool,
        key: str,
    ) -> Choice:
        """The action before caps. `key` identifies the decision for the exploration draw."""
        eligible = self.cfg.eligible(moment, table_action)
        greedy, chooser = table_action, "table"
        use_learned = (
            self.learned is not None
            and moment is not None
            and model_scored
            and context is not None
            and not (escalated and self.cfg.learned.keep_escalation)
            and (table_action != NONE or self.cfg.learned.may_add_triggers)
        )
        if use_learned:
            assert self.learned is not None and context is not None
            greedy, chooser = self.learned.best(context, eligible), "learned"
        epsilon = 0.0 if holdout or moment is None else self.cfg.exploration.epsilon
        if epsilon <= 0:  # the hot path when exploration is off: no draws
            return Choice(greedy, 1.0, eligible, chooser, False)
        salt = self.cfg.exploration.salt
        action, propensity, explored = explore(
            greedy, eligible, epsilon, uniform(salt, key + "#e"), uniform(salt, key + "#a")
        )
        return Choice(action, propensity, eligible, chooser, explored)

    def close(self) -> None:
        if self.learned is not None:
            self.learned.close()


def select_action(
    selector: ActionSelector,
    policy: PolicyConfig,
    *,
    step: str,
    device: str | None,
    channel: str | None,
    moment: MomentType | None,
    signals: Mapping[str, Any],
    score: float,
    outcome: PolicyOutcome,
    holdout: bool,
    model_scored: bool,
    key: str,
) -> tuple[PolicyOutcome, Choice]:
    """The engine's hook: the outcome with the selector's action (content and reason
    updated when it differs from the table's) and the choice to log."""
    context = None
    if selector.learned is not None and model_scored and moment is not None:
        context = context_features(
            moment=moment.value,
            step=step,
            band=outcome.band.name,
            score=score,
            device=device,
            channel=channel,
            signals=signals,
            cfg=selector.cfg.context,
        )
    escalated = any(r.kind == "escalation" for r in outcome.reasons)
    choice = selector.choose(
        table_action=outcome.action.value,
        moment=moment,
        context=context,
        holdout=holdout,
        model_scored=model_scored,
        escalated=escalated,
        key=key,
    )
    if choice.action == outcome.action.value and choice.chooser == "table":
        return outcome, choice
    action = ActionType(choice.action)
    how = "explored" if choice.explored else choice.chooser
    detail = (
        f"{how}: {action} (p={choice.propensity:.3f}) over {', '.join(choice.eligible)}; "
        f"table: {outcome.action}"
    )
    content = content_key(policy.content_key, action, moment, step) if action != NONE else None
    reasons = (*outcome.reasons, Reason("bandit", how, choice.propensity, detail))
    return PolicyOutcome(outcome.band, action, content, reasons), choice


def artefact_problem(cfg: BanditConfig, models_dir: Path) -> str | None:
    """Why the configured learned policy cannot be loaded, or None when it can be found."""
    try:
        resolve_artefact(models_dir, cfg.learned.artefact)
    except PolicyArtefactError as exc:
        return str(exc)
    return None


def build_selector(cfg: BanditConfig, models_dir: Path) -> ActionSelector:
    """The selector for `cfg`; loads the learned policy only when it is enabled."""
    learned = None
    if cfg.learned.enabled:
        learned = LearnedPolicy(resolve_artefact(models_dir, cfg.learned.artefact))
    return ActionSelector(cfg, learned)
