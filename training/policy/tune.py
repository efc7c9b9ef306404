"""`intent policy tune`: per cohort, the model's assist threshold that maximises completion
within a trigger budget, chosen by off-policy evaluation of an exploration log.

A cohort is device x returning. For each threshold t of the grid, the candidate policy is
the served one with the `uncertain` band's upper bound (where assisting starts) moved to t
for the cohort's model-scored decisions: a score >= t gets the table's content (the
moment's default content where the table had shown nothing), a lower one nothing; escalations
and the holdout are unchanged. Its completion and trigger rate come from the doubly robust
estimator with user-bootstrap intervals; the chosen t maximises completion among those whose
trigger rate stays within `max_trigger_ratio` of the current policy's. The result is a
`cohorts:` list in policy.yaml's format, with provenance, for `configs/policy.yaml` or an
experiment arm to take up.

Approximation (stated in the output): where the table had shown nothing, the content a lower
threshold would show is the moment's default, not a signal-table rule that may hold.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from core.bandit import BanditConfig
from core.policy_config import PolicyConfig
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


def overlay_yaml(choices: list[CohortChoice], provenance: dict[str, str]) -> str:
    """policy.yaml `cohorts:` entries for the tuned cohorts, provenance as comments."""
    lines = [f"# {k}: {v}" for k, v in provenance.items()]
    cohorts = []
    for c in choices:
        c_cur, c_new = c.current, c.tuned
        lines.append(
            f"# {c.device} / {'returning' if c.returning else 'new'} ({c.decisions} decisions): "
            f"current DR completion {c_cur['completed']:.3f} [{c_cur['completed_low']:.3f}, "
            f"{c_cur['completed_high']:.3f}] at {c_cur['shown']:.3f} triggers / decision; "
            + (
                f"tuned (assist from {c.threshold:g}) {c_new['completed']:.3f} "
                f"[{c_new['completed_low']:.3f}, {c_new['completed_high']:.3f}] at "
                f"{c_new['shown']:.3f}"
                if c.threshold is not None
                else "kept (no threshold does better within the budget)"
            )
        )
        if c.threshold is not None:
            cohorts.append(
                {
                    "name": f"tuned_{c.device}_{'returning' if c.returning else 'new'}",
                    "device": c.device,
                    "returning": c.returning,
                    "overrides": {"bands": {"uncertain": c.threshold}},
                }
            )
    body = yaml.safe_dump({"cohorts": cohorts}, sort_keys=False)
    return "\n".join(lines) + "\n" + body


def write_overlay(text: str, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "policy_cohorts.yaml"
    path.write_text(text)
    return path
