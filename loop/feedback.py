"""The decision log back into the product's data: events for the aggregates, exposure for
the next training set. Pure functions; `loop.feedback_cli` reads and writes.

Events. The server logs decisions and outcomes; the feature pipeline counts
`trigger_shown` and `trigger_outcome` events (`features.pipeline.aggregates`: user_triggers_shown_*,
user_triggers_accepted_*). `decision_events` turns the log into those canonical events,
with the props ARCHITECTURE.md fixes (`decision_id`, `moment`, `arm`), and event ids derived
from the decision id, so exporting twice adds nothing. Only the user's reactions become
`trigger_outcome` events (accepted, dismissed), as the simulator emits them; step
completion and abandonment are in the event stream already (step_complete, exit).

Exposure. A decision point's label records what the user did next. When the user saw a
trigger in that session before the label horizon ended, the label records behaviour *under
the policy*: a model trained on it learns that the signals the policy acts on predict less
abandonment than they do - the better the policy, the more it erases its own evidence,
and the next model triggers less where it should. The global holdout never sees a trigger,
so its decision points are an unbiased sample of behaviour without triggers at every score.
Decision points of other users with no trigger on their step in the session up to the
horizon are untreated too, but selected: the policy chose not to act (lower scores), and a user who
would have been triggered later in the horizon - more often one about to abandon - is not
among them. `exposure` labels each decision point; the weights in loop.yaml decide what the
next training run uses (default: holdout + untreated at weight 1, treated rows left out).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import pandas as pd
import pyarrow as pa

from core.vocabulary import ActionType, Outcome
from features.events import EventType, conform
from features.pipeline.aggregates import run_sql

REACTIONS: tuple[str, ...] = (Outcome.ACCEPTED.value, Outcome.DISMISSED.value)
HOLDOUT, UNTREATED, TREATED = "holdout", "untreated", "treated"
EXPOSURE_SCHEMA = pa.schema(
    [("decision_key", pa.string()), ("exposure", pa.string()), ("weight", pa.float64())]
)


def _props(value: Mapping[str, object]) -> str:
    return json.dumps(value, separators=(",", ":"))


@dataclass(frozen=True)
class DecisionEvents:
    """Canonical events from a decision log, and what was left out (and why)."""

    events: pa.Table  # features.events.EVENT_SCHEMA
    shown: int
    reactions: int
    skipped_already_stored: int  # decisions whose trigger_shown the store already holds
    skipped_not_reactions: int  # step_completed / abandoned outcomes (in the events already)
    skipped_not_shown: int  # reactions to decisions that showed nothing


def decision_events(
    decisions: pd.DataFrame, outcomes: pd.DataFrame, stored: frozenset[str] = frozenset()
) -> DecisionEvents:
    """`trigger_shown` per shown decision, `trigger_outcome` per reaction to one.

    `stored`: decision ids the event store already has a `trigger_shown` for (a client that
    reports its own displays); their events are not made twice.
    """
    shown = decisions[decisions["action"] != ActionType.NONE.value]
    already = shown["decision_id"].isin(stored)
    shown = shown[~already]
    rows: list[dict[str, object]] = []
    base = ["user_id", "session_id", "step", "tz", "device", "channel"]
    for d in shown.to_dict("records"):
        rows.append(
            {
                **{k: d[k] for k in base},
                "event_id": f"dl-{d['decision_id']}-shown",
                "ts": d["ts"],
                "type": EventType.TRIGGER_SHOWN.value,
                "target": d["action"],
                "props": _props(
                    {"decision_id": d["decision_id"], "moment": d["moment"], "arm": d["arm"]}
                ),
            }
        )
    is_reaction = outcomes["outcome"].isin(REACTIONS)
    reactions = outcomes[is_reaction]
    known = reactions["decision_id"].isin(shown["decision_id"])
    not_shown = reactions[~known & ~reactions["decision_id"].isin(stored)]
    by_id = shown.set_index("decision_id")
    for o in reactions[known].to_dict("records"):
        d = by_id.loc[o["decision_id"]]
        rows.append(
            {
                **{k: d[k] for k in base},
                "event_id": f"dl-{o['decision_id']}-{o['outcome']}",
                "ts": o["ts"],
                "type": EventType.TRIGGER_OUTCOME.value,
                "target": o["outcome"],
                "props": _props({"decision_id": o["decision_id"]}),
            }
        )
    columns = ["event_id", *base, "ts", "type", "target", "props"]
    frame = pd.DataFrame(rows, columns=columns)
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    events = conform(
        pa.Table.from_pandas(frame.astype({"ts": "datetime64[us, UTC]"}), preserve_index=False)
    )
    return DecisionEvents(
        events=events.sort_by([("session_id", "ascending"), ("ts", "ascending")]),
        shown=len(shown),
        reactions=int(known.sum()),
        skipped_already_stored=int(already.sum()),
        skipped_not_reactions=int((~is_reaction).sum()),
        skipped_not_shown=len(not_shown),
    )


def stored_decision_ids(events: pa.Table) -> frozenset[str]:
    """Decision ids of the `trigger_shown` events in `events` (columns type, props)."""
    table = run_sql(
        f"""
        SELECT DISTINCT json_extract_string(props, '$.decision_id') AS decision_id
        FROM events WHERE type = '{EventType.TRIGGER_SHOWN}' AND props IS NOT NULL
        """,
        events=events.select(["type", "props"]),
    )
    return frozenset(v for v in table["decision_id"].to_pylist() if v is not None)


def exposure(
    points: pa.Table,
    events: pa.Table,
    is_holdout: Callable[[str], bool],
    *,
    horizon_s: float,
    weights: Mapping[str, float],
) -> pa.Table:
    """EXPOSURE_SCHEMA per decision point (`decision_key, user_id, session_id, step,
    request_ts`).

    treated: the user saw a trigger on the decision's step between the start of its session
    and the end of its label horizon (a trigger on another step reaches this step's label
    only through carried annoyance); else holdout (a held-out user) or untreated. `events`
    are the canonical events of those users (session_id, user_id, step, ts, type).
    """
    if horizon_s <= 0:
        raise ValueError(f"horizon must be positive, got {horizon_s}")
    missing = [w for w in (HOLDOUT, UNTREATED, TREATED) if w not in weights]
    if missing:
        raise ValueError(f"weights missing for {', '.join(missing)}")
    users = pd.unique(points.column("user_id").to_pandas().dropna())
    held = pa.table(
        {"user_id": pa.array(users, pa.string()), "held": [bool(is_holdout(u)) for u in users]}
    )
    table = run_sql(
        f"""
        WITH e AS (
            SELECT session_id, user_id, step, epoch_us(ts) / 1e6 AS t, type FROM events
        ),
        starts AS (SELECT session_id, min(t) AS started FROM e GROUP BY session_id),
        shown AS (SELECT user_id, step, t FROM e WHERE type = '{EventType.TRIGGER_SHOWN}'),
        p AS (
            SELECT p.decision_key, p.user_id, p.step, p.request_ts,
                coalesce(s.started, p.request_ts) AS started
            FROM points p LEFT JOIN starts s USING (session_id)
        ),
        hit AS (
            SELECT DISTINCT p.decision_key FROM p JOIN shown t
                ON t.user_id = p.user_id AND t.step = p.step
                AND t.t >= p.started AND t.t <= p.request_ts + $h
        )
        SELECT p.decision_key,
            CASE WHEN hit.decision_key IS NOT NULL THEN '{TREATED}'
                 WHEN coalesce(held.held, false) THEN '{HOLDOUT}'
                 ELSE '{UNTREATED}' END AS exposure
        FROM p LEFT JOIN hit USING (decision_key) LEFT JOIN held USING (user_id)
        ORDER BY p.decision_key
        """,
        {"h": horizon_s},
        points=points.select(["decision_key", "user_id", "session_id", "step", "request_ts"]),
        events=events.select(["session_id", "user_id", "step", "ts", "type"]),
        held=held,
    )
    kinds = table.column("exposure").to_pylist()
    weight = pa.array([float(weights[k]) for k in kinds], pa.float64())
    return pa.table(
        {"decision_key": table.column("decision_key"), "exposure": kinds, "weight": weight},
        schema=EXPOSURE_SCHEMA,
    )
