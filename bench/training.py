"""`intent bench train`: how long the frame, the fit and the export take (JSON).

Nothing is logged to MLflow or written to `models/`: the export goes to a temporary folder
and is parity-checked exactly as in a real run.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from core.layout import Layout
from training.export import build_manifest, export_bundle, to_onnx
from training.fit import fit_model
from training.frame import load_training_frame
from training.pipeline import TrainingConfigs


def bench_training(
    layout: Layout,
    configs: TrainingConfigs,
    *,
    repeat: int = 1,
    on_stage: Callable[[str], None] | None = None,
) -> dict[str, object]:
    stage = on_stage or (lambda _s: None)
    cfg = configs.training
    stage("reading the point-in-time frame (Feast)")
    began = time.perf_counter()
    data = load_training_frame(layout, configs.features)
    frame_s = time.perf_counter() - began
    fits = []
    for i in range(repeat):
        stage(f"fit {i + 1}/{repeat}")
        fitted = fit_model(data.frame, data.service_features, cfg, configs.heuristic)
        fits.append(fitted.seconds["fit"])
    stage("ONNX export and parity check")
    began = time.perf_counter()
    onnx_bytes = to_onnx(fitted, cfg.export.target_opset)
    manifest = build_manifest(
        fitted,
        model_name=cfg.registry.model_name,
        version="bench",
        run_id=None,
        feature_service=data.service_name,
        metrics=fitted.evaluation.metrics,
        thresholds={},
    )
    test = fitted.frames["test"]
    with tempfile.TemporaryDirectory() as tmp:
        _, parity = export_bundle(
            Path(tmp) / "bundle",
            onnx_bytes,
            manifest,
            test,
            fitted.score(test),
            cfg.export.parity_tolerance,
        )
    export_s = time.perf_counter() - began
    m = fitted.evaluation.metrics
    train_rows = len(fitted.frames["train"])
    best_fit = min(fits)
    return {
        "bench": "train",
        "decision_points": len(data.frame),
        "rows": fitted.split.sizes(),
        "features": len(fitted.schema.names),
        "num_threads": cfg.lightgbm.num_threads,
        "trees": fitted.best_iteration,
        "frame_seconds": round(frame_s, 3),
        "fit_seconds": [round(s, 3) for s in fits],
        "train_rows_per_s": round(train_rows / best_fit),
        "export_and_parity_seconds": round(export_s, 3),
        "parity_max_abs_diff": parity.max_abs_diff,
        "test_roc_auc": round(m["test_roc_auc"], 4),
        "rules_test_roc_auc": round(m["rules_test_roc_auc"], 4),
        "oracle_test_roc_auc": round(m["oracle_test_roc_auc"], 4)
        if "oracle_test_roc_auc" in m
        else None,
    }
