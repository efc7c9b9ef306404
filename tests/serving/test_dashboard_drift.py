"""Drift at server level: a running app (the bare ASGI app over a real Feast store and a
profiled bundle) fed calm, then shifted traffic through POST /score. /metrics must show
`intent_feature_psi` past the threshold, /readyz a `drift` warning (still 200), and the
dashboard the same PSI. The scrape also covers the Grafana dashboard's drift queries."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from serving_helpers import QUIET, REPO_ROOT, merge, start_bare, tmp_layout
from test_dashboard_browser import exposed_names, grafana_metric_names
from test_serving_drift import training_matrix, with_profile

THRESHOLD = 0.25
WINDOW = 300
DRIFT = {
    "features.online_store": "feast",
    "drift.window": WINDOW,
    "drift.every": 100,
    "drift.min_rows": 200,
    "drift.threshold": THRESHOLD,
}
REFRESH_LIMIT_S = 120  # the background PSI recompute on a loaded machine


def psi_samples(text: str, name: str) -> dict[str, float]:
    """{feature (or model_version): value} of one gauge family in a /metrics scrape."""
    out = {}
    for line in text.splitlines():
        if line.startswith(name + "{"):
            labels, value = line[len(name) + 1 :].rsplit("} ", 1)
            parts = dict(kv.split("=", 1) for kv in labels.split(","))
            key = parts.get("feature", parts.get("model_version", "")).strip('"')
            out[key] = float(value)
    return out


def score_rows(client, rows: list[dict], ts: str) -> None:
    for row in rows:
        body = {
            "user_id": "u_known",
            "session_id": "s-unstored",  # no stored session state: missing stays missing
            "step": "welcome",
            "ts": ts,
            "device": row["device"],
            "signals": {k: v for k, v in row.items() if k != "device" and v == v},  # no NaN
        }
        r = client.post("/score", json=body)
        assert r.status_code == 200, r.text
        assert r.json()["source"] == "model", r.json()


def wait_for_psi(client, feature: str, check) -> tuple[str, float]:
    deadline = time.monotonic() + REFRESH_LIMIT_S
    while True:
        text = client.get("/metrics").text
        value = psi_samples(text, "intent_feature_psi").get(feature)
        if value is not None and check(value):
            return text, value
        if time.monotonic() > deadline:
            raise AssertionError(
                f"PSI of {feature} never satisfied the check: {value}; all: "
                f"{psi_samples(text, 'intent_feature_psi')}"
            )
        time.sleep(0.2)


@pytest.mark.slow
def test_shifted_traffic_through_the_api_moves_psi_past_the_threshold(
    tmp_path: Path, monkeypatch, bundle_dir: Path
) -> None:
    sys.path.insert(0, str(REPO_ROOT / "tests" / "feast"))
    try:
        from feast_tables import DECISION_S, at, write_tables
    finally:
        sys.path.pop(0)
    from bench.synthetic import make_bundle
    from core.bundle import load_bundle
    from core.settings import load_config
    from features.store.config import FeatureStoreConfig
    from features.store.repo import apply, materialize

    layout = tmp_layout(tmp_path, merge(QUIET, {"serving.yaml": DRIFT}))
    write_tables(layout)
    cfg = load_config(FeatureStoreConfig, layout=layout)
    apply(layout, cfg)
    materialize(layout, cfg, end=at(600))
    source = tmp_path / "source"
    make_bundle(source, version="1", n_trees=30, rows=2000, seed=0,
                feature_service=cfg.feature_service)  # fmt: skip
    with_profile(source, layout.models / "2", "2")
    bundle = load_bundle(layout.models / "2")
    calm = training_matrix(bundle, WINDOW, seed=1)
    shifted = training_matrix(bundle, WINDOW, seed=2, shift=True)
    ts = at(DECISION_S).isoformat()

    with start_bare(monkeypatch, layout) as client:
        score_rows(client, calm, ts)
        wait_for_psi(client, "pause_s", lambda v: True)
        text, calm_psi = wait_for_psi(client, "pause_s", lambda v: v < THRESHOLD)
        ready = client.get("/readyz").json()
        assert "drift" not in ready["dependencies"], ready

        score_rows(client, shifted, ts)  # the window now holds only shifted rows
        text, shifted_psi = wait_for_psi(client, "pause_s", lambda v: v > THRESHOLD)
        assert psi_samples(text, "intent_feature_psi")["scroll_depth"] > THRESHOLD
        r = client.get("/readyz")
        assert r.status_code == 200  # a warning, never a failure
        assert r.json()["dependencies"]["drift"] == {"status": "degraded", "reason": "drift"}
        drift = client.get("/dashboard.json?window=7d").json()["drift"]
        by_feature = {f["feature"]: f for f in drift["features"]}
        assert by_feature["pause_s"]["over"] and by_feature["pause_s"]["psi"] == pytest.approx(
            shifted_psi, abs=1e-6
        )
        drift_queries = {n for n in grafana_metric_names() if n.endswith("_psi")}
        assert drift_queries == {"intent_feature_psi", "intent_score_psi"}
        assert drift_queries <= exposed_names(text)
    assert calm_psi < THRESHOLD < shifted_psi
