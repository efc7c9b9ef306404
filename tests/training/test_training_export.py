"""ONNX export: parity through the server's loader, and corrupted bundles that must fail."""

from __future__ import annotations

import dataclasses
import json

import lightgbm as lgb
import numpy as np
import pytest

from core.bundle import MANIFEST_FILE, MODEL_FILE, BundleError, load_bundle
from training.export import (
    ParityError,
    build_manifest,
    export_bundle,
    parity,
    to_onnx,
)


def manifest_of(fitted, version: str = "7"):
    return build_manifest(
        fitted,
        model_name="intent-scorer",
        version=version,
        run_id="run-x",
        feature_service="intent_model_v1",
        metrics=fitted.evaluation.metrics | {"bad": float("nan")},
        thresholds={"score_top_decile": 0.7},
    )


def test_export_matches_lightgbm_plus_calibration_on_the_whole_test_window(fitted, tmp_path):
    test = fitted.frames["test"]
    manifest, report = export_bundle(
        tmp_path / "7",
        to_onnx(fitted, 15),
        manifest_of(fitted),
        test,
        fitted.score(test),
        1e-5,
    )
    assert report.passed and report.rows == len(test)
    assert report.max_abs_diff <= 1e-5
    bundle = load_bundle(tmp_path / "7")
    assert bundle.feature_names == list(fitted.schema.names)
    assert manifest.onnx_sha256 and manifest.metrics["test_roc_auc"] > 0.5
    assert "bad" not in manifest.metrics  # non-finite metrics are left out
    assert manifest.encodings == fitted.schema.encodings
    assert manifest.calibration == fitted.calibration
    start, end = fitted.training_window
    assert (manifest.training_window.start, manifest.training_window.end) == (start, end)
    # categorical context features never reach the graph as text
    graph = bundle.session.get_inputs()[0]
    assert graph.type == "tensor(float)" and graph.shape[1] == len(fitted.schema.names)


def test_a_corrupted_onnx_file_is_refused_by_the_loader(fitted, tmp_path):
    test = fitted.frames["test"]
    export_bundle(
        tmp_path / "7", to_onnx(fitted, 15), manifest_of(fitted), test, fitted.score(test), 1e-5
    )
    path = tmp_path / "7" / MODEL_FILE
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="checksum mismatch"):
        load_bundle(tmp_path / "7")


def test_a_graph_that_does_not_reproduce_the_model_fails_parity_and_is_deleted(fitted, tmp_path):
    """A wrong graph with a matching checksum (the check, not the loader, must catch it)."""
    fewer = lgb.Booster(model_str=fitted.booster.model_to_string(num_iteration=1))
    other = to_onnx(dataclasses.replace(fitted, booster=fewer), 15)
    test = fitted.frames["test"]
    with pytest.raises(ParityError, match="differs from LightGBM"):
        export_bundle(tmp_path / "7", other, manifest_of(fitted), test, fitted.score(test), 1e-5)
    assert not (tmp_path / "7").exists()


def test_garbage_onnx_bytes_fail_the_export_and_leave_nothing(fitted, tmp_path):
    test = fitted.frames["test"]
    with pytest.raises(BundleError, match="ONNX Runtime cannot load it"):
        export_bundle(
            tmp_path / "7",
            b"not an onnx graph",
            manifest_of(fitted),
            test,
            fitted.score(test),
            1e-5,
        )
    assert not (tmp_path / "7").exists()


def test_parity_sees_a_single_row_off_by_more_than_the_tolerance(fitted, tmp_path):
    test = fitted.frames["test"]
    export_bundle(
        tmp_path / "7", to_onnx(fitted, 15), manifest_of(fitted), test, fitted.score(test), 1e-5
    )
    expected = fitted.score(test)
    expected[len(expected) // 3] += 2e-5
    report = parity(load_bundle(tmp_path / "7"), test, expected, 1e-5)
    assert not report.passed and report.max_abs_diff == pytest.approx(2e-5, rel=0.1)


def test_manifest_on_disk_lists_features_in_model_order(fitted, tmp_path):
    test = fitted.frames["test"]
    export_bundle(
        tmp_path / "7", to_onnx(fitted, 15), manifest_of(fitted), test, fitted.score(test), 1e-5
    )
    raw = json.loads((tmp_path / "7" / MANIFEST_FILE).read_text())
    assert [f["name"] for f in raw["features"]] == list(fitted.schema.names)
    shares = [f["importance"] for f in raw["features"]]
    assert np.isclose(sum(shares), 1.0)
    categorical = {f["name"] for f in raw["features"] if f["dtype"] == "category"}
    assert categorical == set(fitted.schema.encodings)


def test_export_writes_the_training_profile_covered_by_the_manifest(fitted, tmp_path):
    """The drift reference: deciles of the training window, read back through its checksum;
    the training scores binned on it reproduce its shares."""
    from core.profile import bin_shares, load_profile, psi
    from training.export import reference_profile

    test = fitted.frames["test"]
    manifest, _ = export_bundle(
        tmp_path / "7",
        to_onnx(fitted, 15),
        manifest_of(fitted),
        test,
        fitted.score(test),
        1e-5,
        profile=reference_profile(fitted),
    )
    profile = load_profile(tmp_path / "7", manifest.reference_profile_sha256)
    assert profile is not None and profile.rows == len(fitted.frames["train"])
    assert [c.name for c in profile.features] == list(fitted.schema.names)
    kinds = {c.name: c.kind for c in profile.features}
    assert all(kinds[n] == "category" for n in fitted.schema.encodings)
    train_scores = fitted.score(fitted.frames["train"])
    assert psi(profile.score.shares, bin_shares(train_scores, profile.score)) < 1e-9
