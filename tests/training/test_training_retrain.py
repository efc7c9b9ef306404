"""`retrain --as-of`: window build, train, register, promote, report - and idempotence."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pandas as pd
import pyarrow.compute as pc
import pytest
from training_pipeline import START

from training.frame import TrainingError
from training.retrain import Window, report_path, retrain, window_events, window_layout
from training.tracking import session, tracking_uri

AS_OF = date(2025, 1, 11)


def test_window_reads_whole_sessions_from_the_lookback_start(pipeline) -> None:
    window = Window(AS_OF, days=1, lookback_days=3)
    events = window_events(pipeline.layout, window)
    first = events.group_by("session_id").aggregate([("ts", "min")])["ts_min"]
    assert pc.min(first).as_py() >= window.read_start
    assert pc.max(events["ts"]).as_py() < window.end
    with pytest.raises(TrainingError, match="no events between"):
        window_events(pipeline.layout, Window(date(2020, 1, 1), days=5, lookback_days=1))


@pytest.mark.slow
def test_retrain_is_idempotent_for_an_as_of_date(pipeline, store_layout) -> None:
    c = pipeline.configs
    main_points = store_layout.features / "decision_points.parquet"
    before = main_points.stat().st_mtime_ns

    first = retrain(store_layout, c.training, c.features, c.heuristic, AS_OF, 7)
    assert not first.reused and first.version == "1"
    assert first.promotion is not None and first.promotion.champion_after == "1"
    built = window_layout(store_layout, AS_OF)
    points = pd.read_parquet(built.features / "decision_points.parquet")
    assert points["event_timestamp"].min() >= datetime(2025, 1, 4, tzinfo=UTC)
    assert points["event_timestamp"].max() < datetime(2025, 1, 11, tzinfo=UTC)
    assert main_points.stat().st_mtime_ns == before  # serving's tables are left alone
    text = report_path(store_layout, AS_OF).read_text()
    assert text.startswith("# Retrain as of 2025-01-11")
    assert "| ROC-AUC |" in text and "promoted" in text

    second = retrain(store_layout, c.training, c.features, c.heuristic, AS_OF, 7)
    assert second.reused and second.run_id == first.run_id and second.version == "1"
    assert second.promotion is None  # decided the first time
    with session(tracking_uri(store_layout, c.training.tracking)) as client:
        versions = client.search_model_versions("name='intent-scorer'")
        train_runs = client.search_runs(
            [client.get_experiment_by_name("intent-scorer").experiment_id],
            filter_string="tags.`intent.as_of` = '2025-01-11'",
        )
    assert [str(v.version) for v in versions] == ["1"]
    assert len(train_runs) == 1
    assert "already trained" in report_path(store_layout, AS_OF).read_text()
    with pytest.raises(TrainingError, match="already trained on a 7-day window"):
        retrain(store_layout, c.training, c.features, c.heuristic, AS_OF, 30)
    assert START < AS_OF
