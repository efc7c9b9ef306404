"""The contextual bandit's shared contracts: `configs/bandit.yaml`, the decision context, the
learned-policy artefact.

`context_features` is the one definition of a decision's context: the engine calls it on the
live decision and `training.policy` on the logged row, so learning and serving agree. The
artefact (`intent policy learn`: a Vowpal Wabbit CB-ADF model with a manifest and checksum under
`models/policy/`) is written by training and loaded by serving through `LearnedPolicy`.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from core.settings import ConfigFile, StrictModel
from core.vocabulary import ActionType, MomentType

NONE = ActionType.NONE.value
POLICY_DIR = "policy"  # under layout.models
MODEL_FILE = "policy.vw"
MANIFEST_FILE = "manifest.json"


# --- configs/bandit.yaml -------------------------------------------------------------------


class Exploration(StrictModel):
    epsilon: float = Field(ge=0, le=1)
    salt: str = Field(min_length=1)


class LearnedSetting(StrictModel):
    enabled: bool
    artefact: str = Field(min_length=1)
    keep_escalation: bool
    may_add_triggers: bool  # false: where the table shows nothing, neither does the policy


class RewardConfig(StrictModel):
    trigger_cost: float = Field(ge=0, le=1)
    # step: the decision's step completed within the label horizon; goal: the user reached
    # the funnel's goal (the whole onboarding) within the data
    outcome: Literal["step", "goal"]


class ContextConfig(StrictModel):
    signals: list[str]
    returning_signal: str = Field(min_length=1)


class VwConfig(StrictModel):
    args: str = Field(min_length=1)
    passes: int = Field(ge=1)
    seed: int = Field(ge=0)

    @field_validator("args")
    @classmethod
    def _cb_adf(cls, args: str) -> str:
        if "--cb_adf" not in args.split():
            raise ValueError("vw.args must contain --cb_adf (the learner scores each action)")
        for banned in ("-i", "-f", "--initial_regressor", "--final_regressor", "-d", "--data"):
            if banned in args.split():
                raise ValueError(f"vw.args must not set {banned}: files are managed by the job")
        return args


class OpeConfig(StrictModel):
    confidence: float = Field(gt=0, lt=1)
    bootstrap_resamples: int = Field(ge=50)
    bootstrap_seed: int = Field(ge=0)
    max_weight: float = Field(gt=1)
    mlflow_experiment: str = Field(min_length=1)


class TuneConfig(StrictModel):
    thresholds: list[float] = Field(min_length=1)
    max_trigger_ratio: float = Field(gt=0)
    min_decisions: int = Field(ge=1)

    @field_validator("thresholds")
    @classmethod
    def _inside_the_bands(cls, thresholds: list[float]) -> list[float]:
        bad = [t for t in thresholds if not 0 < t < 1]
        if bad:
            raise ValueError(f"thresholds must lie in (0, 1): {bad}")
        return sorted(set(thresholds))


class BanditConfig(ConfigFile):
    """Exploration, the learned policy, reward, context, VW and OPE (see bandit.yaml)."""

    file_name = "bandit.yaml"

    actions: dict[MomentType, list[ActionType]]
    exploration: Exploration
    learned: LearnedSetting
    reward: RewardConfig
    context: ContextConfig
    vw: VwConfig
    ope: OpeConfig
    tune: TuneConfig

    @field_validator("actions")
    @classmethod
    def _every_moment(
        cls, actions: dict[MomentType, list[ActionType]]
    ) -> dict[MomentType, list[ActionType]]:
        missing = [m.value for m in MomentType if m not in actions]
        if missing:
            raise ValueError(f"actions: no eligible actions for moments {missing}")
        for moment, listed in actions.items():
            if len(set(listed)) != len(listed):
                raise ValueError(f"actions.{moment.value}: listed twice")
        return actions

    def eligible(self, moment: MomentType | None, chosen: str) -> tuple[str, ...]:
        """`none`, the moment's actions, then `chosen` if it is not among them."""
        if moment is None:
            return (NONE,) if chosen == NONE else (NONE, chosen)
        found = [NONE, *(a.value for a in self.actions[moment] if a != ActionType.NONE)]
        if chosen not in found:
            found.append(chosen)
        return tuple(found)


# --- context ---------------------------------------------------------------------------------


def _token(value: Any) -> str:
    text = "na" if value is None else str(value)
    return "".join(c if c.isalnum() or c in "_-." else "_" for c in text) or "na"


def _number(value: Any) -> float | None:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


@dataclass(frozen=True, slots=True)
class Context:
    """A decision's context: categorical tokens and log1p-scaled numbers."""

    categorical: tuple[tuple[str, str], ...]
    numeric: tuple[tuple[str, float], ...]

    def shared_line(self) -> str:
        cats = " ".join(f"{k}={v}" for k, v in self.categorical)
        nums = " ".join(f"{k}:{v:.6g}" for k, v in self.numeric)
        return f"shared |s {cats} |n {nums}".rstrip()

    def as_dict(self) -> dict[str, Any]:
        return dict(self.categorical) | dict(self.numeric)


def context_features(
    *,
    moment: str | None,
    step: str,
    band: str,
    score: float,
    device: str | None,
    channel: str | None,
    signals: Mapping[str, Any],
    cfg: ContextConfig,
) -> Context:
    """The context the bandit learns and decides on (same function offline and online)."""
    returning = (_number(signals.get(cfg.returning_signal)) or 0.0) > 0
    cats = (
        ("moment", _token(moment)),
        ("step", _token(step)),
        ("band", _token(band)),
        ("device", _token(device)),
        ("channel", _token(channel)),
        ("returning", "1" if returning else "0"),
        ("moment_step", f"{_token(moment)}.{_token(step)}"),
    )
    nums = []
    for name in cfg.signals:
        raw = score if name == "score" else signals.get(name)
        x = _number(raw)
        if x is not None:
            nums.append((_token(name), math.copysign(math.log1p(abs(x)), x)))
    return Context(cats, tuple(nums))


def vw_example(
    ctx: Context, actions: Sequence[str], label: tuple[int, float, float] | None = None
) -> list[str]:
    """Multi-line CB-ADF example; `label` = (index of the logged action, cost, propensity)."""
    lines = [ctx.shared_line()]
    for i, action in enumerate(actions):
        tag = ""
        if label is not None and i == label[0]:
            tag = f"0:{label[1]:.6g}:{label[2]:.6g}"
        lines.append(f"{tag} |a act={_token(action)}" if tag else f"|a act={_token(action)}")
    return lines


# --- the learned policy artefact -------------------------------------------------------------


class PolicyArtefactError(RuntimeError):
    """The learned policy cannot be loaded (missing, unreadable, checksum mismatch)."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def policy_dirs(models_dir: Path) -> list[Path]:
    """Learned-policy folders under `models_dir/policy`, newest (by name) first."""
    root = Path(models_dir) / POLICY_DIR
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and (p / MANIFEST_FILE).exists()]
    return sorted(found, key=lambda p: p.name, reverse=True)


def resolve_artefact(models_dir: Path, name: str) -> Path:
    """The folder `name` (or the newest for `latest`), or a PolicyArtefactError saying how
    to get one."""
    if name == "latest":
        dirs = policy_dirs(models_dir)
        if not dirs:
            raise PolicyArtefactError(
                f"no learned policy under {Path(models_dir) / POLICY_DIR}: run `intent policy "
                "learn`, or set learned.enabled: false in configs/bandit.yaml"
            )
        return dirs[0]
    path = Path(models_dir) / POLICY_DIR / name
    if not (path / MANIFEST_FILE).exists():
        raise PolicyArtefactError(
            f"no learned policy at {path}: check learned.artefact in configs/bandit.yaml"
        )
    return path


class LearnedPolicy:
    """A loaded VW CB-ADF model: predicted cost per eligible action; lowest cost wins."""

    def __init__(self, path: Path) -> None:
        import vowpalwabbit

        path = Path(path)
        try:
            self.manifest: dict[str, Any] = json.loads((path / MANIFEST_FILE).read_text())
        except (OSError, ValueError) as exc:
            raise PolicyArtefactError(f"unreadable policy manifest in {path}: {exc}") from exc
        model = path / MODEL_FILE
        if not model.exists():
            raise PolicyArtefactError(f"{model} is missing: re-run `intent policy learn`")
        found = sha256_file(model)
        if found != self.manifest.get("sha256"):
            raise PolicyArtefactError(
                f"{model} does not match its manifest checksum (file {found[:12]}, manifest "
                f"{str(self.manifest.get('sha256'))[:12]}): the file changed after training; "
                "re-run `intent policy learn`"
            )
        self.path = path
        self.version = str(self.manifest.get("version", path.name))
        self._vw = vowpalwabbit.Workspace(f"--quiet -i {model}")
        self._lock = threading.Lock()  # a VW workspace is not thread-safe

    def costs(self, ctx: Context, actions: Sequence[str]) -> list[float]:
        """Predicted cost (negative reward) of each action, in order."""
        with self._lock:
            return [float(c) for c in self._vw.predict(vw_example(ctx, actions))]

    def best(self, ctx: Context, actions: Sequence[str]) -> str:
        costs = self.costs(ctx, actions)
        return actions[min(range(len(actions)), key=costs.__getitem__)]

    def close(self) -> None:
        with self._lock:
            self._vw.finish()
