"""The Bento carries the champion: a BentoML model imported from the MLflow registry.

`pin_champion` (build time) downloads `models:/<name>@<alias>` (the pyfunc that carries the
serving bundle, `training.mlflow_model`) into the BentoML model store as `<name>:<tag>`,
labelled with the registry version, run and checksum. The Bento lists that model, so it
travels with the Bento (and into `bentoml containerize` images); `load_pinned` (run time)
loads the bundle from it with the server's own checksum-verifying loader. Nothing is
downloaded or written when the service starts.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from core.bundle import Bundle, load_bundle, read_manifest
from core.layout import Layout
from core.registry import (
    ModelSourceConfig,
    RegistryUnavailable,
    bundle_in,
    champion_ref,
    materialize,
    tracking_uri,
)


class PinError(RuntimeError):
    """There is no champion to pin, or the pinned model cannot be loaded."""


@dataclass(frozen=True)
class Pinned:
    tag: str  # the BentoML model, e.g. intent-scorer:v3-1a2b3c4d
    version: str  # the registry version
    run_id: str
    onnx_sha256: str


def bento_model_name(registered_model: str) -> str:
    """BentoML tags allow letters, digits, `-`, `_` and `.`; registry names may have more."""
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in registered_model).lower()


def pin_champion(cfg: ModelSourceConfig, layout: Layout) -> Pinned:
    """Import the registry champion into the BentoML model store (idempotent per version)."""
    import bentoml
    from bentoml.exceptions import NotFound

    uri = tracking_uri(cfg, layout)
    try:
        ref = champion_ref(uri, cfg.registered_model, cfg.alias)
    except RegistryUnavailable as exc:
        raise PinError(
            f"cannot read the registry ({exc}); train and promote a model first"
        ) from exc
    if ref is None:
        raise PinError(
            f"no {cfg.registered_model}@{cfg.alias} in the registry at {uri}: run "
            "`intent train --promote` (or `make quickstart`) before building a Bento"
        )
    with tempfile.TemporaryDirectory(prefix="intent-pin-") as tmp:
        folder = materialize(ref, uri, Path(tmp))  # downloads models:/<name>/<V>
        manifest = read_manifest(folder)
        load_bundle(folder)  # verify the checksum before it goes into a Bento
        sha = manifest.onnx_sha256 or ""
        tag = f"{bento_model_name(cfg.registered_model)}:v{ref.version}-{sha[:12]}"
        try:
            bentoml.models.get(tag)
        except NotFound:
            labels = {
                "registered_model": cfg.registered_model,
                "alias": cfg.alias,
                "version": ref.version,
                "run_id": ref.run_id,
            }
            metadata = {"onnx_sha256": sha, "tracking_uri": _safe_uri(uri)}
            with bentoml.models.create(tag, labels=labels, metadata=metadata) as model:
                shutil.copytree(folder, Path(model.path) / "bundle", dirs_exist_ok=True)
    return Pinned(tag=tag, version=ref.version, run_id=ref.run_id, onnx_sha256=sha)


def load_pinned(tag: str) -> Bundle:
    """The bundle inside the BentoML model `tag` (from the Bento's own model store)."""
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        model = bentoml.models.get(tag)
    except NotFound as exc:
        raise PinError(
            f"BentoML model {tag} is not in this Bento's model store; rebuild the Bento with "
            "`intent bento build`"
        ) from exc
    return load_bundle(bundle_in(Path(model.path)))


def _safe_uri(uri: str) -> str:
    """The tracking URI without credentials (it is stored in the model's metadata)."""
    if "@" in uri and "://" in uri:
        scheme, rest = uri.split("://", 1)
        return f"{scheme}://{rest.split('@', 1)[1]}"
    return uri
