"""The model bundle contract: write / load / verify, vectorize, predict, calibration."""

from __future__ import annotations

import itertools
import json
import logging
import math
import shutil
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.bundle import (
    MANIFEST_FILE,
    MODEL_FILE,
    BundleError,
    FeatureSpec,
    IsotonicCalibration,
    Manifest,
    NoCalibration,
    PlattCalibration,
    apply_calibration,
    bundle_dirs,
    latest_bundle,
    load_bundle,
    read_manifest,
    write_bundle,
)

FEATURES = ["pause_s", "scroll_depth", "cta_fails", "device"]


@pytest.fixture(scope="module")
def tiny_lgbm():
    """A tiny LightGBM model and its ONNX graph (onnxmltools, zipmap off)."""
    import lightgbm as lgb
    import onnxmltools
    from onnxmltools.convert.common.data_types import FloatTensorType

    rng = np.random.default_rng(7)
    n = 1500
    X = np.column_stack(
        [
            rng.exponential(10, n),
            rng.uniform(0, 100, n),
            rng.poisson(1, n),
            rng.integers(0, 3, n),
        ]
    ).astype(np.float32)
    X[rng.uniform(size=n) < 0.1, 0] = np.nan
    y = (np.nan_to_num(X[:, 0]) / 10 + X[:, 2] - X[:, 1] / 50 + rng.normal(size=n)) > 0.5
    model = lgb.LGBMClassifier(n_estimators=20, num_leaves=7, n_jobs=1, verbose=-1)
    model.fit(X, y.astype(int))
    onx = onnxmltools.convert_lightgbm(
        model, initial_types=[("input", FloatTensorType([None, 4]))], zipmap=False
    )
    return model, onx.SerializeToString(), X, y.astype(int)


def manifest(calibration=None, **updates) -> Manifest:
    fields = dict(
        model_name="intent-scorer",
        model_version="3",
        run_id="run-abc",
        feature_service="intent_model_v1",
        features=[
            FeatureSpec(name=n, dtype="category" if n == "device" else "float", baseline=1.0)
            for n in FEATURES
        ],
        encodings={"device": {"desktop": 0, "mobile": 1, "tablet": 2}},
        calibration=calibration or NoCalibration(kind="none"),
        thresholds={"high": 0.8},
        metrics={"auc": 0.8},
        training_window={"start": "2025-01-01T00:00:00Z", "end": "2025-03-01T00:00:00Z"},
        onnx_input="input",
        onnx_output="probabilities",
        created_at=datetime(2025, 3, 2, tzinfo=UTC),
    )
    fields.update(updates)
    return Manifest(**fields)


def test_round_trip_and_parity_with_lightgbm(tmp_path: Path, tiny_lgbm) -> None:
    model, onnx_bytes, X, _ = tiny_lgbm
    written = write_bundle(tmp_path / "3", onnx_bytes, manifest())
    assert written.onnx_sha256 is not None and len(written.onnx_sha256) == 64
    bundle = load_bundle(tmp_path / "3")
    assert bundle.manifest == written
    assert bundle.version == "3"
    # the graph reproduces LightGBM (NaN = missing on both sides)
    expected = model.predict_proba(X)[:, 1]
    assert np.abs(bundle.predict(X) - expected).max() < 1e-5


def test_vectorize_orders_encodes_and_marks_missing(tmp_path: Path, tiny_lgbm) -> None:
    _, onnx_bytes, _, _ = tiny_lgbm
    write_bundle(tmp_path / "3", onnx_bytes, manifest())
    bundle = load_bundle(tmp_path / "3")
    rows = [
        {"device": "mobile", "cta_fails": 2, "pause_s": 14.5, "scroll_depth": 30, "extra": "x"},
        {"device": "smart-fridge", "pause_s": None},  # unknown category, missing values
        {"cta_fails": True},
    ]
    m = bundle.vectorize(rows)
    assert m.dtype == np.float32 and m.shape == (3, 4)
    assert m[0].tolist() == [14.5, 30.0, 2.0, 1.0]
    assert np.isnan(m[1]).all()
    assert m[2, 2] == 1.0 and np.isnan(m[2, [0, 1, 3]]).all()
    frame = pd.DataFrame(rows[:2])
    np.testing.assert_array_equal(bundle.vectorize_frame(frame), m[:2])
    with pytest.raises(BundleError, match="'pause_s'"):
        bundle.vectorize([{"pause_s": "long"}])
    with pytest.raises(BundleError, match="'device'"):
        bundle.vectorize([{"device": 3}])


def test_isotonic_matches_sklearn(tiny_lgbm) -> None:
    from sklearn.isotonic import IsotonicRegression

    model, _, X, y = tiny_lgbm
    raw = model.predict_proba(X)[:, 1]
    iso = IsotonicRegression(out_of_bounds="clip").fit(raw, y)
    cal = IsotonicCalibration(
        kind="isotonic", x=iso.X_thresholds_.tolist(), y=iso.y_thresholds_.tolist()
    )
    probe = np.concatenate([raw, [-1.0, 0.0, 1.0, 2.0]])
    np.testing.assert_allclose(apply_calibration(cal, probe), iso.predict(probe), atol=1e-12)


def test_platt_matches_sklearn_sigmoid(tiny_lgbm) -> None:
    from sklearn.calibration import _SigmoidCalibration

    model, _, X, y = tiny_lgbm
    raw = model.predict_proba(X)[:, 1]
    sig = _SigmoidCalibration().fit(raw, y)
    cal = PlattCalibration(kind="platt", a=float(sig.a_), b=float(sig.b_), input="probability")
    np.testing.assert_allclose(apply_calibration(cal, raw), sig.predict(raw), atol=1e-12)
    logit = PlattCalibration(kind="platt", a=-1.0, b=0.0, input="logit")
    np.testing.assert_allclose(apply_calibration(logit, np.array([0.2, 0.5])), [0.2, 0.5])


def test_predict_applies_the_manifest_calibration(tmp_path: Path, tiny_lgbm) -> None:
    _, onnx_bytes, X, _ = tiny_lgbm
    cal = IsotonicCalibration(kind="isotonic", x=[0.0, 0.5, 1.0], y=[0.1, 0.2, 0.9])
    write_bundle(tmp_path / "3", onnx_bytes, manifest(cal))
    bundle = load_bundle(tmp_path / "3")
    raw = bundle.predict_raw(X[:50])
    np.testing.assert_allclose(bundle.predict(X[:50]), np.interp(raw, cal.x, cal.y))


def test_checksum_mismatch_is_refused(tmp_path: Path, tiny_lgbm) -> None:
    _, onnx_bytes, _, _ = tiny_lgbm
    write_bundle(tmp_path / "3", onnx_bytes, manifest())
    model_path = tmp_path / "3" / MODEL_FILE
    data = bytearray(model_path.read_bytes())
    data[-1] ^= 0xFF
    model_path.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="checksum mismatch"):
        load_bundle(tmp_path / "3")


def test_manifest_problems_name_the_file_and_key(tmp_path: Path, tiny_lgbm) -> None:
    _, onnx_bytes, _, _ = tiny_lgbm
    write_bundle(tmp_path / "3", onnx_bytes, manifest())
    path = tmp_path / "3" / MANIFEST_FILE
    raw = json.loads(path.read_text())
    raw["encodings"] = {}
    path.write_text(json.dumps(raw))
    with pytest.raises(BundleError, match=r"manifest.json.*encodings must cover.*device"):
        read_manifest(tmp_path / "3")
    raw["encodings"] = {"device": {"a": 0}}
    raw["calibraton"] = {}
    path.write_text(json.dumps(raw))
    with pytest.raises(BundleError, match="calibraton: unknown key"):
        read_manifest(tmp_path / "3")
    path.write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        read_manifest(tmp_path / "3")
    with pytest.raises(ValueError, match="non-decreasing"):
        IsotonicCalibration(kind="isotonic", x=[0, 1], y=[0.9, 0.1])


def test_graph_must_fit_the_manifest(tmp_path: Path, tiny_lgbm) -> None:
    _, onnx_bytes, _, _ = tiny_lgbm
    three = manifest(
        features=[FeatureSpec(name=n, dtype="float") for n in ("a", "b", "c")], encodings={}
    )
    write_bundle(tmp_path / "a", onnx_bytes, three)
    with pytest.raises(BundleError, match="graph takes 4 features, manifest lists 3"):
        load_bundle(tmp_path / "a")
    write_bundle(tmp_path / "b", onnx_bytes, manifest(onnx_output="proba"))
    with pytest.raises(BundleError, match="no output 'proba'"):
        load_bundle(tmp_path / "b")


def test_write_is_atomic_and_guarded(tmp_path: Path, tiny_lgbm) -> None:
    _, onnx_bytes, _, _ = tiny_lgbm
    write_bundle(tmp_path / "3", onnx_bytes, manifest())
    with pytest.raises(BundleError, match="already exists"):
        write_bundle(tmp_path / "3", onnx_bytes, manifest())
    with pytest.raises(BundleError, match="does not match the ONNX bytes"):
        write_bundle(tmp_path / "4", onnx_bytes, manifest(onnx_sha256="0" * 64))
    replaced = write_bundle(
        tmp_path / "3", onnx_bytes, manifest(metrics={"auc": 0.9}), overwrite=True
    )
    assert load_bundle(tmp_path / "3").manifest.metrics == replaced.metrics == {"auc": 0.9}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["3"]  # no staging leftovers


def test_latest_bundle_skips_broken_ones(tmp_path: Path, tiny_lgbm, caplog) -> None:
    _, onnx_bytes, _, _ = tiny_lgbm
    assert latest_bundle(tmp_path / "absent") is None
    for version in ("2", "10", "9"):
        write_bundle(tmp_path / version, onnx_bytes, manifest(model_version=version))
    assert [p.name for p in bundle_dirs(tmp_path)] == ["10", "9", "2"]
    (tmp_path / "10" / MODEL_FILE).write_bytes(b"tampered")
    with caplog.at_level(logging.WARNING):
        bundle = latest_bundle(tmp_path)
    assert bundle is not None and bundle.version == "9"
    assert "checksum mismatch" in caplog.text
    shutil.rmtree(tmp_path / "9")
    shutil.rmtree(tmp_path / "2")
    assert latest_bundle(tmp_path) is None


def test_explain_finds_the_driving_feature(bundle) -> None:
    row = bundle.vectorize([{"pause_s": 60.0, "scroll_depth": 50.0, "device": "desktop"}])[0]
    reasons = bundle.explain(row, top_k=3, candidates=8)
    assert 1 <= len(reasons) <= 3
    names = [n for n, _ in reasons]
    assert "pause_s" in names
    delta = dict(reasons)["pause_s"]
    assert delta > 0  # a 60 s pause raises the score above the median pause
    assert all(abs(a) >= abs(b) for (_, a), (_, b) in itertools.pairwise(reasons))
    assert bundle.explain(row, top_k=0, candidates=8) == []
    assert not math.isnan(delta)
