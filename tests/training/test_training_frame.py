"""The feature schema: what may be a feature, how categories encode, cohorts."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from core.bundle import Bundle, FeatureSpec, Manifest
from core.layout import Layout
from training.config import FeatureSelection
from training.frame import (
    DECISION_POINTS_FILE,
    EXPOSURE_FILE,
    NEVER_FEATURES,
    ROW_WEIGHT,
    TrainingError,
    encode,
    feature_names,
    fit_schema,
    load_training_frame,
    returning_users,
    weigh_by_exposure,
)

SELECTION = FeatureSelection(context=["step", "device"], exclude=["user_device"])


def test_feature_names_are_service_order_then_context() -> None:
    columns = ["pause_s", "user_device", "scroll_depth", "step", "device", "user_id"]
    names = feature_names(columns, ["pause_s", "user_device", "scroll_depth"], SELECTION)
    assert names == ["pause_s", "scroll_depth", "step", "device"]


@pytest.mark.parametrize("leak", sorted(NEVER_FEATURES))
def test_ids_label_and_oracle_can_never_be_features(leak: str) -> None:
    with pytest.raises(TrainingError, match="never features"):
        feature_names(
            [leak, "pause_s"], ["pause_s", leak], FeatureSelection(context=[], exclude=[])
        )
    with pytest.raises(TrainingError, match="never features"):
        feature_names([leak, "pause_s"], ["pause_s"], FeatureSelection(context=[leak], exclude=[]))


def test_missing_columns_and_unknown_exclusions_are_errors() -> None:
    with pytest.raises(TrainingError, match="lacks feature columns: device"):
        feature_names(["pause_s", "step", "user_device"], ["pause_s", "user_device"], SELECTION)
    with pytest.raises(TrainingError, match="exclude names features the service lacks"):
        feature_names(["pause_s"], ["pause_s"], SELECTION)


def test_encoding_matches_the_server_bundle_vectorizer() -> None:
    train = pd.DataFrame({"pause_s": [1.0, np.nan], "step": ["b", "a"], "device": ["x", None]})
    schema = fit_schema(train, ["pause_s", "step", "device"], ["step", "device"])
    assert schema.encodings == {"step": {"a": 0, "b": 1}, "device": {"x": 0}}
    later = pd.DataFrame(
        {"pause_s": [3.5, None, 2.0], "step": ["a", "new-step", None], "device": ["x", "y", "x"]}
    )
    ours = encode(later, schema)
    manifest = Manifest.model_construct(
        features=[
            FeatureSpec(name="pause_s", dtype="float"),
            FeatureSpec(name="step", dtype="category"),
            FeatureSpec(name="device", dtype="category"),
        ],
        encodings=schema.encodings,
    )
    server = Bundle(manifest=manifest, path=None, session=None).vectorize_frame(later)
    np.testing.assert_array_equal(ours, server)
    assert np.isnan(ours[1, 1])  # a step first seen after training is "missing"


def test_categorical_columns_must_hold_text() -> None:
    train = pd.DataFrame({"step": [1, 2]})
    with pytest.raises(TrainingError, match="must hold text"):
        fit_schema(train, ["step"], ["step"])


def test_returning_means_a_stored_user_row_and_ignores_the_user_id() -> None:
    frame = pd.DataFrame(
        {"user_id": ["u1", "u2"], "user_sessions_7d": [np.nan, 2.0], "pause_s": [1.0, 1.0]}
    )
    assert returning_users(frame).tolist() == [False, True]


def test_exposure_weights_drop_treated_rows_and_weight_the_rest() -> None:
    points = pd.DataFrame({"decision_key": ["a", "b", "c", "d"], "label": [1, 0, 1, 0]})
    exposure = pd.DataFrame(
        {
            "decision_key": ["a", "b", "c"],
            "exposure": ["holdout", "treated", "untreated"],
            "weight": [2.0, 0.0, 1.0],
        }
    )
    kept, excluded = weigh_by_exposure(points, exposure)
    assert excluded == 1
    assert kept["decision_key"].tolist() == ["a", "c", "d"]
    assert kept[ROW_WEIGHT].tolist() == [2.0, 1.0, 1.0]  # unlisted rows keep weight 1


def test_training_reads_the_exposure_file(pipeline, tmp_path) -> None:
    data_dir = tmp_path / "data"
    shutil.copytree(pipeline.layout.data, data_dir)
    layout = Layout.under(pipeline.layout.root, data=data_dir, configs=pipeline.layout.config_dirs)
    points = pd.read_parquet(layout.features / DECISION_POINTS_FILE)
    treated = points["decision_key"].iloc[::3]
    pd.DataFrame({"decision_key": treated, "exposure": "treated", "weight": 0.0}).to_parquet(
        layout.features / EXPOSURE_FILE
    )
    data = load_training_frame(layout, pipeline.configs.features, exposure_weights=True)
    assert data.excluded_by_exposure == len(treated)
    assert len(data.frame) == len(points) - len(treated)
    assert not data.frame["decision_key"].isin(treated).any()
    assert (data.frame[ROW_WEIGHT] == 1.0).all()
    off = load_training_frame(layout, pipeline.configs.features, exposure_weights=False)
    assert off.excluded_by_exposure == 0 and len(off.frame) == len(points)
