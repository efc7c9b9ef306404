"""Decision log + outcomes -> one bandit row per decision (context, action, propensity, reward).

The chosen action is what the logging policy picked before the caps: `none` for the global
holdout (deterministic, propensity 1), else `would_action` with its logged propensity. The
caps are part of the environment: a capped choice shows nothing, and its outcomes say so.
Outcomes come from the efficacy report's own labelling (`loop.efficacy`): the
decision's step completed within the label horizon (censored decisions are dropped), and
whether a trigger was shown. reward = completed - trigger_cost x shown.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from core.bandit import BanditConfig, Context, context_features
from core.vocabulary import ActionType, MomentType, Source

NONE = ActionType.NONE.value


class PolicyDataError(ValueError):
    """The log cannot be learned from or evaluated (empty, no propensities, no outcomes)."""


@dataclass(frozen=True)
class BanditLog:
    """Bandit rows (`frame`) and their contexts, in the same order."""

    frame: pd.DataFrame  # user_id, decision_id, ts, chosen, propensity, eligible, table_action,
    # escalated, model_scored, completed, shown, reward, moment, step, source
    contexts: list[Context]
    censored: int

    @property
    def window(self) -> tuple[str, str]:
        ts = self.frame["ts"]
        return str(ts.min()), str(ts.max())


def _table_action(reasons_json: str, would: str) -> str:
    """The table's (or model path's) choice: the selector records it when it differed."""
    for reason in json.loads(reasons_json or "[]"):
        if reason.get("kind") == "bandit" and "table: " in (reason.get("detail") or ""):
            return reason["detail"].rsplit("table: ", 1)[1].strip()
    return would


def bandit_log(
    decisions: pd.DataFrame,
    outcomes: pd.DataFrame,
    events: pa.Table,
    *,
    horizon_s: float,
    cfg: BanditConfig,
) -> BanditLog:
    """One row per labelled decision at a micro-moment (see the module docstring)."""
    from features.pipeline.labels import completion_events
    from loop.efficacy import labelled_decisions

    if decisions.empty:
        raise PolicyDataError("the decision log has no decisions")
    if events.num_rows == 0:
        raise PolicyDataError("no events: completions come from the event store or --events")
    data_end = pc.max(events["ts"]).value / 1e6
    frame = labelled_decisions(
        decisions, outcomes, completion_events(events), horizon_s=horizon_s, data_end=data_end
    )
    frame = frame[frame["moment"].isin([m.value for m in MomentType])]
    censored = int(frame["completed"].isna().sum())
    frame = frame[frame["completed"].notna()].reset_index(drop=True)
    if frame.empty:
        raise PolicyDataError("no labelled decisions at a micro-moment in the log")
    if "propensity" not in frame:
        frame["propensity"] = np.nan
    holdout = frame["holdout"].astype(bool)
    frame["chosen"] = np.where(holdout, NONE, frame["would_action"])
    frame["propensity"] = np.where(holdout, 1.0, frame["propensity"].astype("float64").fillna(1.0))
    frame["table_action"] = [
        NONE if h else _table_action(r, w)
        for h, r, w in zip(holdout, frame["reasons"], frame["would_action"], strict=True)
    ]
    frame["escalated"] = [
        any(x.get("kind") == "escalation" for x in json.loads(r or "[]")) for r in frame["reasons"]
    ]
    eligible = []
    raw = frame["eligible_actions"] if "eligible_actions" in frame else [None] * len(frame)
    for moment, chosen, table, listed in zip(
        frame["moment"], frame["chosen"], frame["table_action"], raw, strict=True
    ):
        found = list(json.loads(listed)) if isinstance(listed, str) and listed else []
        if not found:
            found = list(cfg.eligible(MomentType(moment), table))
        for action in (chosen, table):
            if action not in found:
                found.append(action)
        eligible.append(tuple(found))
    frame["eligible"] = eligible
    frame["model_scored"] = frame["source"] == Source.MODEL.value
    frame["holdout"] = holdout
    if cfg.reward.outcome == "goal":  # the whole onboarding, not just this step
        frame["completed"] = frame["goal"].astype("float64")
    frame["completed"] = frame["completed"].astype("float64")
    frame["shown"] = frame["shown"].astype("float64")
    frame["reward"] = frame["completed"] - cfg.reward.trigger_cost * frame["shown"]
    contexts = [
        context_features(
            moment=row.moment,
            step=row.step,
            band=row.band,
            score=float(row.score),
            device=row.device,
            channel=row.channel,
            signals=json.loads(row.signals or "{}"),
            cfg=cfg.context,
        )
        for row in frame.itertuples(index=False)
    ]
    frame["returning"] = [dict(c.categorical)["returning"] == "1" for c in contexts]
    keep = [
        "decision_id",
        "user_id",
        "ts",
        "step",
        "moment",
        "score",
        "band",
        "device",
        "returning",
        "source",
        "holdout",
        "chosen",
        "propensity",
        "eligible",
        "table_action",
        "escalated",
        "model_scored",
        "completed",
        "shown",
        "reward",
    ]
    return BanditLog(frame[keep].copy(), contexts, censored)
