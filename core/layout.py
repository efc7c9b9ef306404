"""Where things live on disk: one definition of the project's folders.

In a source checkout (an editable install) everything defaults to the checkout, so every
command works from any folder. An installed wheel has no checkout: data, models and mlruns
then live under `INTENT_HOME` or the working directory, and the default configs come from
the package (`intent/configs`, copied from `configs/` when the wheel is built). Environment
variables move each part; tests point everything at a temporary directory.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

_REPO_ROOT = Path(__file__).resolve().parents[1]  # the checkout, or site-packages


# Written into a Bento by `intent bento build --runtime-home`: where a packaged service keeps
# its runtime state (a plain `bentoml build` uses DEFAULT_RUNTIME_HOME).
RUNTIME_FILE = "intent_runtime.json"
# A Bento's own description, next to its `src/` folder (BentoML's layout, also in images).
BENTO_FILE = "bento.yaml"
# The alias under which a Bento lists the champion it pinned (`serving.bento_model`).
BENTO_CHAMPION_ALIAS = "intent-champion"
# Where a Bento keeps runtime state unless INTENT_HOME / INTENT_DATA_DIR say otherwise
# (`~` is the serving user's home: /home/bentoml in a `bentoml containerize` image).
DEFAULT_RUNTIME_HOME = "~/intent"


@dataclass(frozen=True)
class RuntimeDefaults:
    home: Path  # runtime state goes to <home>/data unless INTENT_HOME / INTENT_DATA_DIR say
    pinned_model: str | None  # a BentoML model tag: serve it instead of asking the registry


def runtime_defaults(src: Path = _REPO_ROOT) -> RuntimeDefaults | None:
    """The runtime defaults of the Bento whose sources are `src`, None outside a Bento.

    The pinned model is the one the Bento lists under BENTO_CHAMPION_ALIAS; the home comes
    from RUNTIME_FILE when `intent bento build` wrote one.
    """
    bento_file = src.parent / BENTO_FILE
    runtime_file = src / RUNTIME_FILE
    if not bento_file.is_file() and not runtime_file.is_file():
        return None
    raw = json.loads(runtime_file.read_text()) if runtime_file.is_file() else {}
    home = raw.get("home", DEFAULT_RUNTIME_HOME)
    pinned = bento_pinned_model(bento_file) if bento_file.is_file() else None
    return RuntimeDefaults(
        home=Path(os.path.expandvars(home)).expanduser(),
        pinned_model=pinned,
    )


def bento_pinned_model(bento_file: Path) -> str | None:
    """The tag a Bento lists under BENTO_CHAMPION_ALIAS (its services' models or its own)."""
    import yaml

    info = yaml.safe_load(bento_file.read_text()) or {}
    listed = [m for s in info.get("services") or [] for m in s.get("models") or []]
    for model in listed + list(info.get("models") or []):
        if model.get("alias") == BENTO_CHAMPION_ALIAS:
            return str(model["tag"])
    return None


def checkout_root() -> Path | None:
    """The source checkout this code runs from, None for an installed wheel."""
    root = _REPO_ROOT
    return root if (root / "pyproject.toml").is_file() and (root / "configs").is_dir() else None


def default_configs(root: Path) -> Path:
    """`<root>/configs` when it exists, else the checkout's, else the packaged defaults."""
    if (root / "configs").is_dir():
        return root / "configs"
    checkout = checkout_root()
    return checkout / "configs" if checkout is not None else packaged_configs()


def packaged_configs(src: Path = _REPO_ROOT) -> Path:
    """The configs shipped with the code: the wheel's `intent/configs`, or a plain
    `bentoml build`'s copy of `configs/` (next to the Bento's sources)."""
    bento_copy = src / "configs"
    if not (src / "intent" / "configs").is_dir() and (src.parent / BENTO_FILE).is_file():
        return bento_copy
    return src / "intent" / "configs"


@dataclass(frozen=True)
class Layout:
    """The folders one run reads and writes.

    `root` holds `configs/`, `models/` and `mlruns/` (committed placeholders); `data` holds
    everything generated at run time and is git-ignored. `config_dirs` are the config
    folders in priority order: each config file comes from the first folder that has it, so
    a folder holding only another `funnel.yaml` (`configs/examples/ecommerce/`) overlays
    the shipped configs without copying them.
    """

    root: Path
    data: Path
    config_dirs: tuple[Path, ...]
    models: Path
    mlruns: Path
    pinned_model: str | None = None  # set inside a Bento: the BentoML model to serve

    @classmethod
    def from_env(cls) -> Layout:
        """The default layout: INTENT_HOME, else a Bento's runtime home, else the checkout,
        else the working directory; INTENT_DATA_DIR / INTENT_MODELS_DIR / INTENT_MLRUNS_DIR
        move parts. INTENT_CONFIGS names override folders searched before the defaults, so
        a folder holding one file overrides that file and keeps the others."""
        packaged = runtime_defaults()
        home = os.environ.get("INTENT_HOME")
        fallback = packaged.home if packaged is not None else checkout_root() or Path.cwd()
        root = Path(home or fallback).resolve()
        layout = cls.under(
            root,
            data=_env_path("INTENT_DATA_DIR"),
            configs=config_search_path(_env_paths("INTENT_CONFIGS"), default_configs(root)),
            models=_env_path("INTENT_MODELS_DIR"),
            mlruns=_env_path("INTENT_MLRUNS_DIR"),
        )
        if packaged is not None and packaged.pinned_model:
            return dataclasses.replace(layout, pinned_model=packaged.pinned_model)
        return layout

    @classmethod
    def under(
        cls,
        root: Path,
        *,
        data: Path | None = None,
        configs: Path | Sequence[Path] | None = None,
        models: Path | None = None,
        mlruns: Path | None = None,
    ) -> Layout:
        """A layout rooted at `root`; tests pass a tmp dir and keep the repo's configs.

        `configs` is one folder or several in priority order (see `config_file`).
        """
        root = Path(root)
        if configs is None:
            config_dirs: tuple[Path, ...] = (root / "configs",)
        elif isinstance(configs, str | os.PathLike):
            config_dirs = (Path(configs),)
        else:
            config_dirs = tuple(Path(c) for c in configs)
        if not config_dirs:
            raise ValueError("configs: at least one config folder")
        return cls(
            root=root,
            data=data or root / "data",
            config_dirs=config_dirs,
            models=models or root / "models",
            mlruns=mlruns or root / "mlruns",
        )

    @property
    def configs(self) -> Path:
        """The first config folder (an INTENT_CONFIGS override, else the defaults)."""
        return self.config_dirs[0]

    def config_file(self, name: str | Path) -> Path:
        """`name` (e.g. `funnel.yaml`, `mappings/segment.yaml`) from the first config folder
        that has it; the first folder's path when none does (so "not found" names it)."""
        for folder in self.config_dirs:
            if (folder / name).is_file():
                return folder / name
        return self.configs / name

    # Generated data, all under `data/`.
    @property
    def raw(self) -> Path:
        """Unvalidated input: simulator output and imported files before `intent validate`."""
        return self.data / "raw"

    @property
    def events(self) -> Path:
        """Validated, deduplicated, sessionized events, parquet partitioned by date."""
        return self.data / "events"

    @property
    def quarantine(self) -> Path:
        """Rows that failed validation, with a reason column."""
        return self.data / "quarantine"

    @property
    def sessions(self) -> Path:
        """Per-session tables of `intent validate` (bot scores)."""
        return self.data / "sessions"

    @property
    def oracle(self) -> Path:
        """The simulator's true abandonment probabilities (evaluation only, never a feature)."""
        return self.data / "oracle"

    @property
    def features(self) -> Path:
        """Offline feature tables and decision points (Feast batch sources)."""
        return self.data / "features"

    @property
    def feast(self) -> Path:
        """Feast registry and the embedded SQLite online store."""
        return self.data / "feast"

    @property
    def serving(self) -> Path:
        """Cap state, live session state and the decision log of the embedded backends."""
        return self.data / "serving"

    @property
    def reports(self) -> Path:
        """Retrain, policy-evaluation and efficacy reports."""
        return self.data / "reports"

    @property
    def retrain(self) -> Path:
        """`intent retrain` builds: one folder per as-of date, with its own Feast registry."""
        return self.data / "retrain"

    @property
    def repo_root(self) -> Path:
        """Where the packages are (the checkout, or site-packages for an installed wheel):
        the Feast repo definitions and the service module are found from here."""
        return _REPO_ROOT

    def ensure(self) -> Layout:
        """Create the generated-data folders; returns self for chaining."""
        for path in (self.data, self.models, self.mlruns):
            path.mkdir(parents=True, exist_ok=True)
        return self


def config_search_path(overrides: Sequence[Path] | None, defaults: Path) -> tuple[Path, ...]:
    """The override folders in order, then the defaults (each folder once)."""
    return tuple(dict.fromkeys([*(overrides or ()), defaults.resolve()]))


def _env_paths(name: str) -> tuple[Path, ...] | None:
    """Several folders separated by `os.pathsep` (`:` on POSIX), in priority order."""
    value = os.environ.get(name)
    paths = tuple(Path(p).resolve() for p in value.split(os.pathsep) if p) if value else ()
    return paths or None


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value).resolve() if value else None
