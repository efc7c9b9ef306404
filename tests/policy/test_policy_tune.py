"""`intent policy tune` on a synthetic log whose best assist threshold is known."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from core.bandit import BanditConfig, Context
from core.policy_config import PolicyConfig
from core.settings import load_config
from training.policy.data import BanditLog
from training.policy.ope import fit_reward_model
from training.policy.tune import overlay_yaml, tune

REPO_CONFIGS = Path(__file__).resolve().parents[2] / "configs"
STEP_AT = 0.6  # help raises completion only from this score on; below it, it hurts


def threshold_log(users: int = 500, per_user: int = 10, seed: int = 1) -> BanditLog:
    rng = np.random.default_rng(seed)
    rows, contexts = [], []
    for u in range(users):
        for k in range(per_user):
            score = float(rng.uniform(0.4, 0.9))
            action = "contextual_tip" if rng.random() < 0.5 else "none"
            lift = 0.3 if score >= STEP_AT else -0.1
            p = 0.5 + (lift if action != "none" else 0.0)
            completed = float(rng.random() < p)
            shown = float(action != "none")
            rows.append(
                {
                    "decision_id": f"d{u}-{k}",
                    "user_id": f"u{u}",
                    "ts": pd.Timestamp("2025-03-01", tz="UTC"),
                    "step": "identity_verification",
                    "moment": "pause",
                    "score": score,
                    "band": "mild",
                    "device": "mobile",
                    "returning": False,
                    "source": "model",
                    "holdout": False,
                    "chosen": action,
                    "propensity": 0.5,
                    "eligible": ("none", "contextual_tip"),
                    "table_action": "contextual_tip" if score >= 0.5 else "none",
                    "escalated": False,
                    "model_scored": True,
                    "completed": completed,
                    "shown": shown,
                    "reward": completed - 0.05 * shown,
                }
            )
            tenth = f"{int(score * 10)}"
            contexts.append(Context((("moment", "pause"), ("tenth", tenth)), (("score", score),)))
    return BanditLog(pd.DataFrame(rows), contexts, 0)


def test_the_tuned_threshold_finds_where_help_starts_to_pay() -> None:
    cfg = load_config(BanditConfig, REPO_CONFIGS / "bandit.yaml")
    policy = load_config(PolicyConfig, REPO_CONFIGS / "policy.yaml")
    log = threshold_log()
    model = fit_reward_model(log, 0.05)
    [choice] = tune(log, model, policy, cfg, [0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.8], 1.0, 100)
    assert choice.threshold == pytest.approx(STEP_AT, abs=0.051)
    assert choice.tuned["completed"] > choice.current["completed"]
    assert choice.tuned["shown"] <= choice.current["shown"]
    text = overlay_yaml([choice], {"log": "synthetic"})
    assert text.startswith("# log: synthetic")
    [cohort] = yaml.safe_load(text)["cohorts"]
    assert cohort["device"] == "mobile" and cohort["returning"] is False
    assert cohort["overrides"]["bands"]["uncertain"] == choice.threshold
    # the overlay is a valid policy.yaml cohort list
    raw = yaml.safe_load((REPO_CONFIGS / "policy.yaml").read_text())
    raw["cohorts"] = raw["cohorts"] + [cohort]
    PolicyConfig.model_validate(raw)
