"""One training run in MLflow: record a fitted model, export its bundle, register it.

The run holds params, metrics (consistent names, see `training.metrics`), the three
datasets' lineage, the plots, the segment table, the behavioural checks, the test window
(`evaluation/test_frame.parquet`, which `intent promote` scores both models on) and the raw
LightGBM booster (`lightgbm`, for analysis). The registered model is the served one: a pyfunc
carrying the serving bundle (`training.mlflow_model`); the new version gets the challenger
alias.

Order matters: the bundle is exported and parity-checked in a hidden staging folder before
anything is registered; the registry then assigns version V, the bundle is written to
`models/V/` with that version in its manifest and checked again. If anything fails after
registration the version is deleted, so the registry only ever holds complete versions.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import tempfile
import uuid
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from core.bundle import Manifest, read_manifest
from core.layout import Layout
from core.profile import ReferenceProfile
from training.config import TrainingConfig
from training.evaluate import MODEL, MODEL_RAW, ORACLE_SCORER, RULES
from training.export import (
    ParityReport,
    build_manifest,
    export_bundle,
    reference_profile,
    to_onnx,
)
from training.fit import FittedModel
from training.frame import LABEL, TrainingFrame, encode
from training.mlflow_model import register_served_model
from training.model import contributions
from training.split import SPLITS
from training.tracking import (
    BEHAVIOUR_TAG,
    KIND_TAG,
    VERSION_TAG,
    experiment_id,
    session,
    tracking_uri,
)

log = logging.getLogger(__name__)

MODEL_ARTIFACT = "model"
BEST_BASELINE_TAG = "intent.best_baseline"
CALIBRATION_TAG = "intent.calibration"
LIGHTGBM_ARTIFACT = "lightgbm"  # the raw booster, for analysis; the registered model is the bundle
TEST_FRAME_ARTIFACT = "evaluation/test_frame.parquet"
PENDING_VERSION = "pending"
MODEL_DESCRIPTION = (
    "Probability that a user abandons the current onboarding step, scored at a micro-moment. "
    "LightGBM on the Feast FeatureService, calibrated, exported to ONNX; each version is an "
    "MLflow pyfunc carrying the serving bundle (model.onnx + manifest.json) as artifact "
    "`bundle`. Aliases: champion (served), challenger (candidate)."
)


@dataclass(frozen=True)
class TrainOutcome:
    """What `intent train` reports."""

    run_id: str
    version: str
    bundle_dir: Path
    metrics: dict[str, float]
    parity: ParityReport
    fitted: FittedModel


def run_params(fitted: FittedModel, cfg: TrainingConfig, data: TrainingFrame) -> dict[str, object]:
    """Flat params of a run: config sections and what the data made of them."""
    start, end = fitted.training_window
    params: dict[str, object] = {f"lgbm_{k}": v for k, v in cfg.lightgbm.model_dump().items()}
    params |= {f"split_{k}": v for k, v in cfg.split.model_dump().items()}
    params |= {
        "imbalance_strategy": cfg.imbalance.strategy,
        "class_weight_positive": round(fitted.weights.positive, 6),
        "class_weight_negative": round(fitted.weights.negative, 6),
        "calibration": fitted.calibration.kind,
        "best_iteration": fitted.best_iteration,
        "n_features": len(fitted.schema.names),
        "categorical_features": ",".join(fitted.schema.categorical),
        "feature_service": data.service_name,
        "rows_purged": fitted.split.purged,
        "rows_excluded_by_exposure": data.excluded_by_exposure,
        "training_window_start": start.isoformat(),
        "validation_start": fitted.split.validation_start.isoformat(),
        "test_start": fitted.split.test_start.isoformat(),
        "test_end": pd.Timestamp(fitted.frames["test"]["event_timestamp"].max()).isoformat(),
    }
    params |= {f"rows_{name}": size for name, size in fitted.split.sizes().items()}
    params["training_window_end"] = end.isoformat()
    return params


def run_metrics(fitted: FittedModel) -> dict[str, float]:
    """Every finite metric of the run (MLflow cannot chart NaN)."""
    metrics = dict(fitted.evaluation.metrics)
    if fitted.validation is not None:
        metrics |= fitted.validation.metrics
    metrics["validation_roc_auc"] = fitted.validation_auc
    if fitted.signal is not None:
        metrics["validation_roc_auc_margin_over_best_baseline"] = fitted.signal.margin
        metrics["validation_roc_auc_margin_se"] = fitted.signal.margin_se
        metrics["validation_roc_auc_margin_lower_bound"] = fitted.signal.margin_lower
    choice = fitted.calibration_choice
    if choice is not None:
        metrics |= {f"calibration_cv_log_loss_{k}": v for k, v in choice.cv_log_loss.items()}
        metrics["calibration_raw_validation_roc_auc"] = choice.raw_auc
    metrics["fit_seconds"] = fitted.seconds["fit"]
    metrics["train_rows_per_s"] = fitted.train_rows_per_s
    for check in fitted.behaviour:
        metrics[f"behaviour_{check.name}_mean_change"] = check.mean_change
        metrics[f"behaviour_{check.name}_passed"] = float(check.passed)
    return {k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(v)}


def thresholds(fitted: FittedModel, top_fraction: float) -> dict[str, float]:
    """Cut-offs the policy may use: the lowest score of the top slice and the base rate."""
    from training.metrics import top_slice

    ev = fitted.evaluation
    top = top_slice(ev.labels, ev.scores[MODEL], top_fraction)
    return {"score_top_decile": top.threshold, "test_base_rate": float(np.mean(ev.labels))}


def record_training(
    layout: Layout,
    cfg: TrainingConfig,
    fitted: FittedModel,
    data: TrainingFrame,
    *,
    run_name: str,
    tags: Mapping[str, str] | None = None,
) -> TrainOutcome:
    """Log the run, export + verify the bundle, register the version as challenger."""
    import mlflow

    metrics = run_metrics(fitted)
    test = fitted.frames["test"]
    expected = fitted.score(test)
    onnx_bytes = to_onnx(fitted, cfg.export.target_opset)
    with session(tracking_uri(layout, cfg.tracking)) as client:
        exp = experiment_id(client, cfg.registry.experiment, layout)
        run_tags = {
            KIND_TAG: "train",
            "intent.feature_service": data.service_name,
            "intent.oracle": fitted.evaluation.oracle_note,
            BEHAVIOUR_TAG: _behaviour_tag(fitted),
            **run_tags_of(fitted),
            **dict(tags or {}),
        }
        with mlflow.start_run(experiment_id=exp, run_name=run_name, tags=run_tags) as run:
            run_id = run.info.run_id
            mlflow.log_params(run_params(fitted, cfg, data))
            mlflow.log_metrics(metrics)
            _log_datasets(fitted, data)
            with tempfile.TemporaryDirectory() as tmp:
                _log_evaluation(fitted, cfg, Path(tmp))
            _log_lightgbm(fitted)
            manifest = build_manifest(
                fitted,
                model_name=cfg.registry.model_name,
                version=PENDING_VERSION,
                run_id=run_id,
                feature_service=data.service_name,
                metrics=metrics,
                thresholds=thresholds(fitted, cfg.evaluation.top_fraction),
            )
            export = _Export(
                onnx_bytes,
                manifest,
                test,
                expected,
                cfg.export.parity_tolerance,
                reference_profile(fitted),
            )
            staged = _verify_staged(layout, export)
            mlflow.log_metric("parity_max_abs_diff", staged.max_abs_diff)
            published: dict[str, tuple[Path, ParityReport]] = {}

            def publish(version: str) -> Path:
                published[version] = _publish(layout, version, export)
                return published[version][0]

            registered = register_served_model(
                client,
                cfg.registry.model_name,
                run_id=run_id,
                example=test[list(fitted.schema.names)].head(5).reset_index(drop=True),
                publish=publish,
                tags={"run_name": run_name, **dict(tags or {})},
                description=MODEL_DESCRIPTION,
            )
            version = registered.version
            bundle_dir, report = published[version]
            name = cfg.registry.model_name
            client.set_registered_model_alias(name, cfg.registry.challenger_alias, version)
            manifest_sha = read_manifest(bundle_dir).onnx_sha256 or ""
            client.set_model_version_tag(name, version, "onnx_sha256", manifest_sha)
            mlflow.set_tag(VERSION_TAG, version)
    return TrainOutcome(run_id, version, bundle_dir, metrics, report, fitted)


@dataclass(frozen=True)
class _Export:
    """The graph, its draft manifest and what it must reproduce on the test window."""

    onnx_bytes: bytes
    manifest: Manifest
    frame: pd.DataFrame
    expected: np.ndarray
    tolerance: float
    profile: ReferenceProfile | None = None


def _verify_staged(layout: Layout, export: _Export) -> ParityReport:
    """Export + parity check in a hidden folder (the server ignores dot folders), before
    anything is registered; the folder is removed either way."""
    staging = layout.models / f".staging-{uuid.uuid4().hex[:12]}"
    try:
        _, report = export_bundle(
            staging,
            export.onnx_bytes,
            export.manifest,
            export.frame,
            export.expected,
            export.tolerance,
            profile=export.profile,
        )
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return report


def _publish(layout: Layout, version: str, export: _Export) -> tuple[Path, ParityReport]:
    """`models/<version>/`, written for that version and parity-checked again."""
    bundle_dir = layout.models / version
    if bundle_dir.exists():
        log.warning("%s exists from an earlier store; replacing it", bundle_dir)
    _, report = export_bundle(
        bundle_dir,
        export.onnx_bytes,
        export.manifest.model_copy(update={"model_version": version}),
        export.frame,
        export.expected,
        export.tolerance,
        overwrite=True,
        profile=export.profile,
    )
    return bundle_dir, report


def run_tags_of(fitted: FittedModel) -> dict[str, str]:
    """The guards' verdict, the strongest baseline and the calibration choice as tags."""
    tags = {BEST_BASELINE_TAG: fitted.evaluation.best_baseline}
    if fitted.signal is not None:
        tags |= fitted.signal.tags
    if fitted.calibration_choice is not None:
        tags[CALIBRATION_TAG] = fitted.calibration_choice.note
    return tags


def _behaviour_tag(fitted: FittedModel) -> str:
    failed = [c.name for c in fitted.behaviour if not c.passed]
    return "passed" if not failed else "failed: " + ",".join(failed)


def _log_datasets(fitted: FittedModel, data: TrainingFrame) -> None:
    """Dataset lineage: each split as a pandas dataset sourced from the decision points."""
    import mlflow

    for name in SPLITS:
        frame = fitted.frames[name]
        with warnings.catch_warnings():
            # MLflow hints that int columns cannot hold missing values (the label never does)
            # and that a local path matches its "" and "file" sources alike (both local).
            warnings.filterwarnings("ignore", "Hint: Inferred schema contains integer")
            warnings.filterwarnings("ignore", "The specified dataset source can be interpreted")
            dataset = mlflow.data.from_pandas(
                frame, source=data.source, targets=LABEL, name=f"{data.service_name}-{name}"
            )
            mlflow.log_input(dataset, context=name)


def _log_lightgbm(fitted: FittedModel):
    """The raw LightGBM booster (encoded float32 features, uncalibrated), for analysis only:
    the registered model is the served bundle (`training.mlflow_model`)."""
    import mlflow
    from mlflow.models import infer_signature

    names = list(fitted.schema.names)
    example = pd.DataFrame(encode(fitted.frames["test"].head(5), fitted.schema), columns=names)
    example = example.astype(np.float64)
    signature = infer_signature(example, fitted.booster.predict(example.to_numpy()))
    import lightgbm

    # Explicit requirements: MLflow's inference runs `uv export` and pip (seconds per run).
    requirements = [f"lightgbm=={lightgbm.__version__}", f"numpy=={np.__version__}"]
    return mlflow.lightgbm.log_model(
        fitted.booster,
        name=LIGHTGBM_ARTIFACT,
        signature=signature,
        input_example=example,
        pip_requirements=requirements,
    )


def _log_evaluation(fitted: FittedModel, cfg: TrainingConfig, tmp: Path) -> None:
    """Plots, the segment table, behaviour checks, the test window and the config."""
    import mlflow

    from training import plots

    ev = fitted.evaluation
    shown = (MODEL, RULES, ev.best_baseline, ORACLE_SCORER)
    curves = {k: ev.scores[k] for k in shown if k in ev.scores}
    calibrated = {k: ev.scores[k] for k in (MODEL, MODEL_RAW, ORACLE_SCORER) if k in ev.scores}
    test = fitted.frames["test"]
    sample = test.sample(n=min(cfg.evaluation.shap_rows, len(test)), random_state=0)
    matrix = encode(sample, fitted.schema)
    figures = {
        "plots/roc.png": plots.roc_figure(ev.labels, curves),
        "plots/precision_recall.png": plots.pr_figure(ev.labels, curves),
        "plots/calibration.png": plots.calibration_figure(
            ev.labels, calibrated, cfg.evaluation.ece_bins
        ),
        "plots/feature_importance.png": plots.importance_figure(
            fitted.schema.names, fitted.importance(), cfg.evaluation.plot_top_features
        ),
        "plots/contributions.png": plots.contributions_figure(
            fitted.schema.names,
            contributions(fitted.booster, matrix),
            matrix,
            cfg.evaluation.plot_top_features,
        ),
        "plots/learning_curve.png": plots.learning_curve_figure(
            fitted.valid_logloss, fitted.best_iteration
        ),
    }
    for path, figure in figures.items():
        mlflow.log_figure(figure, path)
    mlflow.log_table(ev.segments, "evaluation/segments.json")
    checks = [c.__dict__ | {"mean_change": c.mean_change} for c in fitted.behaviour]
    mlflow.log_dict({"checks": checks}, "evaluation/behaviour.json")
    mlflow.log_dict(cfg.model_dump(mode="json"), "config/training.json")
    path = tmp / Path(TEST_FRAME_ARTIFACT).name
    test.to_parquet(path, index=False)
    mlflow.log_artifact(str(path), artifact_path=str(Path(TEST_FRAME_ARTIFACT).parent))
    mlflow.log_text(json.dumps(fitted.schema.encodings, indent=2), "evaluation/encodings.json")
