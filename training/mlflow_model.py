"""Register the served model: an MLflow pyfunc carrying the verified serving bundle.

The registered version holds the same `model.onnx` + `manifest.json` the server loads, as
the artifact `bundle` of a models-from-code pyfunc (`core/pyfunc_entry.py`). Its
manifest must name the registry version, which exists only once registered, so the logged
model is created first (PENDING), registered with `mlflow.register_model`, then filled with
the bundle written for that version and marked READY. `publish` writes the bundle;
a failure deletes the version and marks the logged model FAILED, so the registry only
holds complete versions.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from core.bundle_pyfunc import BUNDLE_ARTIFACT

if TYPE_CHECKING:
    from mlflow import MlflowClient

MODEL_ARTIFACT = "model"  # the logged model's name (the UI's "Logged models" tab)
ENTRY_MODULE = "core.pyfunc_entry"


@dataclass(frozen=True)
class Registered:
    version: str
    model_id: str
    model_uri: str  # models:/<model_id>


def pip_requirements() -> list[str]:
    """What the pyfunc needs besides this project (pinned to the training environment)."""
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in ("mlflow", "onnxruntime", "numpy", "pandas")] + [
        f"pydantic=={version('pydantic')}"
    ]


def register_served_model(
    client: MlflowClient,
    model_name: str,
    *,
    run_id: str,
    example: pd.DataFrame,
    publish: Callable[[str], Path],
    tags: Mapping[str, str],
    description: str,
) -> Registered:
    """Register a new version whose artifact is the bundle `publish(version)` writes.

    `example` is a few rows of raw features (the signature and input example); `publish`
    gets the registry version and returns the finished bundle folder.
    """
    import mlflow
    from mlflow.entities import LoggedModelStatus
    from mlflow.models import infer_signature

    _ensure_registered_model(client, model_name, description)
    logged = mlflow.initialize_logged_model(name=MODEL_ARTIFACT, source_run_id=run_id)
    uri = f"models:/{logged.model_id}"
    with contextlib.redirect_stderr(io.StringIO()):  # register_model prints to stderr
        created = mlflow.register_model(uri, model_name, tags=dict(tags))
    version = str(created.version)
    try:
        bundle_dir = publish(version)
        from core.bundle import load_bundle
        from core.bundle_pyfunc import score

        signature = infer_signature(example, score(load_bundle(bundle_dir), example))
        with tempfile.TemporaryDirectory(prefix="intent-pyfunc-") as tmp:
            local = Path(tmp) / MODEL_ARTIFACT
            mlflow.pyfunc.save_model(
                local,
                python_model=_entry_file(),
                artifacts={BUNDLE_ARTIFACT: str(bundle_dir)},
                signature=signature,
                input_example=example,
                pip_requirements=pip_requirements(),
            )
            client.log_model_artifacts(logged.model_id, str(local))
        mlflow.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
    except BaseException:
        client.delete_model_version(model_name, version)
        mlflow.finalize_logged_model(logged.model_id, LoggedModelStatus.FAILED)
        raise
    return Registered(version=version, model_id=logged.model_id, model_uri=uri)


def _ensure_registered_model(client: MlflowClient, name: str, description: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name, description=description)
    except MlflowException as exc:
        if exc.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
            raise


def _entry_file() -> str:
    """The entry file's path, found without importing it (importing it sets the model)."""
    from importlib.util import find_spec

    spec = find_spec(ENTRY_MODULE)
    if spec is None or spec.origin is None:
        raise RuntimeError(f"{ENTRY_MODULE} is not importable: reinstall the project")
    return spec.origin
