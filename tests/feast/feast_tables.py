"""Hand-made offline feature tables with planted rows, and Feast stores built on them.

The tables follow the build's contract schemas (`features.pipeline.build.expected_schemas`); the
session rows come from replaying real events through `features.signals`, including one
event planted *after* the decision time, so a leak would show as a changed counter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from core.layout import Layout
from core.settings import load_config
from features.config import SignalsConfig
from features.signals import Ev, new_state, snapshot, update
from features.store import definitions as feast_defs
from features.store.definitions import STEP_STATS, USER_STATS, contract_schemas, table_path

REPO_CONFIGS = Path(__file__).resolve().parents[2] / "configs"
REPO = Path(feast_defs.__file__).parents[1] / "feature_repo"  # the Feast repo folder
# the files `feast` imports from REPO (as top-level modules); only feast_objects holds objects
DEFINITION_MODULES = ("entities", "data_sources", "views", "on_demand", "services", "feast_objects")


def forget_definitions() -> None:
    """`feast` imports the definition files as top-level modules; start clean."""
    import sys

    feast_defs.repo_definitions.cache_clear()
    for name in DEFINITION_MODULES:
        sys.modules.pop(name, None)


T0 = datetime(2025, 3, 3, 12, 0, tzinfo=UTC)  # the decision day; the data is months old


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def epoch(seconds: float) -> float:
    return at(seconds).timestamp()


def table(schema: pa.Schema, rows: list[dict]) -> pa.Table:
    """Rows on a contract schema; unspecified numbers are 0, strings null."""
    filled = []
    for row in rows:
        out = {}
        for f in schema:
            if f.name in row:
                out[f.name] = row[f.name]
            elif pa.types.is_integer(f.type) or pa.types.is_floating(f.type):
                out[f.name] = 0
            else:
                out[f.name] = None
        filled.append(out)
    return pa.Table.from_pylist(filled, schema=schema)


@dataclass(frozen=True)
class World:
    """What the hand-made tables contain, for assertions."""

    snapshots: dict[str, dict[str, float]]  # "s1@decision" / "s1@planted" -> snapshot row
    decision_points: pd.DataFrame
    signals: SignalsConfig


# The session s1 of user u_known on step "welcome": the decision (a 12 s pause checkpoint)
# is at +20 s; a failed CTA click planted at +25 s must never reach it.
S1_EVENTS = [
    Ev(epoch(0), "view", "welcome"),
    Ev(epoch(2), "click", "welcome", "cta"),
    Ev(epoch(4), "scroll", "welcome", None, 30.0),
    Ev(epoch(5), "cta_fail", "welcome", "cta"),
    Ev(epoch(8), "click", "welcome", "faq"),
]
S1_PLANTED = Ev(epoch(25), "cta_fail", "welcome", "cta")
DECISION_S = 20.0


def write_tables(layout: Layout) -> World:
    """Write the three view tables and the decision points under `layout.features`."""
    signals = load_config(SignalsConfig, layout=layout)
    schemas = contract_schemas(layout)
    layout.features.mkdir(parents=True, exist_ok=True)

    state = new_state("s1", "u_known")
    rows, named = [], {}
    for ev in [*S1_EVENTS, S1_PLANTED]:
        update(state, ev, signals)
        snap = snapshot(state)
        rows.append({"session_id": "s1", "event_timestamp": datetime.fromtimestamp(ev.ts, UTC)})
        rows[-1].update(snap)
        named["s1@planted" if ev is S1_PLANTED else "s1@decision"] = snap
    # s2 (stale user) has one event; "s_unknown" has none at all.
    s2 = update(new_state("s2", "u_stale"), Ev(epoch(10), "view", "profile"), signals)
    rows.append({"session_id": "s2", "event_timestamp": at(10), **snapshot(s2)})
    named["s2"] = snapshot(s2)
    pq.write_table(table(schemas["session_state"], rows), table_path(layout, "session_state"))

    day = 86_400
    users = [
        {
            "user_id": "u_known",
            "event_timestamp": at(-3 * day),
            "user_sessions_30d": 1,
            "user_first_seen_at": epoch(-3 * day),
        },
        {
            "user_id": "u_known",
            "event_timestamp": at(-1 * day),
            "user_sessions_30d": 2,
            "user_first_seen_at": epoch(-3 * day),
            "user_device": "mobile",
            "user_typical_pause_s_30d": 4.5,
        },
        # planted: known only an hour after the decision
        {
            "user_id": "u_known",
            "event_timestamp": at(3600),
            "user_sessions_30d": 99,
            "user_device": "desktop",
        },
        # older than the 30-day TTL at T0: must read as missing
        {"user_id": "u_stale", "event_timestamp": at(-40 * day), "user_sessions_30d": 5},
    ]
    pq.write_table(table(schemas[USER_STATS], users), table_path(layout, USER_STATS))
    steps = [
        {
            "step": "welcome",
            "event_timestamp": at(-day),
            "step_typical_pause_s": 5.0,
            "step_dropoff_rate": 0.1,
        },
        {
            "step": "profile",
            "event_timestamp": at(-day),
            "step_typical_pause_s": 10.0,
            "step_dropoff_rate": 0.3,
        },
        {
            "step": "welcome",
            "event_timestamp": at(3600),
            "step_typical_pause_s": 999.0,
            "step_dropoff_rate": 0.9,
        },
    ]
    pq.write_table(table(schemas[STEP_STATS], steps), table_path(layout, STEP_STATS))

    points = pd.DataFrame(
        {
            "decision_key": ["d1", "d2", "d3"],
            "user_id": ["u_known", "u_stale", "u_new"],
            "session_id": ["s1", "s2", "s_unknown"],
            "step": ["welcome", "profile", "welcome"],
            "moment": ["pause", "pause", "pause"],
            "episode": ["e1", "e2", "e3"],
            "event_timestamp": [at(DECISION_S), at(30), at(40)],
            "request_ts": [epoch(DECISION_S), epoch(30), epoch(40)],
            "device": ["mobile", "desktop", None],
            "channel": ["ads", "seo", None],
            "label": [1, 0, 0],
            "oracle_p": [0.7, 0.2, math.nan],
        }
    )
    points.to_parquet(layout.features / "decision_points.parquet")
    return World(named, points, signals)
