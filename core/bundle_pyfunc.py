"""The served computation as an MLflow pyfunc: the registered model *is* the served model.

`BundlePyfunc` loads the bundle folder it carries as the MLflow artifact `bundle`
(`model.onnx` + `manifest.json`, checksum verified by `core.bundle.load_bundle`) and
scores through the server's own path: feature dicts -> `Bundle.vectorize` -> ONNX Runtime
-> calibration. So `mlflow.pyfunc.load_model("models:/intent-scorer@champion").predict(x)`
and `POST /score` give the same score, and there is one artefact to audit.

Input: a DataFrame (or a list of dicts) of the manifest's features with raw values:
numbers, and text for the categorical ones (missing or unknown -> LightGBM's "missing").
Output: the calibrated probability of abandoning the step, one float per row.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np

from core.bundle import Bundle, load_bundle

BUNDLE_ARTIFACT = "bundle"  # the key (and folder name) of the bundle inside the MLflow model


def feature_rows(model_input: Any) -> list[dict[str, Any]]:
    """Rows as the server sees them: dicts with None for missing values (NaN, NA)."""
    if isinstance(model_input, Mapping):
        return [_clean(dict(model_input))]
    if isinstance(model_input, Sequence) and not isinstance(model_input, str | bytes):
        return [_clean(dict(row)) for row in model_input]
    to_dict = getattr(model_input, "to_dict", None)
    if to_dict is None:
        raise TypeError(
            f"expected a DataFrame, a dict or a list of dicts of features, got "
            f"{type(model_input).__name__}"
        )
    return [_clean(row) for row in to_dict(orient="records")]


def score(bundle: Bundle, model_input: Any) -> np.ndarray:
    """Calibrated scores of `model_input` through the bundle's serving path."""
    rows = feature_rows(model_input)
    if not rows:
        return np.empty(0, dtype=np.float64)
    return bundle.predict(bundle.vectorize(rows))


def _clean(row: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in row.items():
        if value is None or (isinstance(value, float) and math.isnan(value)):
            out[key] = None
        elif isinstance(value, np.generic):
            out[key] = value.item()  # numpy scalars -> the Python types the server receives
        elif type(value).__name__ == "NAType":
            out[key] = None
        else:
            out[key] = value
    return out


class BundlePyfunc(mlflow.pyfunc.PythonModel):
    """pyfunc flavour over a serving bundle (JSON + ONNX, no pickled estimator)."""

    def __init__(self) -> None:
        self.bundle: Bundle | None = None

    def load_context(self, context):
        self.bundle = load_bundle(Path(context.artifacts[BUNDLE_ARTIFACT]))

    # No type hints on predict: MLflow would derive (and enforce) a schema from them; the
    # signature logged with the model is the contract.
    def predict(self, context, model_input, params=None):
        if self.bundle is None:
            raise RuntimeError("BundlePyfunc.predict before load_context: load it through MLflow")
        return score(self.bundle, model_input)
