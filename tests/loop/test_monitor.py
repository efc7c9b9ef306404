"""`intent monitor`: served rows rebuilt from the log, PSI per feature against the bundle's
profile, the HTML report, the monitor run and the champion run's artifacts in MLflow."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from core.layout import Layout
from core.profile import bin_shares, load_profile, psi
from loop.monitor import PSI_FILE, REPORT_FILE, MonitorError, bin_labels, run_monitor, served_rows
from serving.decision_log import sqlite_log

SERVING_TESTS = Path(__file__).resolve().parents[1] / "serving"
THRESHOLD = 0.25  # configs/serving.yaml drift.threshold


def serving_test_helpers():
    sys.path.insert(0, str(SERVING_TESTS))
    try:
        from serving_helpers import decision_row
        from test_serving_drift import training_matrix, with_profile
    finally:
        sys.path.pop(0)
    return decision_row, training_matrix, with_profile


def test_served_rows_keep_the_model_decisions_of_one_version_with_their_context() -> None:
    decision_row, _, _ = serving_test_helpers()
    frame = pd.DataFrame(
        [
            decision_row("a", signals='{"pause_s":14.0,"cta_fails":null}', device="mobile",
                         step="welcome", moment="pause", model_version="3", score=0.7),
            decision_row("b", source="rules", model_version=None, score=0.2),
            decision_row("c", model_version="2", score=0.4),
        ]
    )  # fmt: skip
    rows, scores = served_rows(frame, "3")
    assert rows == [{"pause_s": 14.0, "step": "welcome", "device": "mobile", "moment": "pause"}]
    assert scores.tolist() == [0.7]


def test_bin_labels_name_ranges_categories_and_the_missing_bin(bundle_dir: Path) -> None:
    from core.bundle import load_bundle
    from core.profile import profile_column

    numeric = profile_column(np.arange(100.0), "x", "numeric")
    labels = bin_labels(numeric)
    assert labels[0].startswith("[-inf,") and labels[-2].endswith("inf)")
    assert labels[-1] == "missing / unseen" and len(labels) == len(numeric.shares)
    bundle = load_bundle(bundle_dir)
    codes = bundle.manifest.encodings["device"]
    device = profile_column(np.array(sorted(codes.values()), dtype=float), "device", "category")
    assert bin_labels(device, bundle)[:-1] == sorted(codes, key=codes.get)


def profiled_layout(home: Layout, bundle_dir: Path, run_id: str) -> tuple[Layout, object]:
    """models/2: the synthetic bundle with a profile, trained in MLflow run `run_id`."""
    from bench.synthetic import make_bundle
    from core.bundle import load_bundle

    _, _, with_profile = serving_test_helpers()
    source = home.root / "source"
    make_bundle(source, version="1", n_trees=20, rows=1500, seed=0, run_id=run_id)
    with_profile(source, home.models / "2", "2")
    return home, load_bundle(home.models / "2")


def log_decisions(layout: Layout, bundle, rows: list[dict]) -> None:
    import time

    decision_row, _, _ = serving_test_helpers()
    scores = bundle.predict(bundle.vectorize(rows))
    now = time.time()
    with sqlite_log(layout.serving / "decisions.db", synchronous="normal", batch_max=64) as log:
        for i, (row, score) in enumerate(zip(rows, scores, strict=True)):
            signals = {k: v for k, v in row.items() if k != "device" and v == v}
            log.append_decision(
                decision_row(f"m{i}", now - 60, signals=json.dumps(signals), device=row["device"],
                             score=float(score), model_version="2", moment=None, step="welcome")
            )  # fmt: skip


def champion_run(layout: Layout) -> str:
    from mlflow import MlflowClient

    uri = f"sqlite:///{layout.mlruns / 'mlflow.db'}"
    layout.mlruns.mkdir(parents=True, exist_ok=True)
    client = MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment(
        "training", artifact_location=str(layout.mlruns / "artifacts")
    )
    return client.create_run(experiment, run_name="train").info.run_id


@pytest.mark.slow
def test_shifted_serving_rows_cross_the_threshold_and_the_report_lands_in_mlflow(
    home: Layout, bundle_dir: Path
) -> None:
    from mlflow import MlflowClient

    _, training_matrix, _ = serving_test_helpers()
    run_id = champion_run(home)
    layout, bundle = profiled_layout(home, bundle_dir, run_id)
    shifted = training_matrix(bundle, 600, seed=2, shift=True)
    log_decisions(layout, bundle, shifted)

    result = run_monitor(layout, window="1h", log_path=None, mlflow=True, stamp="t1")
    assert result.model_version == "2" and result.rows == 600
    # independent of the monitor: the profile's bins over the same rows, straight from the log
    profile = load_profile(bundle.path, bundle.manifest.reference_profile_sha256)
    col = next(c for c in profile.features if c.name == "pause_s")
    served = np.array([r["pause_s"] for r in shifted], dtype=float)
    expected = psi(col.shares, bin_shares(served, col))
    assert result.report.feature_psi["pause_s"] == pytest.approx(expected, rel=1e-5)
    assert expected > THRESHOLD
    assert result.report.feature_psi["secondary_clicks"] < 0.1  # not shifted

    page = (result.folder / REPORT_FILE).read_text()
    assert page.count("<img") == len(profile.features) + 1  # every feature and the score
    assert "pause_s" in page and "over threshold" in page
    table = pd.read_csv(result.folder / PSI_FILE)
    assert dict(zip(table["feature"], table["psi"], strict=True))["pause_s"] == pytest.approx(
        expected, rel=1e-5
    )

    client = MlflowClient(tracking_uri=f"sqlite:///{layout.mlruns / 'mlflow.db'}")
    run = client.get_run(result.run_id)
    assert run.data.tags["intent.kind"] == "monitor"
    assert run.data.tags["intent.champion_run"] == run_id
    assert run.data.metrics["psi.pause_s"] == pytest.approx(expected, rel=1e-5)
    logged = [a.path for a in client.list_artifacts(run_id, "monitor/t1")]
    assert sorted(logged) == [f"monitor/t1/{REPORT_FILE}", f"monitor/t1/{PSI_FILE}"]


def test_the_command_says_what_is_missing(home: Layout, bundle_dir: Path) -> None:
    import typer

    from loop import monitor_cli

    app = typer.Typer()
    app.callback()(lambda: None)  # a group, so the command is called by name
    monitor_cli.register(app)
    runner = CliRunner()
    result = runner.invoke(app, ["monitor", "--no-mlflow"])
    assert result.exit_code == 1 and "no served model" in result.output
    bad = runner.invoke(app, ["monitor", "--window", "5y", "--no-mlflow"])
    assert bad.exit_code == 1 and "--window must be one of" in bad.output
    with pytest.raises(MonitorError, match="no decisions of model 2"):
        _, _, with_profile = serving_test_helpers()
        with_profile(bundle_dir, home.models / "2", "2")
        sqlite_log(home.serving / "decisions.db", synchronous="normal", batch_max=1).close()
        run_monitor(home, window="1h", log_path=None, mlflow=False, stamp="t2")
