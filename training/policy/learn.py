"""`intent policy learn`: a Vowpal Wabbit CB-ADF policy from a decision log, as an artefact.

VW regresses each action's cost (-reward) on the context x action interactions, importance-
weighted by the logged propensities (`--cb_type mtr` by default); the policy picks the
eligible action with the lowest predicted cost. Only model-scored decisions are learned
from and decided by it: a rules decision's score is the heuristic's, another scale. The
artefact is `models/policy/<version>/` = `policy.vw` + `manifest.json` (args, actions,
reward, context, data window, OPE estimates, sha256), which `serving.bandit` verifies.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.bandit import (
    MANIFEST_FILE,
    MODEL_FILE,
    POLICY_DIR,
    BanditConfig,
    LearnedPolicy,
    sha256_file,
    vw_example,
)
from training.policy.data import BanditLog, PolicyDataError


def vw_args(cfg: BanditConfig) -> str:
    return f"{cfg.vw.args} --quiet --random_seed {cfg.vw.seed}"


def train_vw(log: BanditLog, cfg: BanditConfig, rows: Sequence[int] | None = None):
    """A trained VW workspace over the model-scored rows (or `rows`); caller finishes it."""
    import vowpalwabbit

    frame = log.frame
    if rows is None:
        rows = [i for i, scored in enumerate(frame["model_scored"]) if scored]
    if not rows:
        raise PolicyDataError(
            "no model-scored decisions to learn from: the learned policy decides only where "
            "the model scores (a champion must be serving when the log is written)"
        )
    examples = []
    for i in rows:
        eligible = list(frame.at[i, "eligible"])
        chosen = eligible.index(frame.at[i, "chosen"])
        label = (chosen, -float(frame.at[i, "reward"]), float(frame.at[i, "propensity"]))
        examples.append(vw_example(log.contexts[i], eligible, label))
    ws = vowpalwabbit.Workspace(vw_args(cfg))
    rng = random.Random(cfg.vw.seed)
    for _ in range(cfg.vw.passes):
        rng.shuffle(examples)
        for lines in examples:
            ws.learn(lines)
    return ws


def write_artefact(ws, models_dir: Path, manifest: dict[str, Any], version: str | None = None):
    """Save the model and its manifest (with the file's sha256); returns the folder."""
    version = version or datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    folder = Path(models_dir) / POLICY_DIR / version
    folder.mkdir(parents=True, exist_ok=True)
    ws.save(str(folder / MODEL_FILE))
    full = {**manifest, "version": version, "sha256": sha256_file(folder / MODEL_FILE)}
    (folder / MANIFEST_FILE).write_text(json.dumps(full, indent=2, sort_keys=True, default=str))
    return folder


def manifest_for(log: BanditLog, cfg: BanditConfig, rows: int) -> dict[str, Any]:
    start, end = log.window
    return {
        "kind": "vw-cb-adf",
        "vw_args": vw_args(cfg),
        "passes": cfg.vw.passes,
        "trigger_cost": cfg.reward.trigger_cost,
        "context": cfg.context.model_dump(),
        "actions": {m.value: [a.value for a in acts] for m, acts in cfg.actions.items()},
        "data_window": {"start": start, "end": end},
        "rows": rows,
        "trained_at": datetime.now(UTC).isoformat(),
    }


def learned_choices(policy: LearnedPolicy, log: BanditLog, cfg: BanditConfig) -> list[str]:
    """What the server would choose with `policy` on each logged decision (before caps):
    none for the holdout, the table where the model did not score, escalation is kept or
    (unless may_add_triggers) the table shows nothing, else the lowest predicted cost
    (serving.bandit.ActionSelector without exploration)."""
    out = []
    frame = log.frame
    for i in range(len(frame)):
        if frame.at[i, "holdout"]:
            out.append("none")
        elif (
            not frame.at[i, "model_scored"]
            or (frame.at[i, "escalated"] and cfg.learned.keep_escalation)
            or (frame.at[i, "table_action"] == "none" and not cfg.learned.may_add_triggers)
        ):
            out.append(frame.at[i, "table_action"])
        else:
            out.append(policy.best(log.contexts[i], list(frame.at[i, "eligible"])))
    return out
