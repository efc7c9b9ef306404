"""`intent bento build`: a Bento that carries the champion, the Feast repo and the configs.

A plain `bentoml build` makes the same Bento (the service declares the champion, see
`serving.bento_model`); this command adds what BentoML has no option for.
`build_bento` is the job (callable from Python); the command only prints its result. The
Bento is built from a clean staging copy of the sources named in `pyproject.toml`'s
`[tool.bentoml.build]` (one list for both ways of building), plus:

- the configs of the current layout, INTENT_CONFIGS overrides included, as package
  defaults (`intent/configs`, as in the wheel; INTENT_CONFIGS still overrides them at run
  time);
- `intent_runtime.json`: where runtime state goes (`<home>/data`: online store, caps,
  decision log), never into the Bento itself.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from core import cli_kit as kit
from core.layout import DEFAULT_RUNTIME_HOME, RUNTIME_FILE, Layout, checkout_root

console = kit.console()
PACKAGED_CONFIGS = "intent/configs"


@dataclass(frozen=True)
class BentoBuild:
    tag: str  # the Bento
    model_tag: str  # the pinned BentoML model
    model_version: str  # the registry version it came from
    path: Path


def bento_settings(pyproject: Path) -> tuple[dict, list[str]]:
    """`[tool.bentoml.build]` and `[project].dependencies` of the project."""
    data = tomllib.loads(pyproject.read_text())
    return dict(data["tool"]["bentoml"]["build"]), list(data["project"]["dependencies"])


def stage_sources(repo: Path, target: Path, include: list[str], exclude: list[str]) -> list[str]:
    """Copy the files `include` names (glob patterns, `**` = any depth) minus `exclude` (a
    folder prefix such as `tests/`, or a glob) from `repo` into `target`."""
    excluded = {p for pattern in exclude if "*" in pattern for p in repo.glob(pattern)}
    prefixes = tuple(p for p in exclude if "*" not in p)
    copied = []
    patterns = [f"{p}/*" if p.endswith("**") else p for p in include]  # `dir/**`: its files
    for path in sorted({p for pattern in patterns for p in repo.glob(pattern)}):
        rel = path.relative_to(repo).as_posix()
        if not path.is_file() or rel.startswith(prefixes):
            continue
        if path in excluded or any(parent in excluded for parent in path.parents):
            continue
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target / rel)
        copied.append(rel)
    return copied


def build_bento(layout: Layout, *, runtime_home: str = DEFAULT_RUNTIME_HOME) -> BentoBuild:
    """Pin the champion and build the Bento; returns its tag."""
    import bentoml

    from serving.bento_model import pin_configured_champion

    repo = checkout_root()
    if repo is None:
        raise kit.fail("intent bento build runs from a source checkout (it packages the sources)")
    settings, dependencies = bento_settings(repo / "pyproject.toml")
    pinned = pin_configured_champion(layout)  # for the labels; the service pins it too
    include = [p for p in settings.get("include", []) if not p.startswith("configs/")]
    exclude = list(settings.get("exclude", []))
    with tempfile.TemporaryDirectory(prefix="intent-bento-") as tmp:
        staging = Path(tmp)
        stage_sources(repo, staging, include, exclude)
        for config_dir in reversed(layout.config_dirs):  # the first folder wins
            shutil.copytree(config_dir, staging / PACKAGED_CONFIGS, dirs_exist_ok=True)
        runtime = {"home": runtime_home}
        (staging / RUNTIME_FILE).write_text(json.dumps(runtime, indent=2) + "\n")
        labels = dict(settings.get("labels", {})) | {
            "champion_version": pinned.version,
            "champion_run": pinned.run_id,
        }
        bento = bentoml.bentos.build(
            service=settings["service"],
            description=settings.get("description"),
            labels=labels,
            include=[*include, f"{PACKAGED_CONFIGS}/**", RUNTIME_FILE],
            exclude=exclude,
            python={"packages": dependencies},
            build_ctx=str(staging),
        )
    return BentoBuild(str(bento.tag), pinned.tag, pinned.version, Path(bento.path))


def build_command(
    runtime_home: Annotated[
        str,
        typer.Option(
            "--runtime-home",
            help="Where the served Bento keeps runtime state (<home>/data); INTENT_HOME or "
            "INTENT_DATA_DIR override it when the Bento runs.",
        ),
    ] = DEFAULT_RUNTIME_HOME,
) -> None:
    """Build a Bento that serves the registry champion (pinned now, not looked up later)."""
    from core.registry import PinError

    with kit.user_errors(PinError), kit.quiet_output():
        built = build_bento(Layout.from_env(), runtime_home=runtime_home)
    console.print(f"bento {built.tag}  (champion v{built.model_version} as {built.model_tag})")
    console.print(f"serve it:        bentoml serve {built.tag}")
    console.print(f"containerize it: bentoml containerize {built.tag}")


def register(app: typer.Typer) -> None:
    """Add `intent bento build` (idempotent)."""
    kit.command(kit.group(app, "bento", "Package the service as a Bento."), "build", build_command)
