"""Labels of decision points: did the user abandon the step?

Two label kinds (`label_kind` in configs/signals.yaml, `LabelKind`):

horizon (`label_decisions`): a decision point is labelled 1 when its step is not completed -
no `step_complete` for that step and no `goal` by the same user - within the label horizon
after the decision time (`label_horizon_minutes` in configs/signals.yaml). Completions in a
later session count: a user who comes back and finishes within the horizon did not abandon.

A decision whose horizon runs past the end of the data and that saw no completion yet is
*censored*: the answer is unknown, so its label is null (never a guessed 1). The builder
counts and drops them.

session_end (`label_session_end`): 1 when the decision's session ends without a
`step_complete` of its step or a `goal` after the decision; 0 when one follows in the same
session. A session is over once its last event is a session gap old at the end of the data;
decisions of sessions still open then are censored. Shops and short exports need this one:
a fixed horizon censors every decision near the end of the data and keeps mostly those
followed by a purchase.

Everything here is one DuckDB query with as-of joins (the next completion at or after the
decision), so it runs per user partition on any engine that has them.
"""

from __future__ import annotations

import pyarrow as pa

from features.events import EventType
from features.pipeline.aggregates import SESSION_USER_SQL, run_sql

COMPLETION_TYPES: tuple[str, ...] = (EventType.STEP_COMPLETE.value, EventType.GOAL.value)
COMPLETION_SCHEMA = pa.schema(
    [
        ("session_id", pa.string()),
        ("user_id", pa.string()),
        ("step", pa.string()),
        ("type", pa.string()),
        ("ts", pa.float64()),
    ]
)
# A session's end as the labels see it: the time of its last event (aggregates.SUMMARY_SCHEMA
# carries the same column for every human session, so the engines pass their summaries).
SESSION_END_SCHEMA = pa.schema([("session_id", pa.string()), ("last_event_at", pa.float64())])


def completion_events(events: pa.Table) -> pa.Table:
    """COMPLETION_SCHEMA rows for every `step_complete` / `goal` in canonical `events`, each
    under its session and its session's user (so a completion before the user identified
    still counts)."""
    return run_sql(
        f"""
        WITH e AS (SELECT *, epoch_us(ts) AS us FROM events),
        users AS (SELECT session_id, {SESSION_USER_SQL} AS user_id FROM e GROUP BY session_id)
        SELECT e.session_id, u.user_id, e.step, e.type, e.us / 1e6 AS ts
        FROM e JOIN users u USING (session_id)
        WHERE e.type IN {COMPLETION_TYPES}
        ORDER BY u.user_id, ts
        """,
        events=events.select(["session_id", "user_id", "anonymous_id", "ts", "type", "step"]),
    ).cast(COMPLETION_SCHEMA)


def label_decisions(
    decisions: pa.Table,
    completions: pa.Table,
    *,
    horizon_s: float,
    data_end: float,
) -> pa.Table:
    """`decisions` (needs user_id, step, request_ts) with `label` (int64, null = censored)
    and `completed_at` (epoch s of the first completion at or after the decision, or null).

    `completions` has COMPLETION_SCHEMA's columns: one row per `step_complete` / `goal`
    event with its user and epoch-second time; `data_end` is the time of the last event.
    Row order of `decisions` is kept.
    """
    missing = [c for c in ("user_id", "step", "request_ts") if c not in decisions.column_names]
    if missing:
        raise KeyError(f"decisions lack columns needed for labels: {', '.join(missing)}")
    if horizon_s <= 0:
        raise ValueError(f"label horizon must be positive, got {horizon_s} s")
    return run_sql(
        f"""
            WITH d AS (SELECT row_number() OVER () AS _row, * FROM decisions_in),
            steps_done AS (
                SELECT user_id, step, ts FROM completions
                WHERE type = '{EventType.STEP_COMPLETE.value}' AND step IS NOT NULL
            ),
            goals AS (SELECT user_id, ts FROM completions WHERE type = '{EventType.GOAL.value}'),
            joined AS (
                SELECT d.*, least(s.ts, g.ts) AS completed_at
                FROM d
                ASOF LEFT JOIN steps_done s
                    ON d.user_id = s.user_id AND d.step = s.step AND s.ts >= d.request_ts
                ASOF LEFT JOIN goals g
                    ON d.user_id = g.user_id AND g.ts >= d.request_ts
            )
            SELECT * EXCLUDE (_row, completed_at),
                CASE
                    WHEN completed_at <= request_ts + $horizon THEN 0
                    WHEN request_ts + $horizon > $data_end THEN NULL
                    ELSE 1
                END::BIGINT AS label,
                completed_at
            FROM joined
            ORDER BY _row
            """,
        {"horizon": horizon_s, "data_end": data_end},
        decisions_in=decisions,
        completions=completions.select(["user_id", "step", "type", "ts"]),
    )


def session_ends(events: pa.Table) -> pa.Table:
    """SESSION_END_SCHEMA rows of canonical `events`: each session's last event time."""
    return run_sql(
        "SELECT session_id, max(epoch_us(ts)) / 1e6 AS last_event_at FROM e GROUP BY session_id",
        e=events.select(["session_id", "ts"]),
    ).cast(SESSION_END_SCHEMA)


def label_session_end(
    decisions: pa.Table,
    completions: pa.Table,
    ends: pa.Table,
    *,
    session_gap_s: float,
    data_end: float,
) -> pa.Table:
    """`decisions` (needs session_id, step, request_ts) with `label` (int64, null = the
    session was still open at `data_end`) and `completed_at` (epoch s of the first completion
    of the step, or goal, in the same session at or after the decision, or null).

    `completions` are `completion_events` rows (session_id, step, type, ts), `ends` the sessions'
    last event times (SESSION_END_SCHEMA: `session_ends`, or the session summaries); only
    per-session inputs, so the Spark engine labels a user partition exactly as the embedded
    one labels everything. Order of `decisions` is kept.
    """
    missing = [c for c in ("session_id", "step", "request_ts") if c not in decisions.column_names]
    if missing:
        raise KeyError(f"decisions lack columns needed for labels: {', '.join(missing)}")
    if session_gap_s <= 0:
        raise ValueError(f"session gap must be positive, got {session_gap_s} s")
    return run_sql(
        f"""
            WITH d AS (SELECT row_number() OVER () AS _row, * FROM decisions_in),
            steps_done AS (
                SELECT session_id, step, ts FROM completions
                WHERE type = '{EventType.STEP_COMPLETE.value}' AND step IS NOT NULL
            ),
            goals AS (
                SELECT session_id, ts FROM completions WHERE type = '{EventType.GOAL.value}'
            ),
            joined AS (
                SELECT d.*, least(s.ts, g.ts) AS completed_at, ends.last_event_at AS last_at
                FROM d
                LEFT JOIN ends ON d.session_id = ends.session_id
                ASOF LEFT JOIN steps_done s
                    ON d.session_id = s.session_id AND d.step = s.step AND s.ts >= d.request_ts
                ASOF LEFT JOIN goals g
                    ON d.session_id = g.session_id AND g.ts >= d.request_ts
            )
            SELECT * EXCLUDE (_row, completed_at, last_at),
                CASE
                    WHEN completed_at IS NOT NULL THEN 0
                    WHEN last_at IS NULL OR last_at + $gap > $data_end THEN NULL
                    ELSE 1
                END::BIGINT AS label,
                completed_at
            FROM joined
            ORDER BY _row
            """,
        {"gap": session_gap_s, "data_end": data_end},
        decisions_in=decisions,
        completions=completions.select(["session_id", "step", "type", "ts"]),
        ends=ends.select(list(SESSION_END_SCHEMA.names)),
    )


def attach_oracle(decisions: pa.Table, oracle: pa.Table) -> pa.Table:
    """`decisions` with `oracle_p`: the simulator's true abandonment probability in force at
    the decision (latest `ts_from` <= request_ts for the same session and step; null when
    none). `oracle` has session_id, step, ts_from (epoch s), p_abandon. Order is kept.
    """
    return run_sql(
        """
            WITH d AS (SELECT row_number() OVER () AS _row, * FROM decisions_in)
            SELECT d.* EXCLUDE (_row), o.p_abandon::DOUBLE AS oracle_p
            FROM d
            ASOF LEFT JOIN oracle o
                ON d.session_id = o.session_id AND d.step = o.step AND d.request_ts >= o.ts_from
            ORDER BY d._row
            """,
        decisions_in=decisions,
        oracle=oracle.select(["session_id", "step", "ts_from", "p_abandon"]),
    )
