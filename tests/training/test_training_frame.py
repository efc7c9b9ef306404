"""The feature schema: what may be a feature, how categories encode, cohorts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from serving.bundle import Bundle, FeatureSpec, Manifest
from training.config import FeatureSelection
from training.frame import (
    NEVER_FEATURES,
    TrainingError,
    encode,
    feature_names,
    fit_schema,
    returning_users,
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
