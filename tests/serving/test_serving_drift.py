"""Drift: PSI properties, the bundle's reference profile, and shifted traffic through the
engine moving the gauges and /readyz (serving.drift, core.profile)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_serving_engine import DictReader, make_engine, request

from bench.synthetic import synthetic_frame
from core.bundle import load_bundle, read_manifest, write_bundle
from core.profile import (
    PROFILE_FILE,
    SHARE_FLOOR,
    ProfileError,
    bin_shares,
    build_profile,
    load_profile,
    profile_bytes,
    profile_column,
    psi,
)
from serving.config import DriftConfig
from serving.drift import COMPONENT, attach_drift
from serving.metrics import engine_metrics
from serving.readiness import Readiness

THRESHOLD = DriftConfig().threshold
# How long a test waits for the background recompute (generous: the machine is shared).
BACKGROUND_WAIT_S = 120.0


def shares_strategy(n: int):
    return st.lists(st.floats(min_value=SHARE_FLOOR, max_value=1.0), min_size=n, max_size=n).map(
        lambda xs: np.asarray(xs) / np.sum(xs)
    )


@settings(max_examples=200, deadline=None)
@given(st.integers(2, 12).flatmap(lambda n: st.tuples(shares_strategy(n), shares_strategy(n))))
def test_psi_is_non_negative_and_zero_only_for_equal_shares(pair) -> None:
    p, q = pair
    p, q = np.maximum(p, SHARE_FLOOR), np.maximum(q, SHARE_FLOOR)
    value = psi(p, q)
    assert value >= 0
    assert psi(p, p) == pytest.approx(0.0, abs=1e-12)
    if not np.allclose(p, q, rtol=0, atol=1e-9):
        assert value > 0
    assert value == pytest.approx(psi(q, p))  # symmetric: KL both ways


def test_identical_distributions_have_psi_near_zero_and_a_shift_crosses_the_threshold():
    rng = np.random.default_rng(3)
    reference = profile_column(rng.normal(0, 1, 20_000), "x", "numeric")
    assert len(reference.shares) == 11  # 10 deciles + missing
    same = bin_shares(rng.normal(0, 1, 20_000), reference)
    shifted = bin_shares(rng.normal(1, 1, 20_000), reference)
    assert psi(reference.shares, same) < 0.01
    assert psi(reference.shares, shifted) > THRESHOLD


def test_missing_values_and_unseen_categories_land_in_the_missing_bin():
    col = profile_column(np.array([0.0, 1.0, 1.0, np.nan]), "device", "category")
    assert col.edges == [0.0, 1.0] and col.shares == [0.25, 0.5, 0.25]
    assert bin_shares(np.array([2.0, np.nan, 0.0, 1.0]), col).tolist() == [0.25, 0.25, 0.5]


# --- a bundle with a profile -----------------------------------------------------------------


def training_matrix(bundle, rows: int, seed: int, shift: bool = False) -> list[dict]:
    """Feature rows as the online store would serve them (device as its text)."""
    from bench.synthetic import DEVICES

    cols, _ = synthetic_frame(rows, seed, 10)
    if shift:
        cols["pause_s"] = cols["pause_s"] * 4 + 30
        cols["scroll_depth"] = np.full(rows, 97.0)
    out = []
    for i in range(rows):
        row = {n: float(cols[n][i]) for n in bundle.feature_names if n != "device"}
        row["device"] = DEVICES[int(cols["device"][i])]
        out.append(row)
    return out


def with_profile(bundle_dir: Path, target: Path, version: str) -> Path:
    """`bundle_dir` re-exported as `version` with the profile of its training rows."""
    old = load_bundle(bundle_dir)
    rows = training_matrix(old, 1000, 0)
    matrix = old.vectorize(rows)
    profile = build_profile(matrix, old.feature_names, ["device"], old.predict(matrix))
    manifest = old.manifest.model_copy(update={"model_version": version, "onnx_sha256": None})
    onnx = (bundle_dir / "model.onnx").read_bytes()
    write_bundle(target, onnx, manifest, reference_profile=profile_bytes(profile))
    return target


@pytest.fixture(scope="module")
def profiled_dir(bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Version 2: the synthetic bundle re-exported with the profile of its training rows."""
    return with_profile(bundle_dir, tmp_path_factory.mktemp("profiled") / "2", "2")


def test_the_profile_is_covered_by_the_manifest_checksum(profiled_dir: Path, tmp_path):
    manifest = read_manifest(profiled_dir)
    assert manifest.reference_profile_sha256 is not None
    profile = load_profile(profiled_dir, manifest.reference_profile_sha256)
    assert [c.name for c in profile.features] == [f.name for f in manifest.features]
    tampered = tmp_path / "2"
    tampered.mkdir()
    data = json.loads((profiled_dir / PROFILE_FILE).read_text())
    data["rows"] += 1
    (tampered / PROFILE_FILE).write_text(json.dumps(data))
    with pytest.raises(ProfileError, match="checksum mismatch"):
        load_profile(tampered, manifest.reference_profile_sha256)
    assert load_profile(tmp_path / "nothing", None) is None  # old bundles: no profile


def engine_with(policy_cfg, signals_cfg, bundle, rows: list[dict], cfg: DriftConfig):
    users = {f"u{i}": row for i, row in enumerate(rows)}
    engine = make_engine(policy_cfg, signals_cfg, bundle=bundle, reader=DictReader(users))
    return engine, attach_drift(engine, cfg), list(users)


def psi_sample(name: str, labels: dict[str, str]) -> float | None:
    return engine_metrics().registry.get_sample_value(name, labels)


def test_shifted_traffic_moves_the_gauges_past_the_threshold_and_readyz_warns(
    policy_cfg, signals_cfg, profiled_dir
) -> None:
    bundle = load_bundle(profiled_dir)
    cfg = DriftConfig(window=400, every=100_000, min_rows=300, threshold=THRESHOLD)
    calm = training_matrix(bundle, 400, seed=1)
    shifted = training_matrix(bundle, 400, seed=2, shift=True)
    engine, monitor, users = engine_with(policy_cfg, signals_cfg, bundle, calm + shifted, cfg)
    ready = Readiness(engine, budget_s=30.0, threads=2, online_configured=False)
    try:
        for uid in users[:400]:
            engine.decide(request(uid, signals={}))
        report = monitor.refresh()
        assert report is not None and report.rows == 400
        labels = {"feature": "pause_s", "model_version": "2"}
        assert psi_sample("intent_feature_psi", labels) < THRESHOLD
        status, body = ready.report()
        assert status == 200 and COMPONENT not in body["dependencies"]

        for uid in users[400:]:
            engine.decide(request(uid, signals={}))
        report = monitor.refresh()
        assert psi_sample("intent_feature_psi", labels) > THRESHOLD
        assert psi_sample("intent_feature_psi", {**labels, "feature": "scroll_depth"}) > THRESHOLD
        assert psi_sample("intent_score_psi", {"model_version": "2"}) == report.score_psi
        status, body = ready.report()
        assert status == 200  # a warning, never a failure
        assert body["degraded"] is True
        assert body["dependencies"][COMPONENT] == {"status": "degraded", "reason": "drift"}
    finally:
        ready.close()
        monitor.close()
        engine.close()


def test_the_recompute_runs_in_the_background_every_k_decisions(
    policy_cfg, signals_cfg, profiled_dir
) -> None:
    bundle = load_bundle(profiled_dir)
    cfg = DriftConfig(window=200, every=50, min_rows=50)
    engine, monitor, users = engine_with(
        policy_cfg, signals_cfg, bundle, training_matrix(bundle, 100, 5, shift=True), cfg
    )
    try:
        for uid in users:
            engine.decide(request(uid, signals={}))
        deadline = time.monotonic() + BACKGROUND_WAIT_S
        while monitor.last is None or monitor.last.rows < 100:
            assert time.monotonic() < deadline, "no background drift recompute in time"
            time.sleep(0.05)
        assert monitor.last.feature_psi["pause_s"] > THRESHOLD
        assert any(n.component == COMPONENT for n in engine.health.notes())
    finally:
        monitor.close()
        engine.close()


def test_an_old_bundle_without_a_profile_serves_without_drift_gauges(
    policy_cfg, signals_cfg, bundle
) -> None:
    from prometheus_client import generate_latest

    assert bundle.manifest.reference_profile_sha256 is None
    cfg = DriftConfig(window=100, every=20, min_rows=10)
    engine, monitor, users = engine_with(
        policy_cfg, signals_cfg, bundle, training_matrix(bundle, 60, 7, shift=True), cfg
    )
    try:
        decisions = [engine.decide(request(uid, signals={})) for uid in users]
        assert all(d.model_version == "1" for d in decisions)  # the model still serves
        assert monitor.refresh() is None
        text = generate_latest(engine_metrics().registry).decode()
        assert 'model_version="1"' not in text
        assert not any(n.component == COMPONENT for n in engine.health.notes())
    finally:
        monitor.close()
        engine.close()


def test_the_drift_config_is_strict_and_shipped_on(serving_cfg) -> None:
    from pydantic import ValidationError

    assert serving_cfg.drift.enabled and serving_cfg.drift.threshold == 0.25  # the issue asks
    with pytest.raises(ValidationError, match="min_rows"):
        DriftConfig(window=100, min_rows=200)
    with pytest.raises(ValidationError, match="extra"):
        DriftConfig.model_validate({"threshhold": 0.3})
    with pytest.raises(ValidationError):
        DriftConfig(threshold=0)
