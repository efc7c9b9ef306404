"""`intent policy tune`: per cohort, the model's assist threshold that maximises completion
within a trigger budget, chosen by off-policy evaluation of an exploration log.

A cohort is device x returning. For each threshold t of the grid, the candidate policy is
the served one with the `uncertain` band's upper bound (where assisting starts) moved to t
for the cohort's model-scored decisions: a score >= t gets the table's content (the
moment's default content where the table had shown nothing), a lower one nothing; escalations
and the holdout are unchanged. Its completion and trigger rate come from the doubly robust
estimator with user-bootstrap intervals; the chosen t maximises completion among those whose
trigger rate stays within `max_trigger_ratio` of the current policy's. The result is a
policy overlay (`core.policy_config.PolicyOverlay`: cohorts plus provenance) that
`configs/policy.yaml` includes (`include: [...]`) or an experiment arm applies (`include:`).

Approximation (stated in the output): where the table had shown nothing, the content a lower
threshold would show is the moment's default, not a signal-table rule that may hold.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from pydantic import ValidationError

from core.bandit import BanditConfig
from core.policy_config import (
    Cohort,
    PolicyConfig,
    PolicyOverlay,
    ThresholdOverrides,
    with_overlay,
)
from core.settings import ConfigError, format_validation_error
from training.policy.data import BanditLog
from training.policy.ope import RewardModel, deterministic, evaluate


@dataclass(frozen=True)
class CohortChoice:
    device: str
    returning: bool
    decisions: int
    threshold: float | None  # None: keep the current thresholds
    current: dict[str, float]  # completed / shown (DR) and their intervals
    tuned: dict[str, float]


def threshold_targets(
    frame: pd.DataFrame, policy: PolicyConfig, threshold: float, keep_escalation: bool
) -> list[str]:
    """The served policy with assisting from `threshold` on (see the module docstring)."""
    out = []
    for row in frame.itertuples(index=False):
        if row.holdout or not row.model_scored or (row.escalated and keep_escalation):
            out.append(row.table_action)
        elif row.score >= threshold:
            default = policy.moment_defaults[row.moment].value
            out.append(row.table_action if row.table_action != "none" else default)
        else:
            out.append("none")
    return out


def _subset_model(model: RewardModel, idx: np.ndarray) -> RewardModel:
    return RewardModel({o: [rows[i] for i in idx] for o, rows in model.q.items()})


def _dr(estimates) -> dict[str, float]:
    out = {}
    for e in estimates:
        if e.estimator == "dr" and e.outcome in ("completed", "shown"):
            out[e.outcome] = e.value
            out[f"{e.outcome}_low"] = e.low
            out[f"{e.outcome}_high"] = e.high
    return out


def tune(
    log: BanditLog,
    model: RewardModel,
    policy: PolicyConfig,
    cfg: BanditConfig,
    thresholds: list[float],
    max_trigger_ratio: float,
    min_decisions: int,
) -> list[CohortChoice]:
    """One choice per device x returning cohort with enough decisions."""
    frame = log.frame
    choices = []
    for (device, returning), part in frame.groupby(["device", "returning"], dropna=False):
        if len(part) < min_decisions:
            continue
        idx = part.index.to_numpy()
        sub = BanditLog(part.reset_index(drop=True), [log.contexts[i] for i in idx], 0)
        sub_model = _subset_model(model, idx)
        pairs = zip(sub.frame["holdout"], sub.frame["table_action"], strict=True)
        current_target = deterministic(["none" if h else a for h, a in pairs])
        current = _dr(evaluate("current", sub, current_target, sub_model, cfg.ope)[0])
        best, best_t = None, None
        for t in thresholds:
            target = threshold_targets(sub.frame, policy, t, cfg.learned.keep_escalation)
            found = _dr(evaluate(f"t{t}", sub, deterministic(target), sub_model, cfg.ope)[0])
            if found["shown"] > current["shown"] * max_trigger_ratio:
                continue
            if best is None or found["completed"] > best["completed"]:
                best, best_t = found, t
        if best is None or best["completed"] <= current["completed"]:
            best, best_t = current, None
        choices.append(CohortChoice(str(device), bool(returning), len(part), best_t, current, best))
    return choices


def _note(c: CohortChoice) -> str:
    cur, new = c.current, c.tuned
    text = (
        f"{c.decisions} decisions: current DR completion {cur['completed']:.3f} "
        f"[{cur['completed_low']:.3f}, {cur['completed_high']:.3f}] at {cur['shown']:.3f} "
        "triggers / decision; "
    )
    if c.threshold is None:
        return text + "kept (no threshold does better within the budget)"
    return text + (
        f"tuned (assist from {c.threshold:g}) {new['completed']:.3f} "
        f"[{new['completed_low']:.3f}, {new['completed_high']:.3f}] at {new['shown']:.3f}"
    )


def overlay(choices: list[CohortChoice], provenance: dict[str, str]) -> PolicyOverlay:
    """The tuned cohorts as a policy overlay: provenance as data, each cohort's estimates in
    its note; kept cohorts appear only in the provenance."""
    cohorts, kept = [], {}
    for c in choices:
        who = f"{c.device}_{'returning' if c.returning else 'new'}"
        if c.threshold is None:
            kept[f"kept {who}"] = _note(c)
            continue
        cohorts.append(
            Cohort(
                name=f"tuned_{who}",
                device=c.device,
                returning=c.returning,
                overrides=ThresholdOverrides(bands={"uncertain": c.threshold}),
                note=_note(c),
            )
        )
    return PolicyOverlay(provenance={**provenance, **kept}, cohorts=cohorts)


def overlay_yaml(found: PolicyOverlay) -> str:
    header = (
        "# A policy overlay written by `intent policy tune`. Use it from configs/policy.yaml\n"
        "# (`include: [<path relative to policy.yaml>]`: its cohorts follow the file's own)\n"
        "# or as an experiment arm (`{name: tuned, weight: 1, overrides: {}, include: <path>}`).\n"
    )
    body = found.model_dump(mode="json", exclude_none=True)
    return header + yaml.safe_dump(body, sort_keys=False)


def check_overlay(policy: PolicyConfig, found: PolicyOverlay) -> None:
    """Raise ConfigError unless `policy` with the overlay's cohorts appended still validates
    (known bands, bands in order for every cohort combination)."""
    try:
        with_overlay(policy, found)
    except ValidationError as exc:
        msg = format_validation_error(exc, "policy.yaml + tuned overlay")
        raise ConfigError(f"the tuned overlay does not fit policy.yaml:\n{msg}") from exc


def write_overlay(text: str, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
