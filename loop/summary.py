"""Seeds -> estimates: each metric's mean over seeds with a t interval, and each policy's
paired difference from the baseline (same seed, same users), absolute and relative.

`case_study` lays the headline comparison out like the source document's case study
(metric, before, after, improvement); `evaluation_notes` says what the numbers hide.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from core.policy_config import PolicyConfig
from core.vocabulary import MomentType
from features.config import SignalsConfig
from loop.config import PolicyKind, PolicySpec
from loop.evaluate import RunResult
from loop.metrics import (
    ACCEPTANCE,
    COMPLETION,
    LIVE_CHAT,
    MODEL_SHARE,
    TRIGGERS_PER_USER_DAY,
    UNNEEDED,
    dropoff_key,
)
from loop.stats import Estimate, mean_interval
from serving.rules import holds


@dataclass(frozen=True)
class PolicySummary:
    """One policy over all seeds."""

    name: str
    seeds: tuple[int, ...]
    metrics: dict[str, Estimate]  # mean over seeds
    diff: dict[str, Estimate]  # paired: policy - baseline, per seed
    relative: dict[str, Estimate]  # paired: policy / baseline - 1, per seed (NaN where 0)


def summarize(
    results: Sequence[RunResult], order: Sequence[str], baseline: str, confidence: float
) -> dict[str, PolicySummary]:
    """Estimates per policy (in `order`); differences pair runs by seed."""
    by: dict[str, dict[int, dict[str, float]]] = {}
    for r in results:
        by.setdefault(r.policy, {})[r.seed] = r.metrics
    if baseline not in by:
        raise ValueError(f"no runs of the baseline policy {baseline!r}")
    base = by[baseline]
    out: dict[str, PolicySummary] = {}
    for name in order:
        runs = by.get(name)
        if not runs:
            continue
        seeds = tuple(sorted(runs))
        keys = list(runs[seeds[0]])
        metrics = {k: mean_interval([runs[s][k] for s in seeds], confidence) for k in keys}
        paired = [s for s in seeds if s in base]
        diff = {
            k: mean_interval([runs[s][k] - base[s][k] for s in paired], confidence) for k in keys
        }
        relative = {
            k: mean_interval([_relative(runs[s][k], base[s][k]) for s in paired], confidence)
            for k in keys
        }
        out[name] = PolicySummary(name, seeds, metrics, diff, relative)
    return out


def paired(
    results: Sequence[RunResult], policy: str, reference: str, metric: str, confidence: float
) -> Estimate:
    """`policy - reference` on `metric`, paired by seed (the seeds both ran)."""
    by = {(r.policy, r.seed): r.metrics[metric] for r in results}
    seeds = sorted({s for p, s in by if p == policy} & {s for p, s in by if p == reference})
    return mean_interval([by[(policy, s)] - by[(reference, s)] for s in seeds], confidence)


def _relative(value: float, base: float) -> float:
    return value / base - 1 if base and not math.isnan(base) else math.nan


# --- formatting -------------------------------------------------------------------------


def pct(e: Estimate, digits: int = 1) -> str:
    """`41.3% [40.1, 42.5]` (a share as percent with its interval). A share's mean lies in
    [0, 1], so a t interval reaching past either end (few seeds) is cut there."""
    clipped = Estimate(e.value, max(e.lo, 0.0), min(e.hi, 1.0), e.n) if not math.isnan(e.lo) else e
    return _fmt(clipped, 100.0, digits, "%")


def num(e: Estimate, digits: int = 2) -> str:
    return _fmt(e, 1.0, digits, "")


def signed_pct(e: Estimate, digits: int = 0) -> str:
    """`+65% [+58, +72]` (a relative change)."""
    return _fmt(e, 100.0, digits, "%", sign=True)


def signed_pp(e: Estimate, digits: int = 1) -> str:
    """`+12.3 pp [+11.0, +13.6]` (a difference of shares in percentage points)."""
    return _fmt(e, 100.0, digits, " pp", sign=True)


def signed_num(e: Estimate, digits: int = 2) -> str:
    return _fmt(e, 1.0, digits, "", sign=True)


def _fmt(e: Estimate, scale: float, digits: int, unit: str, sign: bool = False) -> str:
    if math.isnan(e.value):
        return "n/a"
    spec = f"{'+' if sign else ''}.{digits}f"
    head = f"{e.value * scale:{spec}}{unit}"
    if math.isnan(e.lo):
        return head
    return f"{head} [{e.lo * scale:{spec}}, {e.hi * scale:{spec}}]"


@dataclass(frozen=True)
class CaseRow:
    metric: str
    before: str
    after: str
    improvement: str


def case_study(
    summaries: dict[str, PolicySummary], baseline: str, headline: str, focus_step: str
) -> list[CaseRow]:
    """The source document's case-study table for `headline` against `baseline`.

    Completion and drop-off improve in relative terms, as in the document (+65 %, -47 %);
    metrics the baseline cannot have (it shows no triggers) in absolute terms.
    """
    before, after = summaries[baseline], summaries[headline]
    drop = dropoff_key(focus_step)
    rows = [
        CaseRow(
            "Completion rate",
            pct(before.metrics[COMPLETION]),
            pct(after.metrics[COMPLETION]),
            signed_pct(after.relative[COMPLETION]),
        ),
        CaseRow(
            f"Drop-off at {focus_step.replace('_', ' ')}",
            pct(before.metrics[drop]),
            pct(after.metrics[drop]),
            signed_pct(after.relative[drop]),
        ),
        CaseRow(
            "Triggers per user-day",
            num(before.metrics[TRIGGERS_PER_USER_DAY]),
            num(after.metrics[TRIGGERS_PER_USER_DAY]),
            signed_num(after.diff[TRIGGERS_PER_USER_DAY]),
        ),
        CaseRow(
            "Triggers accepted (user feedback)",
            pct(before.metrics[ACCEPTANCE]),
            pct(after.metrics[ACCEPTANCE]),
            "",
        ),
        CaseRow(
            "Triggers unneeded (no open need)",
            pct(before.metrics[UNNEEDED]),
            pct(after.metrics[UNNEEDED]),
            "",
        ),
        CaseRow(
            "Live-chat escalations per 1k users",
            num(before.metrics[LIVE_CHAT], 1),
            num(after.metrics[LIVE_CHAT], 1),
            signed_num(after.diff[LIVE_CHAT], 1),
        ),
    ]
    return rows


def evaluation_notes(
    summaries: dict[str, PolicySummary],
    specs: Sequence[PolicySpec],
    policy: PolicyConfig,
    signals: SignalsConfig,
) -> list[str]:
    """What the tables alone hide: why live chat never fired, how little the model scored."""
    notes = []
    engine = [s.name for s in specs if s.kind != PolicyKind.NONE and s.name in summaries]
    if engine and all(summaries[n].metrics[LIVE_CHAT].value == 0 for n in engine):
        checkpoints = signals.moments.pause_checkpoints_s
        pause_rules = [
            r for r in policy.escalation if r.signal == "pause_s" and MomentType.PAUSE in r.moments
        ]
        if pause_rules and not any(holds(r, c) for r in pause_rules for c in checkpoints):
            rule = pause_rules[0]
            notes.append(
                f"no policy escalated to live chat: the dispatcher calls at pauses of "
                f"{', '.join(f'{c:g}' for c in checkpoints)} s (signals.yaml), and the "
                f"escalation rule `{rule.name}` needs pause_s {rule.op} {rule.threshold:g} "
                "(policy.yaml), which no checkpoint satisfies"
            )
        else:
            notes.append("no policy escalated to live chat")
    for spec in specs:
        if spec.kind == PolicyKind.MODEL and spec.name in summaries:
            share = summaries[spec.name].metrics[MODEL_SHARE].value
            if share < 1.0:
                rule = spec.cold_start or "as served (serving.yaml features.cold_start)"
                notes.append(
                    f"{spec.name}: the model scored {share:.0%} of decisions; the rules "
                    f"answered the rest (cold start {rule})"
                )
    return notes
