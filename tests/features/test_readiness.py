"""Readiness refusals: each names the symptom, the cause and the fix, on data built for it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import pyarrow.compute as pc
import pytest
from pipeline_factory import REPO_CONFIGS, session, table

from core.layout import Layout
from features.ingest.event_store import ingest
from features.pipeline.build import build_features, table_paths
from features.pipeline.readiness import (
    LabelFacts,
    UnusableData,
    check_materializable,
    empty_table_refusal,
    label_refusal,
    read_facts,
    split_refusal,
)

MAX_CENSORED = 0.3


@dataclass(frozen=True)
class Limits:
    validation_fraction: float = 0.15
    test_fraction: float = 0.2
    min_rows: int = 30
    min_positives: int = 5


def facts(kept: int, censored: int, positives: int, kind: str = "horizon") -> LabelFacts:
    return LabelFacts(kind, 30.0, kept, censored, positives, events=10_000, days=1)


def test_heavy_censoring_is_named_as_the_cause_with_session_end_as_the_fix() -> None:
    # the real export: 23 k of 27 k censored, the survivors all followed by a purchase
    message = label_refusal(facts(4_000, 23_000, 0), MAX_CENSORED)
    assert message is not None
    assert "labelled 0" not in message and "are 0 (completed)" in message
    assert "30-min horizon censors 85%" in message and "label_kind: session_end" in message


def test_labels_with_both_classes_and_little_censoring_pass() -> None:
    assert label_refusal(facts(1_000, 100, 400), MAX_CENSORED) is None


def test_no_completion_events_says_map_them() -> None:
    message = label_refusal(facts(500, 0, 500, kind="session_end"), MAX_CENSORED)
    assert "labelled 1" in message and "step_complete / goal" in message


def test_no_detector_fired_points_at_the_profile() -> None:
    message = label_refusal(facts(0, 0, 0), MAX_CENSORED)
    assert "no decision points in 10,000 events" in message and "intent data profile" in message


def test_everything_censored_under_session_end_says_add_data() -> None:
    message = label_refusal(facts(0, 50, 0, kind="session_end"), MAX_CENSORED)
    assert "every decision point is censored" in message and "add data" in message


def test_split_without_test_positives_blames_the_horizon() -> None:
    ts = np.arange(1_000)
    labels = np.where(ts < 800, ts % 2, 0)  # positives only early: test window has none
    message = split_refusal(ts, labels, Limits(), facts(1_000, 9_000, 400), MAX_CENSORED)
    assert message.startswith("test split has 0 positive and 200 negative rows")
    assert "censors 90%" in message and "session_end" in message


def test_split_too_small_without_censoring_says_add_data_or_lower_minimums() -> None:
    ts = np.arange(60)
    labels = ts % 2
    message = split_refusal(ts, labels, Limits(), facts(60, 0, 30), MAX_CENSORED)
    assert "validation split has" in message or "test split has" in message
    assert "split.min_rows" in message and "configs/training.yaml" in message
    assert split_refusal(ts, labels, Limits(min_rows=5, min_positives=2), None, 0.3) is None


def test_empty_tables_name_their_cause() -> None:
    rows = {"decision_points": 10, "user_stats": 5, "step_stats": 0}
    assert "step_stats.parquet has no rows" in empty_table_refusal(rows, None, 30)
    assert empty_table_refusal({"user_stats": 0}, None, 30).count("30 min old") == 1
    assert empty_table_refusal({"step_stats": 3}, None, 30) is None


def _one_short_session(layout: Layout, configs) -> None:
    fail = ("cta_fail", "profile", "cta")
    rows = [(0, "view", "profile"), (1, *fail), (2, *fail), (3, *fail), (9, "exit", "profile")]
    events = table(session("only", rows, user_id="a"))
    now = pc.max(events["ts"]).as_py() + timedelta(hours=1)
    ingest(layout, events, configs.events, now)


def test_build_refuses_and_writes_nothing_when_the_horizon_censors_everything(
    tmp_path, configs
) -> None:
    layout = Layout.under(tmp_path, configs=REPO_CONFIGS).ensure()
    _one_short_session(layout, configs)
    with pytest.raises(UnusableData, match="every decision point is censored: the 30-min"):
        build_features(layout)
    assert not any(path.exists() for path in table_paths(layout).values())
    assert read_facts(layout) is None


def test_materialize_check_reads_the_build_facts(tmp_path, configs) -> None:
    layout = Layout.under(tmp_path, configs=REPO_CONFIGS).ensure()
    with pytest.raises(UnusableData, match="run `intent features build` first"):
        check_materializable(layout, ["step_stats"], 30)


def test_split_projection_purges_users_into_their_latest_window_as_training_does() -> None:
    ts = np.arange(100)
    labels = np.where(ts < 65, 1, ts % 2)
    labels[:10] = 0  # the train window's only negatives ...
    users = np.array([f"u{i}" for i in range(100)], dtype=object)
    users[80:90] = users[:10]  # ... belong to users who come back in the test window
    limits = Limits(min_rows=5, min_positives=3)
    assert split_refusal(ts, labels, limits, None, MAX_CENSORED) is None
    message = split_refusal(ts, labels, limits, None, MAX_CENSORED, users)
    assert message.startswith("train split has") and "positive and 0 negative rows" in message


def test_build_command_prints_the_refusal_in_one_line(tmp_path, monkeypatch, configs) -> None:
    import typer
    from typer.testing import CliRunner

    from features.pipeline import cli as pipeline_cli

    layout = Layout.under(tmp_path, configs=REPO_CONFIGS).ensure()
    _one_short_session(layout, configs)
    monkeypatch.setenv("INTENT_DATA_DIR", str(layout.data))
    monkeypatch.setenv("INTENT_CONFIGS", str(REPO_CONFIGS))
    app = typer.Typer()
    app.callback()(lambda: None)
    pipeline_cli.register(app)
    result = CliRunner().invoke(app, ["features", "build", "--workers", "1"])
    assert result.exit_code == 1
    assert "every decision point is censored" in result.output
    assert "label_kind: session_end" in result.output and "Traceback" not in result.output


def test_split_too_small_names_the_minimums_the_data_meets() -> None:
    ts = np.arange(60)
    labels = ts % 2  # the validation window: 10 rows, 5 of each class
    message = split_refusal(ts, labels, Limits(min_rows=30, min_positives=5), None, 0.3)
    assert "set split.min_rows: 10 in configs/training.yaml" in message  # 5 of each: met
    assert split_refusal(ts, labels, Limits(min_rows=10, min_positives=5), None, 0.3) is None
    message = split_refusal(ts, labels, Limits(min_rows=30, min_positives=6), None, 0.3)
    assert "set split.min_rows: 10 and split.min_positives: 5 in" in message
