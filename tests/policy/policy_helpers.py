"""A synthetic bandit log whose true values are known in closed form."""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.bandit import Context
from training.policy.data import BanditLog

ACTIONS = ("none", "contextual_tip", "tooltip")
# true completion probability by (moment, action): the tip helps pauses, the tooltip helps
# CTA failures, a mismatched trigger hurts a little
TRUTH = {
    ("pause", "none"): 0.50,
    ("pause", "contextual_tip"): 0.80,
    ("pause", "tooltip"): 0.45,
    ("cta_fail", "none"): 0.50,
    ("cta_fail", "contextual_tip"): 0.40,
    ("cta_fail", "tooltip"): 0.85,
}
# the logging policy's probabilities, context-dependent so that a plain average is biased
LOGGING = {
    "pause": {"none": 0.2, "contextual_tip": 0.6, "tooltip": 0.2},
    "cta_fail": {"none": 0.45, "contextual_tip": 0.45, "tooltip": 0.1},
}
MOMENT_SHARE = {"pause": 0.5, "cta_fail": 0.5}


def synthetic_log(
    users: int = 400, per_user: int = 10, trigger_cost: float = 0.03, seed: int = 0
) -> BanditLog:
    rng = np.random.default_rng(seed)
    rows, contexts = [], []
    for u in range(users):
        for k in range(per_user):
            moment = "pause" if rng.random() < MOMENT_SHARE["pause"] else "cta_fail"
            probs = LOGGING[moment]
            action = rng.choice(ACTIONS, p=[probs[a] for a in ACTIONS])
            completed = float(rng.random() < TRUTH[(moment, action)])
            shown = float(action != "none")
            rows.append(
                {
                    "decision_id": f"d{u}-{k}",
                    "user_id": f"u{u}",
                    "ts": pd.Timestamp("2025-03-01", tz="UTC") + pd.Timedelta(minutes=u * 60 + k),
                    "step": "identity_verification",
                    "moment": moment,
                    "source": "model",
                    "holdout": False,
                    "chosen": str(action),
                    "propensity": probs[action],
                    "eligible": ACTIONS,
                    "table_action": "contextual_tip" if moment == "pause" else "tooltip",
                    "escalated": False,
                    "model_scored": True,
                    "completed": completed,
                    "shown": shown,
                    "reward": completed - trigger_cost * shown,
                }
            )
            noise = float(rng.random())
            contexts.append(Context((("moment", moment),), (("noise", noise),)))
    return BanditLog(pd.DataFrame(rows), contexts, censored=0)


def best_action(moment: str) -> str:
    return max(ACTIONS, key=lambda a: TRUTH[(moment, a)])
