"""The Bento carries the champion: a BentoML model imported from the MLflow registry.

`RegistryChampion` is declared on the service (`serving.service.IntentService.champion`), so
any `bentoml build` - plain or through `intent bento build` - resolves it: BentoML asks the
declaration for its model info at build time, and `pin_champion` then downloads
`models:/<name>@<alias>` (the pyfunc that carries the serving bundle,
`training.mlflow_model`) into the BentoML model store as `<name>:<tag>`, labelled with the
registry version, run and checksum. No champion: the build fails saying how to make one.
The Bento lists that model under the alias `BENTO_CHAMPION_ALIAS`, so it travels with the
Bento (and into `bentoml containerize` images); at run time `core.layout` finds the tag in
the Bento's `bento.yaml` and `core.registry.load_pinned` loads the bundle with the server's
own checksum-verifying loader. Nothing is downloaded or written when the service starts.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bentoml

# The base of BentoML's model declarations (`BentoModel`, `HuggingFaceModel`); public
# `bentoml.models.Model` is the stored model, so the SDK's own name is used.
from _bentoml_sdk.models import Model as ModelDeclaration
from bentoml.exceptions import BentoMLException

from core.bundle import load_bundle, read_manifest
from core.layout import BENTO_CHAMPION_ALIAS, Layout, runtime_defaults
from core.registry import (
    ModelSourceConfig,
    PinError,
    RegistryUnavailable,
    champion_ref,
    materialize,
    tracking_uri,
)

__all__ = ["PinError", "Pinned", "RegistryChampion", "pin_champion"]


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
    from bentoml.exceptions import NotFound

    uri = tracking_uri(cfg, layout)
    try:
        ref = champion_ref(uri, cfg.registered_model, cfg.alias)
    except RegistryUnavailable as exc:
        raise PinError(
            f"cannot read the registry ({exc}); train and promote a model first: "
            "`intent train --promote` (or `make quickstart`)"
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


def pin_configured_champion(layout: Layout) -> Pinned:
    """`pin_champion` for the model source of the layout's `serving.yaml`."""
    from core.settings import load_config
    from serving.config import ServingConfig

    return pin_champion(load_config(ServingConfig, layout=layout).model, layout)


class BuildPinError(PinError, BentoMLException):
    """PinError as BentoML's CLI reports it: one red line, no traceback."""


class RegistryChampion(ModelDeclaration[str | None]):
    """The registry champion as a model of the service, resolved when a Bento is built.

    `to_info` (build time) pins the champion and names the pinned BentoML model, aliased
    `BENTO_CHAMPION_ALIAS`; `resolve` (start-up) returns the pinned tag inside a Bento and
    None when serving from the sources, where `core.registry.choose_model` asks the
    registry itself. Constructing it does nothing (the service module imports it).
    """

    def __init__(self) -> None:
        self._pinned: Pinned | None = None

    def pinned(self) -> Pinned:
        if self._pinned is None:
            try:
                self._pinned = pin_configured_champion(Layout.from_env())
            except PinError as exc:
                raise BuildPinError(f"no Bento without the champion: {exc}") from exc
        return self._pinned

    def to_info(self, alias: str | None = None) -> Any:
        from bentoml._internal.bento.bento import BentoModelInfo

        stored = bentoml.models.get(self.pinned().tag)
        return BentoModelInfo.from_bento_model(stored, alias or BENTO_CHAMPION_ALIAS)

    @classmethod
    def from_info(cls, info: Any) -> ModelDeclaration[Any]:
        return bentoml.models.BentoModel(info.tag)  # in a built Bento it is a plain model

    def to_create_schema(self) -> Any:
        return bentoml.models.BentoModel(self.pinned().tag).to_create_schema()

    def resolve(self, base_path: Any = None) -> str | None:
        runtime = runtime_defaults()
        return runtime.pinned_model if runtime is not None else None

    def __str__(self) -> str:
        return f"registry champion ({BENTO_CHAMPION_ALIAS})"


def _safe_uri(uri: str) -> str:
    """The tracking URI without credentials (it is stored in the model's metadata)."""
    if "@" in uri and "://" in uri:
        scheme, rest = uri.split("://", 1)
        return f"{scheme}://{rest.split('@', 1)[1]}"
    return uri
