"""MLflow tracking and registry: where the store is, and the few registry moves we make.

The store is `sqlite:///<mlruns>/mlflow.db` with artifacts under `<mlruns>/artifacts` by
default (the same URI `core.registry.tracking_uri` derives), or PostgreSQL by config.
Models move through aliases only (`champion`, `challenger`), never stages. Versions are
created by `mlflow.register_model` (`training.mlflow_model`).

MLflow's fluent API (`mlflow.start_run`, `mlflow.lightgbm.log_model`) reads a process-wide
tracking URI; `session()` sets it for one block and puts the previous one back, so tests
and commands can point at different stores in one process.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

from core.layout import Layout
from training.config import TrackingBackend, TrackingConfig

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run
    from mlflow.entities.model_registry import ModelVersion

ARTIFACTS_DIR = "artifacts"
DB_FILE = "mlflow.db"
# Tags every run of ours carries (search filters use them).
KIND_TAG = "intent.kind"  # train | promote
AS_OF_TAG = "intent.as_of"  # retrain runs: the as-of date
VERSION_TAG = "intent.model_version"  # train runs: the registered version
BEHAVIOUR_TAG = "intent.behaviour"  # train runs: "passed" or "failed: <checks>"
_PROGRESS_BAR = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"


class TrackingError(RuntimeError):
    """The tracking store or registry cannot do what was asked."""


def tracking_uri(layout: Layout, cfg: TrackingConfig) -> str:
    if cfg.backend is TrackingBackend.POSTGRES:
        return cfg.postgres_url
    return f"sqlite:///{layout.mlruns / DB_FILE}"


def artifact_location(layout: Layout) -> str:
    return str((layout.mlruns / ARTIFACTS_DIR).resolve())


@contextlib.contextmanager
def session(uri: str) -> Iterator[MlflowClient]:
    """Point MLflow's fluent API and a client at `uri` for one block."""
    import mlflow
    from mlflow import MlflowClient

    previous_tracking = mlflow.get_tracking_uri()
    previous_registry = mlflow.get_registry_uri()
    previous_bar = os.environ.get(_PROGRESS_BAR)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    os.environ[_PROGRESS_BAR] = "false"  # our commands draw their own progress
    try:
        yield MlflowClient(tracking_uri=uri, registry_uri=uri)
    finally:
        mlflow.set_tracking_uri(previous_tracking)
        mlflow.set_registry_uri(previous_registry)
        if previous_bar is None:
            os.environ.pop(_PROGRESS_BAR, None)
        else:
            os.environ[_PROGRESS_BAR] = previous_bar


def experiment_id(client: MlflowClient, name: str, layout: Layout) -> str:
    """The experiment's id, creating it with its artifacts under `<mlruns>/artifacts`."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    layout.mlruns.mkdir(parents=True, exist_ok=True)
    return client.create_experiment(name, artifact_location=artifact_location(layout))


def version_by_alias(client: MlflowClient, model: str, alias: str) -> ModelVersion | None:
    """The version an alias points at, None when the model or the alias does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(model, alias)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def model_version(client: MlflowClient, model: str, version: str) -> ModelVersion:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version(model, version)
    except MlflowException as exc:
        raise TrackingError(f"{model} has no version {version}") from exc


def aliases(client: MlflowClient, model: str) -> dict[str, str]:
    """alias -> version of a registered model ({} when it is not registered yet)."""
    from mlflow.exceptions import MlflowException

    try:
        registered = client.get_registered_model(model)
    except MlflowException:
        return {}
    return {alias: str(version) for alias, version in registered.aliases.items()}


def find_runs(
    client: MlflowClient, experiment: str, tags: dict[str, str], *, finished: bool = True
) -> list[Run]:
    """Runs of the experiment carrying every tag, newest first."""
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return []
    clauses = [f"tags.`{k}` = '{v}'" for k, v in tags.items()]
    if finished:
        clauses.append("attributes.status = 'FINISHED'")
    return client.search_runs(
        [found.experiment_id],
        filter_string=" and ".join(clauses),
        order_by=["attributes.start_time DESC"],
    )
