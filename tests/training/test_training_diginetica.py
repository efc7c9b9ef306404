"""The Diginetica sample (real, tiny, imbalanced, no oracle) trains end to end, and the run
is honest: either a model that beats the strongest baseline on test, or `no_signal` and not
promotable (not even forced) - never a ranking that calibration turned upside down."""

from __future__ import annotations

import pytest
from sklearn.metrics import roc_auc_score
from training_pipeline import DIGINETICA, NOW, REPO_CONFIGS

from core.layout import Layout
from core.settings import load_config
from features.config import EventsConfig
from features.ingest.event_store import ingest
from features.ingest.importers.common import write_import
from features.ingest.importers.mapping import TableMapping, load_mapping
from features.ingest.importers.table import import_tables
from features.pipeline.build import build_features
from features.store.repo import apply
from training.guards import NO_SIGNAL, SIGNAL_TAG
from training.pipeline import TrainingConfigs, train_from_store
from training.promote import promote
from training.tracking import session, tracking_uri

pytestmark = pytest.mark.slow


def test_diginetica_trains_and_is_either_better_than_every_baseline_or_no_signal(tmp_path) -> None:
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
    # never inverted: calibration keeps the raw ranking on the test window
    ev = fitted.evaluation
    raw_auc = roc_auc_score(ev.labels, ev.scores["model (raw)"])
    assert outcome.metrics["test_roc_auc"] == pytest.approx(raw_auc, abs=1e-3)
    for b in ("rules", "step_prior", "step_moment", "logistic"):
        assert f"{b}_test_roc_auc" in outcome.metrics
    with session(tracking_uri(layout, configs.training.tracking)) as client:
        tags = client.get_run(outcome.run_id).data.tags
    beats = outcome.metrics["test_roc_auc_minus_best_baseline"] > 0
    print(f"diginetica: {tags[SIGNAL_TAG]}; {fitted.signal.reasons}; test AUC", outcome.metrics)
    result = promote(layout, configs.training)
    if fitted.signal.ok:
        assert tags[SIGNAL_TAG] == "signal" and result.promoted is beats
    else:
        assert tags[SIGNAL_TAG] == NO_SIGNAL and not result.promoted
        assert "no_signal" in result.reasons[0]
        forced = promote(layout, configs.training, force=True)
        assert not forced.promoted and forced.champion_after is None
