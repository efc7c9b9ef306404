"""Leakage through the real offline build: an event planted after a decision time changes
nothing in that decision's training row (it changes later rows, so it is not ignored)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from feast_tables import REPO_CONFIGS

from core.layout import Layout
from core.settings import load_config
from features.events import EVENT_SCHEMA
from features.pipeline.build import PipelineConfigs, build_tables, table_paths
from features.store.config import FeatureStoreConfig
from features.store.repo import apply, historical_frame, open_store

DAY1 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
DAY2 = DAY1 + timedelta(days=1)
PLANT_S = 20.0  # seconds into the day-2 session; the pause decision is at 2 + 12 = 14 s


def _events(session_id: str, base: datetime, rows: list[tuple]) -> list[dict]:
    return [
        {
            "event_id": f"{session_id}-{i}",
            "user_id": "u1",
            "anonymous_id": None,
            "session_id": session_id,
            "ts": base + timedelta(seconds=seconds),
            "type": etype,
            "step": step,
            "target": target,
            "value": None,
            "user_agent": "Mozilla/5.0",
            "tz": "Europe/Paris",
            "device": "desktop",
            "channel": "organic",
            "props": json.dumps({}),
        }
        for i, (seconds, etype, step, target) in enumerate(rows)
    ]


def _history(planted: bool) -> pa.Table:
    day1 = _events(
        "a",
        DAY1,
        [
            (0, "view", "welcome", None),
            (3, "click", "welcome", "cta"),
            (4, "step_complete", "welcome", None),
            (5, "view", "profile", None),
            (30, "exit", "profile", None),
        ],
    )
    rows = [(0, "view", "welcome", None), (2, "click", "welcome", "faq")]
    if planted:
        rows.append((PLANT_S, "cta_fail", "welcome", "cta"))
    rows += [(60, "click", "welcome", "cta"), (61, "step_complete", "welcome", None)]
    rows += [(62, "view", "profile", None), (90, "exit", "profile", None)]
    return pa.Table.from_pylist(day1 + _events("b", DAY2, rows), schema=EVENT_SCHEMA)


def _frame(tmp_path, planted: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    layout = Layout.under(tmp_path / ("planted" if planted else "clean"), configs=REPO_CONFIGS)
    layout.ensure()
    events = _history(planted)
    sessions = sorted(set(events.column("session_id").to_pylist()))
    bots = pa.table({"session_id": sessions, "bot_score": [0.0] * 2, "is_bot": [False] * 2})
    tables = build_tables(events, bots, PipelineConfigs.load(layout))
    for name, path in table_paths(layout).items():
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(tables.as_dict()[name], path)
    cfg = load_config(FeatureStoreConfig, layout=layout)
    apply(layout, cfg)
    store = open_store(layout, cfg)
    points = tables.decision_points.to_pandas()
    frame = historical_frame(store, points, store.get_feature_service(cfg.feature_service))
    return frame.set_index("decision_key"), tables.session_snapshots.to_pandas()


def test_event_after_the_decision_never_reaches_its_row(tmp_path) -> None:
    clean, _ = _frame(tmp_path, planted=False)
    planted, snapshots = _frame(tmp_path, planted=True)
    plant_time = DAY2 + timedelta(seconds=PLANT_S)

    before = planted[planted["event_timestamp"] < plant_time]
    pause = before[(before["session_id"] == "b") & (before["moment"] == "pause")]
    assert len(pause) == 1, "the day-2 pause decision (12 s after the click) must exist"
    features = list(planted.columns[planted.columns.get_loc("oracle_p") + 1 :])
    assert "cta_fails" in features and "pause_s" in features
    pd.testing.assert_frame_equal(before[features], clean.loc[before.index, features])

    row = pause.iloc[0]
    assert row["cta_fails"] == 0 and row["pause_s"] == 12.0
    assert row["user_sessions_1d"] == 1  # day 1's session, not the one in progress
    # the planted event is real: the pause decisions after it (32 s, 50 s) count it
    after = planted[(planted["session_id"] == "b") & (planted["event_timestamp"] > plant_time)]
    assert len(after[after["moment"] == "pause"]) == 2
    assert (after["cta_fails"] == 1).all()
    assert snapshots[snapshots["session_id"] == "b"]["cta_fails"].max() == 1
