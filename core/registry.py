"""Which model to serve: the registry champion, else the newest local bundle, else rules only.

The champion contract (the training export follows it, `training.mlflow_model`):

- The registered model (`intent-scorer`) has a version `V` carrying the alias (`champion`).
- The version *is* the served model: an MLflow pyfunc (`core.bundle_pyfunc`) whose
  artifact `bundle/` holds `model.onnx` + `manifest.json`, the manifest saying
  `model_version == "V"` and `run_id == <the version's run>`.
- The server serves `models/V/`. When the folder is absent (a fresh replica, another
  machine, a Bento build) it downloads `models:/<name>/V` and copies the bundle found in it
  into `models/V/` first; a folder whose manifest names another run is refused.

MLflow is imported only when the registry is worth asking (a local sqlite store that does
not exist yet is "unreachable" without the multi-second import). On a local sqlite store the
alias is read with one SQL query over MLflow's registry tables (`sqlite_champion`): the
MLflow client costs about a second of CPU per worker start (import, SQLAlchemy store, schema
check) for a two-row lookup. Any other store, or a file whose tables do not look like
MLflow's, goes through the client.
"""

from __future__ import annotations

import logging
import shutil
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field

from core.bundle import (
    MANIFEST_FILE,
    Bundle,
    BundleError,
    latest_bundle,
    load_bundle,
    read_manifest,
)
from core.layout import Layout
from core.settings import StrictModel

log = logging.getLogger(__name__)

ModelSource = Literal["registry", "bundle", "rules"]


class RegistryUnavailable(RuntimeError):
    """The tracking server / store cannot be reached or read."""


class PinError(RuntimeError):
    """There is no champion to pin in a Bento, or the pinned model cannot be loaded."""


@dataclass(frozen=True)
class ChampionRef:
    version: str
    run_id: str
    model_name: str

    @property
    def model_uri(self) -> str:
        return f"models:/{self.model_name}/{self.version}"


@dataclass(frozen=True)
class ModelChoice:
    """The model to serve and where it came from; `detail` says why when degraded."""

    bundle: Bundle | None
    source: ModelSource
    detail: str

    @property
    def version(self) -> str | None:
        return self.bundle.version if self.bundle is not None else None


def tracking_uri(cfg: ModelSourceConfig, layout: Layout) -> str:
    """The configured tracking URI, or the layout's sqlite store."""
    return cfg.tracking_uri or f"sqlite:///{layout.mlruns / 'mlflow.db'}"


def _sqlite_path(uri: str) -> Path | None:
    prefix = "sqlite:///"
    return Path(uri[len(prefix) :]) if uri.startswith(prefix) else None


def champion_ref(uri: str, model_name: str, alias: str) -> ChampionRef | None:
    """The version behind `models:/<model_name>@<alias>`, None when there is none.

    Raises RegistryUnavailable when the store cannot be read at all.
    """
    db = _sqlite_path(uri)
    if db is not None and not db.exists():
        raise RegistryUnavailable(f"no tracking store at {db}")
    if db is not None:
        found = sqlite_champion(db, model_name, alias)
        if found is not _NOT_READ:
            return found  # type: ignore[return-value]
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        version = client.get_model_version_by_alias(model_name, alias)
    except MlflowException as exc:
        code = getattr(exc, "error_code", "")
        if code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise RegistryUnavailable(f"{uri}: {exc}") from exc
    except Exception as exc:  # connection errors surface as many types
        raise RegistryUnavailable(f"{uri}: {exc}") from exc
    if not version.run_id:
        raise RegistryUnavailable(f"{model_name} v{version.version} has no run id")
    return ChampionRef(version=str(version.version), run_id=version.run_id, model_name=model_name)


_NOT_READ = object()  # sqlite_champion could not answer: ask the MLflow client

# MLflow's registry tables (mlflow/store/model_registry/dbmodels); `workspace` since 3.x.
_ALIAS_SQL = """
SELECT a.version, v.run_id FROM registered_model_aliases a
JOIN model_versions v ON v.name = a.name AND v.version = a.version{same_ws}
WHERE a.name = ? AND a.alias = ?{default_ws}
"""


def sqlite_champion(db: Path, model_name: str, alias: str, timeout_s: float = 5.0) -> object:
    """The alias's version read straight from MLflow's sqlite store (read-only), None when the
    alias is not set, `_NOT_READ` when the tables are not what MLflow writes (the caller
    then asks the client, which explains schema problems better)."""
    try:
        conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=timeout_s)
    except sqlite3.Error:
        return _NOT_READ
    try:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(registered_model_aliases)")}
        if not {"alias", "version", "name"} <= columns:
            return _NOT_READ
        ws = "workspace" in columns
        sql = _ALIAS_SQL.format(
            same_ws=" AND v.workspace = a.workspace" if ws else "",
            default_ws=" AND a.workspace = 'default'" if ws else "",
        )
        row = conn.execute(sql, (model_name, alias)).fetchone()
    except sqlite3.Error:
        return _NOT_READ
    finally:
        conn.close()
    if row is None:
        return None
    version, run_id = row
    if not run_id:
        raise RegistryUnavailable(f"{model_name} v{version} has no run id")
    return ChampionRef(version=str(version), run_id=str(run_id), model_name=model_name)


def materialize(ref: ChampionRef, uri: str, models_dir: Path) -> Path:
    """`models/<V>/` for the champion, downloaded from the registered version if absent."""
    target = Path(models_dir) / ref.version
    if target.exists():
        manifest = read_manifest(target)
        if manifest.run_id != ref.run_id:
            raise BundleError(
                f"{target}: manifest run {manifest.run_id} is not the champion's run {ref.run_id}"
            )
        return target
    import mlflow
    from mlflow import MlflowClient

    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{ref.version}.dl-") as tmp:
        try:
            client = MlflowClient(tracking_uri=uri, registry_uri=uri)
            where = client.get_model_version_download_uri(ref.model_name, ref.version)
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=where, dst_path=tmp, tracking_uri=uri
            )
        except Exception as exc:
            raise RegistryUnavailable(f"cannot download {ref.model_uri}: {exc}") from exc
        found = bundle_in(Path(local))
        manifest = read_manifest(found)
        if manifest.model_version != ref.version or manifest.run_id != ref.run_id:
            raise BundleError(
                f"{ref.model_uri} bundle says version {manifest.model_version} / run "
                f"{manifest.run_id}, expected {ref.version} / {ref.run_id}"
            )
        if not target.exists():
            shutil.move(found, target)
    return target


def bundle_in(model_dir: Path) -> Path:
    """The bundle folder inside a downloaded registered model (the pyfunc's `bundle`
    artifact, or the model folder itself for a plain bundle)."""
    manifests = sorted(Path(model_dir).rglob(MANIFEST_FILE), key=lambda p: len(p.parts))
    if not manifests:
        raise BundleError(
            f"{model_dir}: no {MANIFEST_FILE} in the registered model; register it with "
            "`intent train` (training.mlflow_model)"
        )
    return manifests[0].parent


def load_champion(ref: ChampionRef, uri: str, models_dir: Path) -> Bundle:
    bundle = load_bundle(materialize(ref, uri, models_dir))
    if bundle.version != ref.version:
        raise BundleError(f"models/{ref.version}: manifest says version {bundle.version}")
    return bundle


def choose_model(cfg: ModelSourceConfig, layout: Layout) -> ModelChoice:
    """Start-up choice: champion -> newest valid bundle -> rules only, with the reason.

    Inside a Bento the champion was pinned at build time (`layout.pinned_model`, a BentoML
    model imported from the registry): that is served, and the registry is not asked.
    """
    if layout.pinned_model:
        bundle = load_pinned(layout.pinned_model)
        detail = f"{cfg.registered_model}@{cfg.alias}, pinned in the Bento as {layout.pinned_model}"
        return ModelChoice(bundle, "registry", detail)
    uri = tracking_uri(cfg, layout)
    try:
        ref = champion_ref(uri, cfg.registered_model, cfg.alias)
        if ref is not None:
            bundle = load_champion(ref, uri, layout.models)
            return ModelChoice(bundle, "registry", f"{cfg.registered_model}@{cfg.alias}")
        why = f"no {cfg.registered_model}@{cfg.alias} in the registry"
    except (RegistryUnavailable, BundleError) as exc:
        why = f"registry: {exc}"
    log.warning("champion unavailable (%s); trying the newest bundle in %s", why, layout.models)
    bundle = latest_bundle(layout.models)
    if bundle is not None:
        return ModelChoice(bundle, "bundle", why)
    return ModelChoice(None, "rules", f"{why}; no valid bundle in {layout.models}")


def load_pinned(tag: str) -> Bundle:
    """The bundle inside the BentoML model `tag` (from the Bento's own model store)."""
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        model = bentoml.models.get(tag)
    except NotFound as exc:
        raise PinError(
            f"BentoML model {tag} is not in this Bento's model store; rebuild the Bento with "
            "`bentoml build` (or `intent bento build`) where the registry has a champion"
        ) from exc
    return load_bundle(bundle_in(Path(model.path)))


class ModelSourceConfig(StrictModel):
    """Where the model comes from: registry alias, else the newest bundle, else rules only."""

    registered_model: str = Field(min_length=1)
    alias: str = Field(min_length=1)
    tracking_uri: str | None  # None: sqlite:///<mlruns>/mlflow.db of the layout
    reload_interval_s: float = Field(ge=0)  # 0: only POST /reload swaps models
