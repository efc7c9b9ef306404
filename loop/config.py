"""Config model of the closed loop (`configs/loop.yaml`)."""

from __future__ import annotations

from datetime import date
from enum import StrEnum

from pydantic import Field, field_validator, model_validator

from core.settings import ConfigFile, StrictModel
from serving.config import ColdStart


class PolicyKind(StrEnum):
    """What decides in a simulated run."""

    NONE = "none"  # features.simulator.hook.NoTriggers
    RULES = "rules"  # the engine without a model: the rules path
    MODEL = "model"  # the engine with the champion bundle


class PolicySpec(StrictModel):
    """One policy of the comparison. `caps` is required for the engine kinds (rules, model);
    `cold_start` (kind model only) replaces serving.yaml's `features.cold_start` for a what-if,
    absent = as served. `min_step_dropoff` (kind rules only) fires the rules only at steps whose
    drop-off in the champion's training window exceeds it (loop.gating)."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    kind: PolicyKind
    caps: bool | None = None
    cold_start: ColdStart | None = None
    min_step_dropoff: float | None = Field(default=None, ge=0, lt=1)
    # serving.bandit (configs/bandit.yaml) for this run: an exploration epsilon, and/or the
    # learned policy (the newest artefact under models/policy/)
    explore: float | None = Field(default=None, ge=0, le=1)
    learned: bool = False
    # a policy overlay (`intent policy tune --out`), relative to policy.yaml, whose cohorts the
    # run applies on top of policy.yaml: the tuned-threshold policy
    overlay: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _meaningful(self) -> PolicySpec:
        if self.kind == PolicyKind.NONE and (self.explore is not None or self.learned):
            raise ValueError(f"{self.name}: explore / learned need an engine kind (rules, model)")
        if self.kind == PolicyKind.NONE and self.caps is not None:
            raise ValueError(f"{self.name}: caps do not apply to kind none")
        if self.kind != PolicyKind.NONE and self.caps is None:
            raise ValueError(f"{self.name}: kind {self.kind} needs caps: true | false")
        if self.kind != PolicyKind.MODEL and self.cold_start is not None:
            raise ValueError(f"{self.name}: cold_start only applies to kind model")
        if self.kind == PolicyKind.NONE and self.overlay is not None:
            raise ValueError(f"{self.name}: overlay needs an engine kind (rules, model)")
        if self.kind != PolicyKind.RULES and self.min_step_dropoff is not None:
            raise ValueError(f"{self.name}: min_step_dropoff only applies to kind rules")
        return self


class EvaluationConfig(StrictModel):
    users: int = Field(ge=1)
    days: int = Field(ge=1)
    start_date: date
    seeds: list[int] = Field(min_length=1)
    workers: int = Field(ge=1)
    confidence: float = Field(gt=0, lt=1)
    baseline: str
    headline: str
    focus_step: str
    policies: list[PolicySpec] = Field(min_length=2)
    read_budget_ms: float = Field(gt=0)
    keep_logs: list[str]
    mlflow_experiment: str = Field(min_length=1)

    @field_validator("seeds")
    @classmethod
    def _unique_seeds(cls, seeds: list[int]) -> list[int]:
        if len(set(seeds)) != len(seeds) or any(s < 0 for s in seeds):
            raise ValueError("seeds must be unique and >= 0")
        return seeds

    @model_validator(mode="after")
    def _names(self) -> EvaluationConfig:
        names = [p.name for p in self.policies]
        if len(set(names)) != len(names):
            raise ValueError("policy names must be unique")
        for what, name in (("baseline", self.baseline), ("headline", self.headline)):
            if name not in names:
                raise ValueError(f"{what} {name!r} is not one of the policies: {names}")
        unknown = sorted(set(self.keep_logs) - set(names))
        if unknown:
            raise ValueError(f"keep_logs names unknown policies: {', '.join(unknown)}")
        return self

    def policy(self, name: str) -> PolicySpec:
        for spec in self.policies:
            if spec.name == name:
                return spec
        raise KeyError(name)


class ReportConfig(StrictModel):
    confidence: float = Field(gt=0, lt=1)
    bootstrap_resamples: int = Field(ge=100)
    bootstrap_seed: int = Field(ge=0)
    min_decisions: int = Field(ge=1)
    alpha: float = Field(gt=0, lt=1)
    power: float = Field(gt=0, lt=1)
    mlflow_experiment: str = Field(min_length=1)


class ExposureWeights(StrictModel):
    """Training weight of a decision point by what the policy did around it."""

    holdout: float = Field(ge=0)
    untreated: float = Field(ge=0)
    treated: float = Field(ge=0)


class FeedbackConfig(StrictModel):
    source: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    weights: ExposureWeights


class LoopConfig(ConfigFile):
    """Policy evaluation, efficacy report, feedback into training (see loop.yaml)."""

    file_name = "loop.yaml"

    evaluation: EvaluationConfig
    report: ReportConfig
    feedback: FeedbackConfig
