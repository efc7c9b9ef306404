"""ONNX export into a serving bundle, verified by the loader the server uses.

`onnxmltools.convert_lightgbm(..., zipmap=False)` with one float32 input; categorical
features arrive as integer codes (the manifest's encodings), so the graph never sees text.
Calibration stays outside the graph as the bundle's documented post-step. After every
export the bundle is loaded with `core.bundle.load_bundle` (checksum included) and its
`predict` on the whole test window is compared with LightGBM + calibration: a difference
above the tolerance deletes the bundle and fails the run.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from core.bundle import Bundle, FeatureSpec, Manifest, load_bundle, write_bundle
from core.profile import ReferenceProfile, build_profile, profile_bytes
from training.fit import FittedModel
from training.frame import encode

ONNX_INPUT = "input"
ONNX_OUTPUT = "probabilities"
# Metrics copied into the manifest (the server shows them; the run holds all of them).
MANIFEST_METRICS: tuple[str, ...] = (
    "test_roc_auc",
    "test_pr_auc",
    "test_log_loss",
    "test_brier",
    "test_ece",
    "test_lift_top_decile",
    "test_recall_top_decile",
    "rules_test_roc_auc",
    "oracle_test_roc_auc",
    "test_auc_ratio_oracle",
    "validation_roc_auc",
)


class ParityError(RuntimeError):
    """The exported bundle does not reproduce LightGBM + calibration."""


def to_onnx(fitted: FittedModel, target_opset: int) -> bytes:
    """The booster as an ONNX graph: float32 [n, features] in, probabilities [n, 2] out."""
    import onnxmltools
    from onnxmltools.convert.common.data_types import FloatTensorType

    model = onnxmltools.convert_lightgbm(
        fitted.booster,
        initial_types=[(ONNX_INPUT, FloatTensorType([None, len(fitted.schema.names)]))],
        zipmap=False,
        target_opset=target_opset,
    )
    outputs = [o.name for o in model.graph.output]
    if ONNX_OUTPUT not in outputs:
        raise ParityError(f"converted graph has outputs {outputs}, expected {ONNX_OUTPUT!r}")
    return model.SerializeToString()


def feature_specs(fitted: FittedModel) -> list[FeatureSpec]:
    """Ordered inputs with the training median (explanation baseline) and gain share."""
    matrix = encode(fitted.frames["train"], fitted.schema)
    importance = fitted.importance()
    specs = []
    for i, name in enumerate(fitted.schema.names):
        if name in fitted.schema.encodings:
            specs.append(FeatureSpec(name=name, dtype="category", importance=importance[i]))
            continue
        column = matrix[:, i]
        finite = column[~np.isnan(column)]
        baseline = float(np.median(finite)) if len(finite) else None
        specs.append(
            FeatureSpec(name=name, dtype="float", baseline=baseline, importance=importance[i])
        )
    return specs


def reference_profile(fitted: FittedModel) -> ReferenceProfile:
    """Deciles and shares of the training window's features and calibrated scores: what the
    server's drift gauges (serving.drift) compare live traffic with."""
    train = fitted.frames["train"]
    return build_profile(
        encode(train, fitted.schema),
        list(fitted.schema.names),
        fitted.schema.encodings,
        fitted.score(train),
    )


def build_manifest(
    fitted: FittedModel,
    *,
    model_name: str,
    version: str,
    run_id: str | None,
    feature_service: str,
    metrics: Mapping[str, float],
    thresholds: Mapping[str, float],
) -> Manifest:
    """The bundle manifest of a fitted model (non-finite metrics are left out)."""
    start, end = fitted.training_window
    return Manifest(
        model_name=model_name,
        model_version=version,
        run_id=run_id,
        feature_service=feature_service,
        features=feature_specs(fitted),
        encodings=fitted.schema.encodings,
        calibration=fitted.calibration,
        thresholds=dict(thresholds),
        metrics={k: float(metrics[k]) for k in MANIFEST_METRICS if _finite(metrics.get(k))},
        training_window={"start": _utc(start), "end": _utc(end)},
        onnx_input=ONNX_INPUT,
        onnx_output=ONNX_OUTPUT,
        created_at=datetime.now(UTC),
    )


@dataclass(frozen=True)
class ParityReport:
    rows: int
    max_abs_diff: float
    tolerance: float

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= self.tolerance


def parity(
    bundle: Bundle, frame: pd.DataFrame, expected: np.ndarray, tolerance: float
) -> ParityReport:
    """Compare the bundle's scores on `frame` (the serving path: `vectorize_frame` then
    `predict`) with the expected calibrated probabilities."""
    missing = [n for n in bundle.feature_names if n not in frame.columns]
    if missing:
        raise ParityError(f"parity frame lacks bundle features: {missing}")
    got = bundle.predict(bundle.vectorize_frame(frame))
    if got.shape != expected.shape:
        raise ParityError(f"bundle returned {got.shape} scores for {expected.shape} rows")
    diff = np.abs(got - expected)
    worst = float(np.nanmax(diff)) if len(diff) else 0.0
    if np.isnan(diff).any():
        worst = math.inf
    return ParityReport(rows=len(frame), max_abs_diff=worst, tolerance=tolerance)


def export_bundle(
    directory: Path,
    onnx_bytes: bytes,
    manifest: Manifest,
    frame: pd.DataFrame,
    expected: np.ndarray,
    tolerance: float,
    *,
    overwrite: bool = False,
    profile: ReferenceProfile | None = None,
) -> tuple[Manifest, ParityReport]:
    """Write the bundle, load it back as the server would and check parity on `frame`.

    A bundle that fails to load or to match is deleted before ParityError is raised, so
    the server's newest-bundle fallback can never pick it up.
    """
    written = write_bundle(
        directory,
        onnx_bytes,
        manifest,
        overwrite=overwrite,
        reference_profile=profile_bytes(profile) if profile is not None else None,
    )
    try:
        report = parity(load_bundle(directory), frame, expected, tolerance)
        if not report.passed:
            raise ParityError(
                f"ONNX bundle differs from LightGBM + calibration by {report.max_abs_diff:.3g} "
                f"on {report.rows} test rows (tolerance {tolerance:g})"
            )
    except Exception:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    return written, report


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _utc(ts: datetime) -> datetime:
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
