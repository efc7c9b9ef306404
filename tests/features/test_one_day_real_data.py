"""One real day of Diginetica goes import -> validate -> build -> apply -> materialize -> train.

Before step-statistics fallbacks and session_end labels, one day died at `materialize`
("step_stats.parquet: the table has no rows": no prior day) or at `train` (a 30-min horizon
left a one-class split). On the shipped configs the day now trains, and 32 sessions cannot
show a signal with confidence: the run is `no_signal`, never promotable. Stricter split
minimums are refused with the values the day meets (`split.min_rows: N`, ...).
"""

from __future__ import annotations

import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import yaml
from pipeline_factory import REPO_CONFIGS

from core.layout import Layout
from core.settings import load_config
from features.config import EventsConfig
from features.ingest.event_store import ingest
from features.ingest.importers.common import write_import
from features.ingest.importers.mapping import TableMapping, load_mapping
from features.ingest.importers.table import import_tables
from features.pipeline.aggregates import STEP_FALLBACK
from features.pipeline.build import build_features
from features.pipeline.readiness import UnusableData
from features.store.repo import apply, materialize

pytestmark = pytest.mark.slow

DAY = "2016-02-14"
SHARED = REPO_CONFIGS.parents[1] / "shared" / "data" / "diginetica"
TEST_COPY = REPO_CONFIGS.parent / "tests" / "data" / "diginetica"
VALIDATION_CLOCK = datetime(2026, 1, 1, tzinfo=UTC)  # nothing in 2016 is "in the future"


def _source() -> Path:
    """The shared data set when it is beside the repo, else the repo's identical test copy."""
    return SHARED if (SHARED / "diginetica_views_sample.csv").exists() else TEST_COPY


def _one_day(root: Path) -> list[Path]:
    views = pd.read_csv(_source() / "diginetica_views_sample.csv", sep=";", dtype=str)
    day_views = root / "day_views.csv"
    views[views["eventdate"] == DAY].to_csv(day_views, sep=";", index=False)
    purchases = root / "diginetica_purchases.csv"
    shutil.copy(_source() / "diginetica_purchases.csv", purchases)
    return [day_views, purchases]


def _trial_configs(root: Path, split: dict[str, int] | None = None) -> Path:
    """configs/training.yaml, with the split minimums `split` when given."""
    folder = root / "trial-configs"
    folder.mkdir(exist_ok=True)
    training = yaml.safe_load((REPO_CONFIGS / "training.yaml").read_text())
    training["split"].update(split or {})
    (folder / "training.yaml").write_text(yaml.safe_dump(training))
    return folder


def _suggested_minimums(message: str) -> dict[str, int]:
    """The `split.<key>: <value>` settings a refusal names."""
    return {k: int(v) for k, v in re.findall(r"split\.(min_rows|min_positives): (\d+)", message)}


def test_one_day_of_diginetica_builds_materializes_and_trains(tmp_path) -> None:
    from training.pipeline import TrainingConfigs, train_from_store

    shop = (_trial_configs(tmp_path), REPO_CONFIGS / "examples" / "ecommerce", REPO_CONFIGS)
    layout = Layout.under(tmp_path, configs=shop).ensure()
    mapping = load_mapping(REPO_CONFIGS / "mappings" / "diginetica.yaml", TableMapping)
    imported = import_tables(_one_day(tmp_path), mapping)
    write_import(layout, mapping.name, imported)
    days = pc.unique(pc.strftime(imported.events["ts"], format="%Y-%m-%d")).to_pylist()
    assert DAY in days and imported.events.num_rows > 100
    report = ingest(
        layout, imported.events, load_config(EventsConfig, layout=layout), VALIDATION_CLOCK
    )
    assert report.written == imported.events.num_rows

    summary = build_features(layout)
    assert summary.decision_points > 0 and 0 < summary.label_rate < 1
    steps = pq.read_table(layout.features / "step_stats.parquet")
    first_day = steps.filter(
        pc.equal(pc.strftime(steps["event_timestamp"], format="%Y-%m-%d"), DAY)
    )
    assert first_day.num_rows > 0 and set(first_day[STEP_FALLBACK].to_pylist()) == {1}

    configs = TrainingConfigs.load(layout)
    apply(layout, configs.features)
    loaded = materialize(layout, configs.features)
    assert {ran.view for ran in loaded} == {"session_state", "step_stats", "user_stats"}

    # the shipped configs: it trains, and says what a day can say
    outcome = train_from_store(layout, configs)
    assert outcome.parity.passed
    assert STEP_FALLBACK in outcome.fitted.schema.names  # the model sees the flag
    assert outcome.fitted.signal is not None and outcome.fitted.signal.status == "no_signal"
    assert outcome.fitted.signal.reasons

    # stricter minimums than the day can fill: refused, naming the values it meets ...
    _trial_configs(tmp_path, {"min_rows": 500, "min_positives": 200})
    with pytest.raises(UnusableData) as refused:
        train_from_store(layout, TrainingConfigs.load(layout))
    suggested = _suggested_minimums(str(refused.value))
    assert suggested and "configs/training.yaml" in str(refused.value)
    # ... which, set as the message says, train
    _trial_configs(tmp_path, suggested)
    assert train_from_store(layout, TrainingConfigs.load(layout)).parity.passed
    assert outcome.metrics["test_rows"] > 0 and outcome.metrics["test_positives"] > 0
