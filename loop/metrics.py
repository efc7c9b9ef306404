"""What one simulated run did to the funnel: the numbers `intent evaluate-policy` compares.

All per human user (the simulator's users table says who is a bot; bots get triggers too,
but a script's completion is no product outcome), counted over the whole simulated period
as the source document's case study counts: a user who comes back days later and completes
a step has not dropped off there (`features.simulator.summary`).

Only the simulator knows whether a user needed help: the oracle records the latent need
still open at every moment (`none` once helped), so a trigger is *unneeded* when the need
in force when it was shown is `none`.
"""

from __future__ import annotations

import math

import pandas as pd
import pyarrow as pa

from core.vocabulary import ActionType, Outcome, Source
from features.config import FunnelConfig
from features.events import EventType
from features.pipeline.aggregates import run_sql
from features.simulator.summary import funnel_summary

NONE_NEED = "none"

# Metric names (the keys of `run_metrics`), in report order; dropoff.<step> (share of the
# users reaching the step who never complete it) and completed.<step> (share of all users
# who complete it: the funnel) follow the funnel.
COMPLETION = "completion_rate"
TRIGGERS_PER_USER = "triggers_per_user"
TRIGGERS_PER_USER_DAY = "triggers_per_user_day"
OVER_CAP = "user_days_over_cap"
UNNEEDED = "unneeded_share"
ACCEPTANCE = "acceptance_rate"
LIVE_CHAT = "live_chat_per_1k_users"
DECISIONS_PER_USER = "decisions_per_user"
MODEL_SHARE = "model_share"
CAPPED_SHARE = "capped_share"

DESCRIPTIONS: dict[str, str] = {
    COMPLETION: "human users who completed onboarding",
    TRIGGERS_PER_USER: "triggers shown per human user over the period",
    TRIGGERS_PER_USER_DAY: "triggers shown per active user-day (user's local day with a session)",
    OVER_CAP: "share of active user-days with more triggers than the daily cap",
    UNNEEDED: "share of triggers shown to a user with no open need (simulator's latent state)",
    ACCEPTANCE: "share of shown triggers the user accepted",
    LIVE_CHAT: "live-chat escalations shown per 1,000 human users",
    DECISIONS_PER_USER: "engine decisions (calls at micro-moments) per human user",
    MODEL_SHARE: "share of decisions scored by the model (the rest: rules fallback)",
    CAPPED_SHARE: "share of decisions whose trigger the frequency caps suppressed",
}


def dropoff_key(step: str) -> str:
    return f"dropoff.{step}"


def completed_key(step: str) -> str:
    return f"completed.{step}"


def metric_names(funnel: FunnelConfig) -> list[str]:
    """Every metric `run_metrics` returns, in report order."""
    return [
        COMPLETION,
        *(dropoff_key(s) for s in funnel.steps),
        *(completed_key(s) for s in funnel.steps),
        TRIGGERS_PER_USER,
        TRIGGERS_PER_USER_DAY,
        OVER_CAP,
        UNNEEDED,
        ACCEPTANCE,
        LIVE_CHAT,
        DECISIONS_PER_USER,
        MODEL_SHARE,
        CAPPED_SHARE,
    ]


def _ratio(num: float, den: float) -> float:
    return num / den if den else math.nan


def trigger_facts(events: pa.Table, users: pa.Table, oracle: pa.Table) -> pa.Table:
    """One row per trigger shown to a human: `user_id, day` (user's local date), `action`,
    `need` (the oracle's open need when it was shown; null when unknown), `accepted`."""
    return run_sql(
        f"""
        WITH h AS (SELECT user_id, tz FROM users WHERE NOT is_bot),
        shown AS (
            SELECT e.user_id, e.session_id, e.ts, e.target AS action, h.tz,
                json_extract_string(e.props, '$.decision_id') AS decision_id
            FROM events e JOIN h USING (user_id)
            WHERE e.type = '{EventType.TRIGGER_SHOWN}'
        ),
        reactions AS (
            SELECT json_extract_string(props, '$.decision_id') AS decision_id,
                bool_or(target = '{Outcome.ACCEPTED}') AS accepted
            FROM events WHERE type = '{EventType.TRIGGER_OUTCOME}' GROUP BY 1
        )
        SELECT s.user_id, timezone(s.tz, s.ts)::DATE AS day, s.action, o.need,
            coalesce(r.accepted, false) AS accepted
        FROM shown s
        ASOF LEFT JOIN oracle o ON s.session_id = o.session_id AND s.ts >= o.ts_from
        LEFT JOIN reactions r USING (decision_id)
        """,
        events=events.select(["user_id", "session_id", "ts", "type", "target", "props"]),
        users=users.select(["user_id", "is_bot", "tz"]),
        oracle=oracle.select(["session_id", "ts_from", "need"]),
    )


def active_user_days(events: pa.Table, users: pa.Table) -> int:
    """Distinct (human user, local calendar day) pairs with at least one event."""
    table = run_sql(
        """
        SELECT count(*) AS n FROM (
            SELECT DISTINCT e.user_id, timezone(u.tz, e.ts)::DATE
            FROM events e JOIN users u USING (user_id) WHERE NOT u.is_bot
        )
        """,
        events=events.select(["user_id", "ts"]),
        users=users.select(["user_id", "is_bot", "tz"]),
    )
    return int(table["n"][0].as_py())


def run_metrics(
    events: pa.Table,
    users: pa.Table,
    oracle: pa.Table,
    funnel: FunnelConfig,
    max_per_day: int,
    decisions: pd.DataFrame | None,
) -> dict[str, float]:
    """The metrics of one run (keys: `metric_names(funnel)`).

    `decisions` is the engine's decision log (None for a policy without one: its decision
    metrics are NaN). Rates with an empty denominator are NaN, never 0.
    """
    summary = funnel_summary(events, users, funnel)
    humans = summary.humans
    out: dict[str, float] = {COMPLETION: summary.completion_rate}
    for stats in summary.steps:
        out[dropoff_key(stats.step)] = stats.dropoff
        out[completed_key(stats.step)] = _ratio(stats.completed, humans)
    facts = trigger_facts(events, users, oracle).to_pandas()
    shown = len(facts)
    days = active_user_days(events, users)
    per_day = facts.groupby(["user_id", "day"]).size()
    out[TRIGGERS_PER_USER] = _ratio(shown, humans)
    out[TRIGGERS_PER_USER_DAY] = _ratio(shown, days)
    out[OVER_CAP] = _ratio(int((per_day > max_per_day).sum()), days)
    known = facts["need"].notna()
    out[UNNEEDED] = _ratio(int((facts.loc[known, "need"] == NONE_NEED).sum()), int(known.sum()))
    out[ACCEPTANCE] = _ratio(int(facts["accepted"].sum()), shown)
    live = int((facts["action"] == ActionType.LIVE_CHAT.value).sum())
    out[LIVE_CHAT] = _ratio(1000.0 * live, humans)
    out.update(decision_metrics(decisions, users, humans))
    return out


def decision_metrics(
    decisions: pd.DataFrame | None, users: pa.Table, humans: int
) -> dict[str, float]:
    """Per-decision diagnostics of an engine run (NaN without a decision log)."""
    if decisions is None:
        return {DECISIONS_PER_USER: math.nan, MODEL_SHARE: math.nan, CAPPED_SHARE: math.nan}
    bots = set(users.filter(users["is_bot"])["user_id"].to_pylist())
    human = decisions[~decisions["user_id"].isin(bots)]
    n = len(human)
    return {
        DECISIONS_PER_USER: _ratio(n, humans),
        MODEL_SHARE: _ratio(int((human["source"] == Source.MODEL.value).sum()), n),
        CAPPED_SHARE: _ratio(int(human["capped"].sum()), n),
    }
