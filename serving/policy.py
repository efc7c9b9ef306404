"""Score -> action: bands, content by micro-moment, escalation, cohort and arm overrides.

All functions are pure: they take the score, the moment, the signals and resolved
`Thresholds`, and return a `PolicyOutcome` carrying its reasons. Two paths share the bands and
the signal table:

- model: the band's intensity decides *whether* (none / assist / escalate); the signal table
  (or the moment's default) decides *what*; escalation rules apply only in `escalate` bands,
  so a higher score never yields a less intensive action for the same moment and signals.
- rules: the signal table decides on its own (the source document's trigger table); the
  heuristic score is reported with its band but does not gate.

Thresholds are resolved per user from the base config, every matching cohort (in order) and
the user's experiment arms, and cached (`Policy.thresholds`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from core.policy_config import (
    Band,
    Cohort,
    Intensity,
    PolicyConfig,
    SignalRule,
    ThresholdOverrides,
    apply_band_overrides,
)
from core.vocabulary import ActionType, MomentType
from serving.rules import RuleHit, first_hit

# How intrusive an action is; "a higher score never gives a lower-intensity action".
ACTION_INTENSITY: dict[ActionType, int] = {a: 1 for a in ActionType} | {
    ActionType.NONE: 0,
    ActionType.LIVE_CHAT: 2,
}


@dataclass(frozen=True, slots=True)
class Reason:
    """Why a decision came out as it did: a rule, a band, a feature, a fallback, a cap."""

    kind: str  # band | rule | escalation | default | feature | fallback | holdout | cap | none
    name: str
    value: float | None
    detail: str


@dataclass(frozen=True, slots=True)
class Thresholds:
    """The bands and rules in force for one user (base + cohorts + arms)."""

    bands: tuple[Band, ...]
    signal_table: tuple[SignalRule, ...]
    escalation: tuple[SignalRule, ...]


@dataclass(frozen=True, slots=True)
class PolicyOutcome:
    band: Band
    action: ActionType
    content: str | None
    reasons: tuple[Reason, ...]


def resolve(cfg: PolicyConfig, overrides: Sequence[ThresholdOverrides]) -> Thresholds:
    """Base thresholds with `overrides` applied in order (later ones win)."""
    named = [("", o) for o in overrides]
    rule_values: dict[str, float] = {}
    for o in overrides:
        rule_values.update(o.rules)

    def patch(rules: Sequence[SignalRule]) -> tuple[SignalRule, ...]:
        return tuple(
            r.model_copy(update={"threshold": rule_values[r.name]}) if r.name in rule_values else r
            for r in rules
        )

    return Thresholds(
        bands=tuple(apply_band_overrides(cfg.bands, named)),
        signal_table=patch(cfg.signal_table),
        escalation=patch(cfg.escalation),
    )


def matching_cohorts(
    cohorts: Sequence[Cohort], device: str | None, channel: str | None, returning: bool | None
) -> tuple[Cohort, ...]:
    """Cohorts whose every given attribute matches (an unknown attribute never matches)."""
    return tuple(
        c
        for c in cohorts
        if (c.device is None or c.device == device)
        and (c.channel is None or c.channel == channel)
        and (c.returning is None or c.returning == returning)
    )


def arm_cohort_overrides(
    arm_cohorts: Sequence[tuple[str, Cohort]],
    device: str | None,
    channel: str | None,
    returning: bool | None,
) -> tuple[tuple[str, ThresholdOverrides], ...]:
    """The overrides of the user's arms' cohorts that match them, named `<arm>.<cohort>`."""
    return tuple(
        (f"{arm}.{c.name}", c.overrides)
        for arm, c in arm_cohorts
        if matching_cohorts((c,), device, channel, returning)
    )


def band_of(score: float, bands: Sequence[Band]) -> Band:
    """The band containing `score`: [previous upper, upper), the last one closed at 1.0."""
    for band in bands:
        if score < band.upper:
            return band
    return bands[-1]


def content_key(template: str, action: ActionType, moment: MomentType | None, step: str) -> str:
    return template.format(action=action.value, moment=moment.value if moment else "", step=step)


def _band_reason(score: float, band: Band, bands: Sequence[Band]) -> Reason:
    lower = 0.0
    for b in bands:
        if b is band:
            break
        lower = b.upper
    return Reason(
        "band",
        band.name,
        score,
        f"score {score:.3f} in {band.name} [{lower:g}, {band.upper:g}): {band.intensity}",
    )


def _rule_reason(kind: str, hit: RuleHit) -> Reason:
    return Reason(kind, hit.rule.name, hit.value, f"{hit.describe()} -> {hit.rule.action}")


def model_policy(
    score: float,
    moment: MomentType | None,
    step: str,
    signals: Mapping[str, float],
    th: Thresholds,
    cfg: PolicyConfig,
) -> PolicyOutcome:
    """The model path: band intensity gates, the moment picks the content, escalation tops up."""
    band = band_of(score, th.bands)
    reasons = [_band_reason(score, band, th.bands)]
    if band.intensity == Intensity.NONE:
        return PolicyOutcome(band, ActionType.NONE, None, tuple(reasons))
    if moment is None:
        reasons.append(Reason("none", "no_moment", None, "no micro-moment reported or detected"))
        return PolicyOutcome(band, ActionType.NONE, None, tuple(reasons))
    action: ActionType | None = None
    if band.intensity == Intensity.ESCALATE:
        hit = first_hit(th.escalation, moment, signals)
        if hit is not None:
            action = hit.rule.action
            reasons.append(_rule_reason("escalation", hit))
    if action is None:
        hit = first_hit(th.signal_table, moment, signals)
        if hit is not None:
            action = hit.rule.action
            reasons.append(_rule_reason("rule", hit))
        else:
            action = cfg.moment_defaults[moment]
            reasons.append(Reason("default", moment.value, None, f"{moment} -> {action}"))
    return PolicyOutcome(
        band, action, content_key(cfg.content_key, action, moment, step), tuple(reasons)
    )


def rules_policy(
    score: float,
    moment: MomentType | None,
    step: str,
    signals: Mapping[str, float],
    th: Thresholds,
    cfg: PolicyConfig,
) -> PolicyOutcome:
    """The rules path: the signal table (escalation first) decides; the band is informational."""
    band = band_of(score, th.bands)
    hit = first_hit(th.escalation, moment, signals)
    kind = "escalation"
    if hit is None:
        hit = first_hit(th.signal_table, moment, signals)
        kind = "rule"
    score_reason = Reason("heuristic", "rules_score", score, f"heuristic score {score:.3f}")
    if hit is None:
        detail = f"no rule of {moment} holds" if moment else "no micro-moment reported or detected"
        none = Reason("none", "no_rule", None, detail)
        return PolicyOutcome(band, ActionType.NONE, None, (none, score_reason))
    action = hit.rule.action
    return PolicyOutcome(
        band,
        action,
        content_key(cfg.content_key, action, moment, step),
        (_rule_reason(kind, hit), score_reason),
    )


class Policy:
    """The policy config plus a cache of resolved thresholds per (cohorts, arms)."""

    def __init__(self, cfg: PolicyConfig) -> None:
        self.cfg = cfg
        self._cache: dict[tuple[str, ...], Thresholds] = {}

    def thresholds(
        self, cohorts: Sequence[Cohort], arm_overrides: Sequence[tuple[str, ThresholdOverrides]]
    ) -> Thresholds:
        key = (*(c.name for c in cohorts), "|", *(name for name, _ in arm_overrides))
        found = self._cache.get(key)
        if found is None:
            overrides = [c.overrides for c in cohorts] + [o for _, o in arm_overrides]
            found = self._cache[key] = resolve(self.cfg, overrides)
        return found
