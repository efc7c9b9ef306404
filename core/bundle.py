"""The model bundle: the one contract between training (writes) and serving (loads).

A bundle is a folder `models/<version>/` with two files:

- `model.onnx`: the classifier graph (onnxmltools `convert_lightgbm(..., zipmap=False)`), one
  float32 input `[n, len(features)]`, an output whose column 1 is the *uncalibrated*
  probability of abandonment.
- `manifest.json`: a `Manifest` - ordered features, categorical encodings, calibration,
  thresholds, metrics, training window, FeatureService name and the ONNX file's sha256.

Scoring is `vectorize` (feature dicts -> float32 matrix in manifest order; categories become
their integer code, unknown categories and missing values NaN, which LightGBM treats as
missing) then `predict` (ONNX Runtime, then the calibration post-step). The training export
calls `write_bundle` and verifies parity through `load_bundle(...).predict(...)`, so the
server and the parity check run the same code. No pickles: JSON and ONNX only.

Calibration (applied to the raw probability `p` of the ONNX graph, `apply_calibration`):

- `isotonic`: `np.interp(p, x, y)` - the step function of sklearn's `IsotonicRegression`
  (`X_thresholds_`, `y_thresholds_`, out_of_bounds="clip"), so it reproduces `predict` exactly.
- `platt`: `1 / (1 + exp(a * f + b))` with `f = p` (`input: probability`, what sklearn's
  `CalibratedClassifierCV(method="sigmoid")` fits on a LightGBM classifier) or `f = logit(p)`
  (`input: logit`). The sign convention is sklearn's: a fitted `a` is usually negative.
- `none`: the raw probability.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, model_validator

from core.settings import format_validation_error

log = logging.getLogger(__name__)

MODEL_FILE = "model.onnx"
MANIFEST_FILE = "manifest.json"
PROFILE_FILE = "reference_profile.json"  # optional; read by core.profile / serving.drift


class BundleError(ValueError):
    """A bundle is missing, malformed or does not match its checksum."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class FeatureSpec(_Strict):
    """One model input column, in order."""

    name: str = Field(min_length=1)
    dtype: Literal["float", "int", "bool", "category"]
    # Training median (None = "missing"): the reference a reason is measured against.
    baseline: float | None = None
    # Share of total gain: the most important features are the explanation candidates.
    importance: float | None = Field(default=None, ge=0)


class IsotonicCalibration(_Strict):
    kind: Literal["isotonic"]
    x: list[float] = Field(min_length=2)
    y: list[float] = Field(min_length=2)

    @model_validator(mode="after")
    def _step_function(self) -> IsotonicCalibration:
        if len(self.x) != len(self.y):
            raise ValueError("x and y must have the same length")
        if any(b < a for a, b in zip(self.x, self.x[1:], strict=False)):
            raise ValueError("x must be non-decreasing")
        if any(b < a for a, b in zip(self.y, self.y[1:], strict=False)):
            raise ValueError("y must be non-decreasing (isotonic)")
        if min(self.y) < 0 or max(self.y) > 1:
            raise ValueError("y must be probabilities in 0..1")
        return self


class PlattCalibration(_Strict):
    kind: Literal["platt"]
    a: float
    b: float
    input: Literal["probability", "logit"]


class NoCalibration(_Strict):
    kind: Literal["none"]


Calibration = Annotated[
    IsotonicCalibration | PlattCalibration | NoCalibration, Field(discriminator="kind")
]


class TrainingWindow(_Strict):
    start: AwareDatetime
    end: AwareDatetime


class Manifest(_Strict):
    """Everything needed to score with `model.onnx`, and to know what it is."""

    schema_version: Literal[1] = 1
    model_name: str = Field(min_length=1)
    model_version: str = Field(min_length=1)  # the registry version; also the folder name
    run_id: str | None  # MLflow run that produced it
    feature_service: str = Field(min_length=1)  # Feast FeatureService = the feature contract
    features: list[FeatureSpec] = Field(min_length=1)
    encodings: dict[str, dict[str, int]]  # category feature -> {category: code}
    calibration: Calibration
    thresholds: dict[str, float]  # policy-relevant cut-offs proposed by training
    metrics: dict[str, float]
    training_window: TrainingWindow
    onnx_input: str = Field(min_length=1)
    onnx_output: str = Field(min_length=1)  # column 1 = raw probability of the positive class
    onnx_sha256: str | None = None  # filled in by write_bundle
    # sha256 of reference_profile.json (core.profile); None: a bundle without a profile
    reference_profile_sha256: str | None = None
    created_at: AwareDatetime

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        names = [f.name for f in self.features]
        if len(set(names)) != len(names):
            raise ValueError("feature names must be unique")
        categorical = {f.name for f in self.features if f.dtype == "category"}
        if set(self.encodings) != categorical:
            raise ValueError(
                "encodings must cover exactly the category features: "
                f"missing {sorted(categorical - set(self.encodings))}, "
                f"extra {sorted(set(self.encodings) - categorical)}"
            )
        return self

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]


# --- pure helpers ------------------------------------------------------------------------


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def apply_calibration(
    calibration: IsotonicCalibration | PlattCalibration | NoCalibration, raw: np.ndarray
) -> np.ndarray:
    """Calibrated probabilities from the graph's raw probabilities (see the module doc)."""
    raw = np.asarray(raw, dtype=np.float64)
    if isinstance(calibration, IsotonicCalibration):
        return np.interp(raw, calibration.x, calibration.y)
    if isinstance(calibration, PlattCalibration):
        f = raw
        if calibration.input == "logit":
            clipped = np.clip(raw, 1e-15, 1 - 1e-15)
            f = np.log(clipped / (1 - clipped))
        return 1.0 / (1.0 + np.exp(calibration.a * f + calibration.b))
    return raw


# --- the loaded bundle -------------------------------------------------------------------


@dataclass(frozen=True)
class _Column:
    name: str
    index: int
    encoding: Mapping[str, int] | None  # None for numeric columns


@dataclass
class Bundle:
    """A loaded, checksum-verified bundle; `predict` is safe to call from many threads."""

    manifest: Manifest
    path: Path | None
    session: Any  # onnxruntime.InferenceSession
    _columns: tuple[_Column, ...] = field(init=False, repr=False)
    _baseline: np.ndarray = field(init=False, repr=False)
    _candidates: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        m = self.manifest
        self._columns = tuple(
            _Column(f.name, i, m.encodings.get(f.name)) for i, f in enumerate(m.features)
        )
        self._baseline = np.array(
            [np.nan if f.baseline is None else f.baseline for f in m.features], dtype=np.float32
        )
        order = sorted(
            range(len(m.features)),
            key=lambda i: (m.features[i].importance is None, -(m.features[i].importance or 0), i),
        )
        self._candidates = np.array(order, dtype=np.int64)

    @property
    def version(self) -> str:
        return self.manifest.model_version

    @property
    def feature_names(self) -> list[str]:
        return self.manifest.feature_names

    def vectorize(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Feature dicts -> float32 matrix in manifest order (missing / unknown -> NaN).

        Raises BundleError naming the feature when a value has the wrong type (a string for
        a numeric feature, a number for a category).
        """
        columns = self._columns
        out = np.empty((len(rows), len(columns)), dtype=np.float32)
        for r, row in enumerate(rows):
            get = row.get
            out[r] = [  # one list per row: numpy fills a row faster than element by element
                math.nan
                if (value := get(col.name)) is None
                else value
                if col.encoding is None and type(value) is float
                else _encode(col, value)
                for col in columns
            ]
        return out

    def vectorize_frame(self, frame: Any) -> np.ndarray:
        """A pandas DataFrame -> float32 matrix (the training parity check's fast path)."""
        import pandas as pd

        out = np.full((len(frame), len(self._columns)), np.nan, dtype=np.float32)
        for col in self._columns:
            if col.name not in frame.columns:
                continue
            series = frame[col.name]
            if col.encoding is not None:
                codes = series.map(col.encoding)
                out[:, col.index] = pd.to_numeric(codes, errors="coerce").to_numpy(np.float32)
            else:
                try:
                    out[:, col.index] = pd.to_numeric(series).to_numpy(np.float32)
                except (ValueError, TypeError) as exc:
                    raise BundleError(f"feature {col.name!r}: not numeric ({exc})") from exc
        return out

    def predict_raw(self, matrix: np.ndarray) -> np.ndarray:
        """The ONNX graph's uncalibrated probability of the positive class."""
        matrix = np.ascontiguousarray(matrix, dtype=np.float32)
        if matrix.ndim != 2 or matrix.shape[1] != len(self._columns):
            raise BundleError(
                f"expected a matrix of {len(self._columns)} columns, got shape {matrix.shape}"
            )
        (probabilities,) = self.session.run(
            [self.manifest.onnx_output], {self.manifest.onnx_input: matrix}
        )
        probabilities = np.asarray(probabilities)
        return probabilities[:, 1] if probabilities.ndim == 2 else probabilities

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        """Calibrated probabilities (float64, one per row)."""
        return apply_calibration(self.manifest.calibration, self.predict_raw(matrix))

    def explain(self, row: np.ndarray, top_k: int, candidates: int) -> list[tuple[str, float]]:
        """Top feature contributions of one row, by occlusion.

        Each of the `candidates` most important features is reset to its training baseline
        (one extra ONNX row each, one call in all); its contribution is how much the score
        drops. Positive = this value pushes the score up. Returns (feature, delta) pairs,
        largest |delta| first, zeros left out.
        """
        if top_k <= 0 or candidates <= 0:
            return []
        idx = self._candidates[:candidates]
        batch = np.repeat(row.reshape(1, -1).astype(np.float32), len(idx) + 1, axis=0)
        batch[np.arange(1, len(idx) + 1), idx] = self._baseline[idx]
        scores = self.predict(batch)
        deltas = scores[0] - scores[1:]
        order = np.argsort(-np.abs(deltas), kind="stable")[:top_k]
        return [
            (self._columns[idx[i]].name, float(deltas[i])) for i in order if abs(deltas[i]) > 1e-9
        ]


def _encode(col: _Column, value: Any) -> float:
    if col.encoding is not None:
        if not isinstance(value, str):
            raise BundleError(f"feature {col.name!r}: expected a category (text), got {value!r}")
        code = col.encoding.get(value)
        return math.nan if code is None else float(code)
    if isinstance(value, str):
        raise BundleError(f"feature {col.name!r}: expected a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise BundleError(f"feature {col.name!r}: expected a number, got {value!r}") from exc


# --- reading and writing -----------------------------------------------------------------


def read_manifest(directory: Path) -> Manifest:
    """The validated manifest of a bundle folder (BundleError naming the file otherwise)."""
    path = Path(directory) / MANIFEST_FILE
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise BundleError(f"{path}: manifest not found") from exc
    except json.JSONDecodeError as exc:
        raise BundleError(f"{path}: not valid JSON: {exc}") from exc
    try:
        return Manifest.model_validate(raw)
    except ValidationError as exc:
        raise BundleError(format_validation_error(exc, str(path))) from exc


def write_bundle(
    directory: Path,
    onnx_bytes: bytes,
    manifest: Manifest,
    *,
    overwrite: bool = False,
    reference_profile: bytes | None = None,
) -> Manifest:
    """Write `model.onnx` + `manifest.json` atomically; returns the manifest with its sha256.

    The folder appears complete or not at all (written beside it, then renamed), so a server
    polling `models/` never sees half a bundle. An existing folder is replaced only with
    `overwrite=True`; the manifest's `onnx_sha256` may be left None (it is computed) but must
    match when given.
    """
    directory = Path(directory)
    digest = sha256_bytes(onnx_bytes)
    if manifest.onnx_sha256 not in (None, digest):
        raise BundleError(
            f"manifest onnx_sha256 {manifest.onnx_sha256} does not match the ONNX bytes ({digest})"
        )
    update: dict[str, Any] = {"onnx_sha256": digest}
    if reference_profile is not None:  # core.profile.PROFILE_FILE, covered by the manifest
        update["reference_profile_sha256"] = sha256_bytes(reference_profile)
    final = manifest.model_copy(update=update)
    if directory.exists() and not overwrite:
        raise BundleError(f"{directory}: bundle already exists (pass overwrite=True to replace)")
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = directory.with_name(f".{directory.name}.tmp-{uuid.uuid4().hex[:8]}")
    staging.mkdir()
    try:
        _write_synced(staging / MODEL_FILE, onnx_bytes)
        if reference_profile is not None:
            _write_synced(staging / PROFILE_FILE, reference_profile)
        _write_synced(staging / MANIFEST_FILE, final.model_dump_json(indent=2).encode())
        if directory.exists():
            retired = directory.with_name(f".{directory.name}.old-{uuid.uuid4().hex[:8]}")
            directory.rename(retired)
            staging.rename(directory)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            staging.rename(directory)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return final


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def load_bundle(directory: Path) -> Bundle:
    """Load and verify a bundle; refuses a checksum mismatch or a graph that does not fit.

    ONNX Runtime runs single-threaded and sequential: under concurrent requests, threads
    inside one prediction only fight each other for the two cores.
    """
    import onnxruntime as ort

    directory = Path(directory)
    manifest = read_manifest(directory)
    model_path = directory / MODEL_FILE
    try:
        onnx_bytes = model_path.read_bytes()
    except FileNotFoundError as exc:
        raise BundleError(f"{model_path}: model file not found") from exc
    if manifest.onnx_sha256 is None:
        raise BundleError(f"{directory / MANIFEST_FILE}: onnx_sha256 is missing")
    digest = sha256_bytes(onnx_bytes)
    if digest != manifest.onnx_sha256:
        raise BundleError(
            f"{model_path}: checksum mismatch (manifest {manifest.onnx_sha256[:12]}..., "
            f"file {digest[:12]}...); refusing to serve a modified model"
        )
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    try:
        session = ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise BundleError(f"{model_path}: ONNX Runtime cannot load it: {exc}") from exc
    inputs = {i.name: i for i in session.get_inputs()}
    outputs = {o.name for o in session.get_outputs()}
    if manifest.onnx_input not in inputs:
        raise BundleError(f"{model_path}: no input {manifest.onnx_input!r} (has {list(inputs)})")
    if manifest.onnx_output not in outputs:
        raise BundleError(f"{model_path}: no output {manifest.onnx_output!r} (has {outputs})")
    width = inputs[manifest.onnx_input].shape[-1]
    if isinstance(width, int) and width != len(manifest.features):
        raise BundleError(
            f"{model_path}: graph takes {width} features, manifest lists {len(manifest.features)}"
        )
    return Bundle(manifest=manifest, path=directory, session=session)


def bundle_dirs(models_dir: Path) -> list[Path]:
    """Bundle folders under `models_dir`, newest first (highest numeric version first)."""
    models_dir = Path(models_dir)
    if not models_dir.is_dir():
        return []
    found = [
        p
        for p in models_dir.iterdir()
        if p.is_dir() and not p.name.startswith(".") and (p / MANIFEST_FILE).exists()
    ]
    return sorted(
        found,
        key=lambda p: (p.name.isdigit(), int(p.name) if p.name.isdigit() else 0, p.stat().st_mtime),
        reverse=True,
    )


def latest_bundle(models_dir: Path) -> Bundle | None:
    """The newest bundle that loads and verifies; broken ones are skipped with a warning."""
    for directory in bundle_dirs(models_dir):
        try:
            return load_bundle(directory)
        except BundleError as exc:
            log.warning("skipping bundle %s: %s", directory, exc)
    return None
