"""Batch aggregates: per-user rolling windows and per-step daily statistics, point in time.

Both tables are built from per-session summaries in DuckDB SQL - window functions for the
rolling sums, range joins for the medians (a median does not decompose) - so they run per
partition: all sessions of a set of users for `user_stats`, all sessions of a set of steps
for `step_stats`, and port to a distributed SQL engine as they are.

Point-in-time rule: a session's facts become known when the session is known to be over
(its last event + the session gap of configs/events.yaml). A `user_stats` row at time X
aggregates sessions known over in (X - w, X] for each window w; rows exist at every time
the values change - a session ends, or leaves a window - so the latest row at or before
any instant is exact. A `step_stats` row at midnight of day D uses the sessions known over
on days [D - step_window_days, D - 1], never day D itself. Rows later than the last event
of the data are not written: they would claim knowledge of sessions not seen yet.

Which gaps count as pauses and what a step visit is come from the replay (the state
machine in features/signals.py), never from a second definition here.
"""

from __future__ import annotations

import os
import threading

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from core.vocabulary import Outcome
from features.config import FunnelConfig
from features.events import EventType
from features.pipeline.config import AggregatesConfig
from features.signals import USER_FIRST_SEEN

US_PER_S = 1_000_000
US_PER_DAY = 86_400 * US_PER_S
TS_TYPE = pa.timestamp("us", tz="UTC")

# Per-user counts summed over each window; user_furthest_step_* is a max (-1: no session in
# the window) and user_typical_pause_s_* a median (null: no gap in the window).
USER_SUMS: tuple[str, ...] = (
    "sessions",
    "steps_completed",
    "abandonments",
    "help_opens",
    "triggers_shown",
    "triggers_accepted",
)
USER_LATEST: tuple[str, ...] = ("user_device", "user_channel", USER_FIRST_SEEN)
# 1 on the first day's intraday fallback rows of step_stats (no prior day to use), else 0.
STEP_FALLBACK = "step_stats_fallback"
STEP_FEATURES: tuple[str, ...] = (
    "step_sessions",
    "step_dropoff_rate",
    "step_typical_time_on_step_s",
    "step_typical_pause_s",
    STEP_FALLBACK,
)
SUMMARY_SCHEMA = pa.schema(
    [
        ("session_id", pa.string()),
        ("user_id", pa.string()),
        ("started_at", pa.float64()),
        ("last_event_at", pa.float64()),
        ("ended_us", pa.int64()),
        ("device", pa.string()),
        ("channel", pa.string()),
        ("steps_completed", pa.int64()),
        ("help_opens", pa.int64()),
        ("triggers_shown", pa.int64()),
        ("triggers_accepted", pa.int64()),
        ("reached_goal", pa.bool_()),
        ("furthest_step", pa.int64()),
        ("abandoned", pa.bool_()),
    ]
)


# The user of a session: its user_id, or its anonymous_id when it never identified (SQL over
# a session's events with columns user_id, anonymous_id and epoch microseconds `us`).
SESSION_USER_SQL = """coalesce(
    arg_min(user_id, us) FILTER (WHERE user_id IS NOT NULL),
    arg_min(anonymous_id, us) FILTER (WHERE anonymous_id IS NOT NULL)
)"""


def user_feature_names(cfg: AggregatesConfig) -> list[str]:
    """Feature columns of user_stats, in table order."""
    names = []
    for w in cfg.user_windows_days:
        names += [f"user_{name}_{w}d" for name in USER_SUMS]
        names += [f"user_furthest_step_{w}d", f"user_typical_pause_s_{w}d"]
    return names + list(USER_LATEST)


_connections = threading.local()


def _connection() -> duckdb.DuckDBPyConnection:
    """This thread's DuckDB connection: opening one costs tens of ms, and policy evaluation
    rebuilds a returning user's aggregates thousands of times. A forked child opens its own."""
    con = getattr(_connections, "con", None)
    if con is None or _connections.pid != os.getpid():
        con = duckdb.connect()
        con.execute("SET enable_progress_bar = false")
        _connections.con, _connections.pid = con, os.getpid()
    return con


def run_sql(sql: str, params: dict | None = None, **tables: pa.Table) -> pa.Table:
    """Run one DuckDB query over arrow tables (registered under their keyword names)."""
    con = _connection()
    for name, table in tables.items():
        con.register(name, table)
    try:
        return con.sql(sql, params=params).to_arrow_table()
    finally:
        for name in tables:
            con.unregister(name)


def _to_utc(table: pa.Table, us_column: str) -> pa.Table:
    """Replace an epoch-microsecond column with `event_timestamp` (UTC timestamp[us])."""
    ts = pc.cast(table.column(us_column), pa.int64()).cast(TS_TYPE)
    i = table.column_names.index(us_column)
    return table.set_column(i, pa.field("event_timestamp", TS_TYPE, nullable=False), ts)


def session_summaries(
    events: pa.Table, visits: pa.Table, funnel: FunnelConfig, session_gap_s: float
) -> pa.Table:
    """One row per session (SUMMARY_SCHEMA): who, when it is known over, what happened.

    `events` are the canonical events of the sessions, `visits` the replay's step visits.
    The user is the session's user_id, or its anonymous_id when it never identified.
    Abandoned = the session's last step visit ended incomplete and the goal was not reached.
    """
    steps = pa.table({"step": funnel.steps, "idx": list(range(len(funnel.steps)))})
    return run_sql(
        f"""
        WITH e AS (
            SELECT session_id, user_id, anonymous_id, epoch_us(ts) AS us, type, target,
                device, channel
            FROM events
        ),
        s AS (
            SELECT session_id,
                {SESSION_USER_SQL} AS user_id,
                min(us) / 1e6 AS started_at,
                max(us) / 1e6 AS last_event_at,
                max(us) + $gap_us AS ended_us,
                arg_min(device, us) FILTER (WHERE device IS NOT NULL) AS device,
                arg_min(channel, us) FILTER (WHERE channel IS NOT NULL) AS channel,
                count(*) FILTER (WHERE type = '{EventType.STEP_COMPLETE}') AS steps_completed,
                count(*) FILTER (WHERE type = '{EventType.HELP_OPEN}') AS help_opens,
                count(*) FILTER (WHERE type = '{EventType.TRIGGER_SHOWN}') AS triggers_shown,
                count(*) FILTER (
                    WHERE type = '{EventType.TRIGGER_OUTCOME}' AND target = '{Outcome.ACCEPTED}'
                ) AS triggers_accepted,
                bool_or(type = '{EventType.GOAL}') AS reached_goal
            FROM e GROUP BY session_id
        ),
        v AS (
            SELECT v.session_id,
                coalesce(max(f.idx), -1) AS furthest_step,
                arg_max(v.completed, v.entered_at) AS last_visit_completed
            FROM visits v LEFT JOIN steps f USING (step)
            GROUP BY v.session_id
        )
        SELECT s.session_id, s.user_id, s.started_at, s.last_event_at,
            s.ended_us::BIGINT AS ended_us, s.device, s.channel, s.steps_completed,
            s.help_opens, s.triggers_shown, s.triggers_accepted, s.reached_goal,
            coalesce(v.furthest_step, -1)::BIGINT AS furthest_step,
            (NOT s.reached_goal AND NOT coalesce(v.last_visit_completed, true)) AS abandoned
        FROM s LEFT JOIN v USING (session_id)
        ORDER BY s.session_id
        """,
        {"gap_us": round(session_gap_s * US_PER_S)},
        events=events.select(
            ["session_id", "user_id", "anonymous_id", "ts", "type", "target", "device", "channel"]
        ),
        visits=visits,
        steps=steps,
    ).cast(SUMMARY_SCHEMA)


def user_stats(
    summaries: pa.Table, gaps: pa.Table, cfg: AggregatesConfig, data_end: float
) -> pa.Table:
    """Per-user rolling aggregates: `user_id, event_timestamp` + `user_feature_names(cfg)`.

    `summaries` from `session_summaries`, `gaps` the replay's interaction gaps (their
    median is the typical pause), `data_end` the epoch second of the data's last event.
    Sums and maxima are window functions over the sessions; the medians join each output
    row with the gaps of its window (a median does not decompose into per-session parts).
    """
    windows = cfg.user_windows_days
    sums, medians = [], []
    for w in windows:
        sums += [f"sum({col}) OVER w{w} AS user_{col}_{w}d" for col in USER_SUMS]
        sums.append(f"coalesce(max(furthest_step) OVER w{w}, -1) AS user_furthest_step_{w}d")
        medians.append(
            f"median(g.gap_s) FILTER (WHERE g.t > p.t - {w * US_PER_DAY}) "
            f"AS user_typical_pause_s_{w}d"
        )
    frames = [
        f"w{w} AS (PARTITION BY user_id ORDER BY t "
        f"RANGE BETWEEN {w * US_PER_DAY - 1} PRECEDING AND CURRENT ROW)"
        for w in windows
    ]
    frames.append(
        "wall AS (PARTITION BY user_id ORDER BY t "
        "RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)"
    )
    zeros = ", ".join(["0"] * len(USER_SUMS[1:]))
    spans = pa.table({"span_us": [w * US_PER_DAY for w in windows]})
    order = ", ".join(user_feature_names(cfg))
    table = run_sql(
        f"""
        WITH s AS (
            SELECT *, ended_us AS t FROM summaries WHERE ended_us <= $end_us
        ),
        stream AS (
            -- a session: its counts, at the time it is known over
            SELECT user_id, t, 1 AS sessions, steps_completed, abandoned::BIGINT AS abandonments,
                help_opens, triggers_shown, triggers_accepted, furthest_step,
                started_at, device, channel
            FROM s
            UNION ALL
            -- the same session leaving each window: a change point with nothing to add
            SELECT s.user_id, s.t + w.span_us, 0, {zeros}, NULL, NULL, NULL, NULL
            FROM s CROSS JOIN spans w WHERE s.t + w.span_us <= $end_us
        ),
        win AS (
            SELECT user_id, t,
                {", ".join(sums)},
                arg_max(device, started_at) FILTER (WHERE device IS NOT NULL) OVER wall
                    AS user_device,
                arg_max(channel, started_at) FILTER (WHERE channel IS NOT NULL) OVER wall
                    AS user_channel,
                min(started_at) OVER wall AS user_first_seen_at
            FROM stream
            WINDOW {", ".join(frames)}
        ),
        p AS (SELECT DISTINCT ON (user_id, t) * FROM win),
        g AS (SELECT s.user_id, s.t, gaps.gap_s FROM gaps JOIN s USING (session_id)),
        pauses AS (
            SELECT p.user_id, p.t, {", ".join(medians)}
            FROM p JOIN g
                ON g.user_id = p.user_id AND g.t <= p.t AND g.t > p.t - {max(windows) * US_PER_DAY}
            GROUP BY p.user_id, p.t
        )
        SELECT p.user_id, p.t, {order}
        FROM p LEFT JOIN pauses USING (user_id, t)
        ORDER BY p.user_id, p.t
        """,
        {"end_us": round(data_end * US_PER_S)},
        summaries=summaries,
        gaps=gaps.select(["session_id", "gap_s"]),
        spans=spans,
    )
    return _to_utc(table, "t").cast(user_stats_schema(cfg))


def user_stats_schema(cfg: AggregatesConfig) -> pa.Schema:
    """Arrow schema of user_stats.parquet (what the Feast view is built from)."""
    fields = [pa.field("user_id", pa.string()), pa.field("event_timestamp", TS_TYPE, False)]
    for name in user_feature_names(cfg):
        if name in ("user_device", "user_channel"):
            dtype = pa.string()
        elif name.startswith("user_typical_pause_s") or name == USER_FIRST_SEEN:
            dtype = pa.float64()
        else:
            dtype = pa.int64()
        fields.append(pa.field(name, dtype))
    return pa.schema(fields)


STEP_STATS_SCHEMA = pa.schema(
    [pa.field("step", pa.string()), pa.field("event_timestamp", TS_TYPE, False)]
    + [
        pa.field(name, pa.int64() if name in ("step_sessions", STEP_FALLBACK) else pa.float64())
        for name in STEP_FEATURES
    ]
)


def _fallback_rows(cfg: AggregatesConfig) -> int:
    """The exclusive `range` end of the fallback rows: every k with k * every < one day."""
    return -(-24 * 60 // cfg.step_fallback_every_minutes)


def step_stats(
    summaries: pa.Table,
    visits: pa.Table,
    gaps: pa.Table,
    cfg: AggregatesConfig,
    data_end: float,
) -> pa.Table:
    """Per-step daily snapshots (STEP_STATS_SCHEMA) over the trailing `step_window_days`.

    step_sessions: sessions that reached the step; step_dropoff_rate: the share of them that
    did not complete it (nor reach the goal); typical time on step and typical pause: the
    medians over step visits and interaction gaps. One row per step seen and per midnight
    from the day after the first known session up to the last midnight <= data_end.

    The first day of the data has no prior day, so it gets fallback rows instead: every
    `step_fallback_every_minutes` from its midnight (up to the next midnight and data_end),
    each over the sessions of that day known over before the row. They carry
    `step_stats_fallback = 1` (the model sees that these statistics are thinner and
    same-day); regular rows carry 0. One day of data thus still has step statistics.
    """
    table = run_sql(
        f"""
        WITH s AS (
            SELECT session_id, reached_goal, ended_us
            FROM summaries WHERE ended_us <= $end_us
        ),
        first_day AS (SELECT min(ended_us) // $day_us AS day FROM s),
        reached AS (  -- one row per session and step it reached: did it drop out there?
            SELECT v.step, s.ended_us,
                (NOT (bool_or(v.completed) OR bool_or(s.reached_goal)))::INTEGER AS dropped
            FROM visits v JOIN s USING (session_id)
            GROUP BY v.step, v.session_id, s.ended_us
        ),
        times AS (  -- each row's time t and the start lo of the sessions it aggregates
            SELECT d.range * $day_us AS t, (d.range - $window) * $day_us AS lo, 0 AS fallback
            FROM range((SELECT day + 1 FROM first_day), $end_us // $day_us + 1) AS d
            UNION ALL
            SELECT f.day * $day_us + k.range * $every_us, f.day * $day_us, 1
            FROM first_day f CROSS JOIN range(1, {_fallback_rows(cfg)}) AS k
            WHERE f.day * $day_us + k.range * $every_us <= $end_us
        ),
        grid AS (SELECT step, t, lo, fallback FROM (SELECT DISTINCT step FROM reached), times),
        dropoff AS (
            SELECT g.step, g.t, count(*) AS step_sessions, avg(r.dropped) AS step_dropoff_rate
            FROM grid g JOIN reached r
                ON r.step = g.step AND r.ended_us >= g.lo AND r.ended_us < g.t
            GROUP BY g.step, g.t
        ),
        time_on AS (
            SELECT g.step, g.t,
                median(v.left_at - v.entered_at) AS step_typical_time_on_step_s
            FROM grid g JOIN visits v ON v.step = g.step
                JOIN s ON s.session_id = v.session_id AND s.ended_us >= g.lo AND s.ended_us < g.t
            GROUP BY g.step, g.t
        ),
        pause AS (
            SELECT g.step, g.t, median(p.gap_s) AS step_typical_pause_s
            FROM grid g JOIN gaps p ON p.step = g.step
                JOIN s ON s.session_id = p.session_id AND s.ended_us >= g.lo AND s.ended_us < g.t
            GROUP BY g.step, g.t
        )
        SELECT g.step, g.t, coalesce(d.step_sessions, 0) AS step_sessions,
            d.step_dropoff_rate, o.step_typical_time_on_step_s, p.step_typical_pause_s,
            g.fallback AS {STEP_FALLBACK}
        FROM grid g
            LEFT JOIN dropoff d USING (step, t)
            LEFT JOIN time_on o USING (step, t)
            LEFT JOIN pause p USING (step, t)
        ORDER BY g.step, g.t
        """,
        {
            "day_us": US_PER_DAY,
            "end_us": round(data_end * US_PER_S),
            "window": cfg.step_window_days,
            "every_us": cfg.step_fallback_every_minutes * 60 * US_PER_S,
        },
        summaries=summaries,
        visits=visits,
        gaps=gaps.select(["session_id", "step", "gap_s"]),
    )
    return _to_utc(table, "t").cast(STEP_STATS_SCHEMA)
