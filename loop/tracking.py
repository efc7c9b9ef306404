"""MLflow runs of the loop: the numbers of an evaluation or an efficacy report, and their files.

The store is the server's (`core.registry.tracking_uri`: `configs/serving.yaml`
model.tracking_uri, else `sqlite:///<mlruns>/mlflow.db`), the one `intent train` logs to;
experiments keep their artifacts under `<mlruns>/artifacts` like training's. A client is
used throughout (no process-wide fluent state), so commands and tests can point anywhere.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

from core.layout import Layout
from core.registry import ModelSourceConfig, tracking_uri

ARTIFACTS_DIR = "artifacts"
KIND_TAG = "intent.kind"  # evaluate-policy | report
_BATCH = 900  # MLflow accepts at most 1000 metrics per log_batch
_NAME = re.compile(r"[^A-Za-z0-9_\-. :/]")


def metric_name(key: str) -> str:
    """`key` with the characters MLflow refuses in names replaced by `_`."""
    return _NAME.sub("_", key)


def log_run(
    layout: Layout,
    model_source: ModelSourceConfig,
    experiment: str,
    *,
    run_name: str,
    kind: str,
    params: Mapping[str, object],
    metrics: Iterable[tuple[str, float, int]],
    artifacts: Iterable[Path],
    tags: Mapping[str, str] | None = None,
) -> str:
    """One finished run: params, metrics `(key, value, step)` (NaN skipped: MLflow would
    store it, but plots and comparisons treat it as a number), files. Returns the run id."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    uri = tracking_uri(model_source, layout)
    layout.mlruns.mkdir(parents=True, exist_ok=True)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    found = client.get_experiment_by_name(experiment)
    if found is not None:
        experiment_id = found.experiment_id
    else:
        location = str((layout.mlruns / ARTIFACTS_DIR).resolve())
        experiment_id = client.create_experiment(experiment, artifact_location=location)
    run = client.create_run(experiment_id, run_name=run_name, tags={KIND_TAG: kind, **(tags or {})})
    run_id = run.info.run_id
    try:
        now = int(time.time() * 1000)
        batch = [
            Metric(metric_name(key), float(value), now, step)
            for key, value, step in metrics
            if value is not None and math.isfinite(value)
        ]
        for i in range(0, len(batch), _BATCH):
            client.log_batch(run_id, metrics=batch[i : i + _BATCH])
        plist = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(plist), 90):
            client.log_batch(run_id, params=plist[i : i + 90])
        for path in artifacts:
            client.log_artifact(run_id, str(path))
    except BaseException:
        client.set_terminated(run_id, status="FAILED")
        raise
    client.set_terminated(run_id)
    return run_id


def serving_model_source(layout: Layout) -> ModelSourceConfig:
    """The registry the server reads (serving.yaml's `model`): offline runs are logged next to
    the models they judge."""
    from core.settings import load_config
    from serving.config import ServingConfig

    return load_config(ServingConfig, layout=layout).model
