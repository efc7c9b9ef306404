"""The Diginetica sample (real, tiny, imbalanced, no oracle) trains end to end."""

from __future__ import annotations

import pytest
from training_pipeline import DIGINETICA, NOW, REPO_CONFIGS

from features.build import build_features
from features.config import EventsConfig
from features.event_store import ingest
from features.feast_store import apply
from features.importers.common import write_import
from features.importers.mapping import TableMapping, load_mapping
from features.importers.table import import_tables
from features.layout import Layout
from features.settings import load_config
from training.pipeline import TrainingConfigs, train_from_store
from training.promote import promote

pytestmark = pytest.mark.slow


def test_diginetica_trains_registers_exports_and_promotes(tmp_path) -> None:
    # the sample's step is `browse`: the e-commerce funnel overlaid on the shipped configs
    shop = (REPO_CONFIGS / "examples" / "ecommerce", REPO_CONFIGS)
    layout = Layout.under(tmp_path, configs=shop).ensure()
    mapping = load_mapping(REPO_CONFIGS / "mappings" / "diginetica.yaml", TableMapping)
    imported = import_tables(
        [DIGINETICA / "diginetica_views_sample.csv", DIGINETICA / "diginetica_purchases.csv"],
        mapping,
    )
    write_import(layout, mapping.name, imported)
    ingest(layout, imported.events, load_config(EventsConfig, layout=layout), NOW)
    build_features(layout)
    configs = TrainingConfigs.load(layout)
    apply(layout, configs.features)

    outcome = train_from_store(layout, configs)
    fitted = outcome.fitted
    assert outcome.version == "1" and outcome.parity.passed
    assert fitted.evaluation.oracle_note == "absent"
    assert "oracle_test_roc_auc" not in outcome.metrics
    assert "test_roc_auc" in outcome.metrics and "rules_test_roc_auc" in outcome.metrics
    labels = fitted.frames["train"]["label"]
    assert labels.mean() > 0.9  # heavily imbalanced: most sessions end without a purchase
    assert fitted.weights.negative > fitted.weights.positive  # the minority is up-weighted
    assert promote(layout, configs.training).promoted
