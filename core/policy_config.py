"""`configs/policy.yaml`: the product's decisions (rules, bands, content, caps, experiments).

Shared by serving (the engine applies it) and training (the pipeline and `intent policy tune`
read it), so it lives in core. Cross-field checks live here so a bad policy fails at load time,
naming the key, never in the middle of a request.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from core.heuristic import HeuristicConfig
from core.settings import ConfigError, ConfigFile, StrictModel, format_validation_error
from core.vocabulary import ActionType, MomentType
from features.signals import REQUEST_SIGNALS

# Names a rule may test and a request may send: the stored counters and request-time signals.
SIGNAL_NAMES: frozenset[str] = REQUEST_SIGNALS

Op = Literal["<", "<=", ">", ">="]


class Intensity(StrEnum):
    """How strongly a band intervenes; ordered, so a higher band never means less help."""

    NONE = "none"
    ASSIST = "assist"
    ESCALATE = "escalate"


INTENSITY_RANK = {Intensity.NONE: 0, Intensity.ASSIST: 1, Intensity.ESCALATE: 2}


class CapKind(StrEnum):
    """The frequency caps an action can be subject to (or bypass)."""

    DAILY = "daily"
    EPISODE = "episode"
    COOLDOWN = "cooldown"


# --- policy.yaml ---------------------------------------------------------------------------


class SignalRule(StrictModel):
    """One row of the signal table: `signal op threshold` on one of `moments` -> `action`."""

    name: str = Field(min_length=1)
    moments: list[MomentType] = Field(min_length=1)
    signal: str
    op: Op
    threshold: float
    action: ActionType

    @field_validator("signal")
    @classmethod
    def _known_signal(cls, signal: str) -> str:
        if signal not in SIGNAL_NAMES:
            raise ValueError(f"unknown signal {signal!r}; known: {', '.join(sorted(SIGNAL_NAMES))}")
        return signal

    @field_validator("action")
    @classmethod
    def _not_none(cls, action: ActionType) -> ActionType:
        if action == ActionType.NONE:
            raise ValueError("a rule must name an action other than none")
        return action


class Band(StrictModel):
    """A score band `[previous upper, upper)`; the first starts at 0, the last ends at 1."""

    name: str = Field(min_length=1)
    upper: float = Field(gt=0, le=1)
    intensity: Intensity


class ThresholdOverrides(StrictModel):
    """New values for named thresholds: band uppers and rule thresholds."""

    bands: dict[str, float] = Field(default_factory=dict)
    rules: dict[str, float] = Field(default_factory=dict)

    def is_empty(self) -> bool:
        return not self.bands and not self.rules


class Cohort(StrictModel):
    """Users matching every given attribute get `overrides` (all matching cohorts, in order)."""

    name: str = Field(min_length=1)
    device: str | None = None
    channel: str | None = None
    returning: bool | None = None
    overrides: ThresholdOverrides
    note: str | None = Field(None, description="why: e.g. the estimates that chose it")

    @model_validator(mode="after")
    def _matches_something(self) -> Cohort:
        if self.device is None and self.channel is None and self.returning is None:
            raise ValueError("a cohort needs at least one of device, channel, returning")
        return self


class AssistiveConfig(StrictModel):
    """Sessions flagged as using assistive technology (screen reader, keyboard, switch access):
    their long pauses are reading, not hesitation, and auto-playing media gets in their way."""

    hesitation_moments: list[MomentType] = Field(
        default_factory=lambda: [MomentType.PAUSE],
        description="pause-triggered moments: never fire for assistive sessions",
    )
    excluded_actions: list[ActionType] = Field(
        default_factory=lambda: [ActionType.MICRO_VIDEO],
        description="actions never shown to assistive sessions (auto-playing video)",
    )
    substitutes: dict[ActionType, ActionType] = Field(
        default_factory=dict,
        description="content override: an excluded action replaced by this one (else none)",
    )
    overrides: ThresholdOverrides = Field(
        default_factory=ThresholdOverrides,
        description="own thresholds: applied after cohorts and experiment arms",
    )

    @model_validator(mode="after")
    def _substitutes_allowed(self) -> AssistiveConfig:
        for excluded, sub in self.substitutes.items():
            if excluded not in self.excluded_actions:
                raise ValueError(f"substitutes: {excluded} is not in excluded_actions")
            if sub in self.excluded_actions or sub == ActionType.NONE:
                raise ValueError(
                    f"substitutes: {excluded} -> {sub} must be a shown, non-excluded action"
                )
        return self


class CapOverride(StrictModel):
    bypass: list[CapKind]


class CapsConfig(StrictModel):
    """Frequency caps: the over-triggering guard of the source document."""

    max_per_day: int = Field(ge=1)
    max_per_episode: int = Field(ge=1)
    cooldown_s: float = Field(ge=0)
    default_tz: str
    actions: dict[ActionType, CapOverride]

    @field_validator("default_tz")
    @classmethod
    def _known_tz(cls, tz: str) -> str:
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {tz!r}") from exc
        return tz


class Arm(StrictModel):
    """An experiment arm: `overrides` for all its users, then its matching `cohorts` (own or
    read from the overlay named by `include`, e.g. the output of `intent policy tune`)."""

    name: str = Field(min_length=1)
    weight: float = Field(gt=0)
    overrides: ThresholdOverrides
    cohorts: list[Cohort] = Field(default_factory=list)
    include: str | None = Field(None, description="overlay file whose cohorts the arm applies")

    @field_validator("cohorts")
    @classmethod
    def _unique_cohorts(cls, cohorts: list[Cohort]) -> list[Cohort]:
        _unique([c.name for c in cohorts], "arm cohort names")
        return cohorts


class PolicyOverlay(StrictModel):
    """An included policy file (`intent policy tune` writes one): cohorts plus where they
    came from, so the loaded policy can still say which data chose its thresholds."""

    provenance: dict[str, str] = Field(default_factory=dict)
    cohorts: list[Cohort] = Field(default_factory=list)


class IncludedOverlay(StrictModel):
    """Set by the loader for every `include` it read (never written by hand)."""

    path: str  # as written in `include`
    into: str  # `cohorts` or `experiments.<experiment>.<arm>`
    provenance: dict[str, str]
    cohorts: list[str]  # the names of the cohorts it added


class Experiment(StrictModel):
    name: str = Field(min_length=1)
    share: float = Field(gt=0, le=1)  # of the layer's traffic
    arms: list[Arm] = Field(min_length=2)

    @field_validator("arms")
    @classmethod
    def _unique_arms(cls, arms: list[Arm]) -> list[Arm]:
        _unique([a.name for a in arms], "arm names")
        return arms


class Layer(StrictModel):
    """Experiments in one layer are mutually exclusive; layers are independent (own salt)."""

    name: str = Field(min_length=1)
    salt: str = Field(min_length=1)
    experiments: list[Experiment]

    @model_validator(mode="after")
    def _fits(self) -> Layer:
        total = sum(e.share for e in self.experiments)
        if total > 1 + 1e-9:
            raise ValueError(f"experiment shares of a layer sum to {total:g} > 1")
        return self


class HoldoutConfig(StrictModel):
    share: float = Field(ge=0, lt=1)
    salt: str = Field(min_length=1)


class ExperimentsConfig(StrictModel):
    holdout: HoldoutConfig
    layers: list[Layer]

    @model_validator(mode="after")
    def _unique_names(self) -> ExperimentsConfig:
        _unique([layer.name for layer in self.layers], "layer names")
        _unique([layer.salt for layer in self.layers] + [self.holdout.salt], "salts")
        _unique([e.name for layer in self.layers for e in layer.experiments], "experiment names")
        return self


class PolicyConfig(ConfigFile):
    """What the service answers at a micro-moment (see the comments in policy.yaml)."""

    file_name = "policy.yaml"

    heuristic: HeuristicConfig
    signal_table: list[SignalRule] = Field(min_length=1)
    escalation: list[SignalRule]
    moment_defaults: dict[MomentType, ActionType]
    content_key: str = Field(min_length=1)
    bands: list[Band] = Field(min_length=1)
    cohorts: list[Cohort]
    caps: CapsConfig
    experiments: ExperimentsConfig
    assistive: AssistiveConfig = Field(default_factory=AssistiveConfig)
    include: list[str] = Field(
        default_factory=list,
        description="overlay files (relative to this file) whose cohorts follow `cohorts`",
    )
    included: list[IncludedOverlay] = Field(
        default_factory=list, description="filled by the loader from `include`; do not write"
    )

    @classmethod
    def expand(cls, raw: object, path: Path) -> object:
        """Read every `include` (top level and per arm) relative to `path`: overlay cohorts
        are appended (later cohorts win) and their provenance kept in `included`."""
        if not isinstance(raw, dict):
            return raw
        if "included" in raw:
            raise ConfigError(f"{path}: included: set by the loader from include; remove it")
        out = dict(raw)
        included: list[dict[str, Any]] = []
        paths = raw.get("include") or []
        if isinstance(paths, list) and all(isinstance(p, str) for p in paths):
            cohorts = list(raw.get("cohorts") or [])
            for rel in paths:
                overlay = read_overlay(path, rel)
                cohorts += [c.model_dump(exclude_none=True) for c in overlay.cohorts]
                included.append(_included(rel, "cohorts", overlay))
            out["cohorts"] = cohorts
        out["experiments"] = _expand_arms(raw.get("experiments"), path, included)
        out["included"] = included
        return out

    @field_validator("bands")
    @classmethod
    def _valid_bands(cls, bands: list[Band]) -> list[Band]:
        check_bands(bands)
        return bands

    @field_validator("content_key")
    @classmethod
    def _template(cls, template: str) -> str:
        try:
            template.format(action="a", moment="m", step="s")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                f"content_key may only use {{action}}, {{moment}}, {{step}}: {exc}"
            ) from exc
        return template

    @field_validator("moment_defaults")
    @classmethod
    def _every_moment(cls, defaults: dict[MomentType, ActionType]) -> dict:
        missing = [m.value for m in MomentType if m not in defaults]
        if missing:
            raise ValueError(f"missing moments: {', '.join(missing)}")
        if ActionType.NONE in defaults.values():
            raise ValueError("a moment's default action cannot be none")
        return defaults

    @model_validator(mode="after")
    def _includes_read(self) -> PolicyConfig:
        wanted = sorted(
            [("cohorts", p) for p in self.include]
            + [(f"experiments.{e}.{a.name}", a.include) for e, a in self._arms() if a.include]
        )
        if wanted != sorted((i.into, i.path) for i in self.included):
            raise ValueError(
                "include: overlays are read by load_config (paths relative to policy.yaml); "
                "a policy validated from a mapping cannot include files"
            )
        return self

    @model_validator(mode="after")
    def _cross_checks(self) -> PolicyConfig:
        _unique([r.name for r in self.rules], "rule names (signal_table + escalation)")
        _unique([c.name for c in self.cohorts], "cohort names")
        band_names = {b.name for b in self.bands}
        rule_names = {r.name for r in self.rules}
        for where, overrides in self._named_overrides():
            unknown = sorted(set(overrides.bands) - band_names)
            if unknown:
                raise ValueError(f"{where}: unknown bands {', '.join(unknown)}")
            unknown = sorted(set(overrides.rules) - rule_names)
            if unknown:
                raise ValueError(f"{where}: unknown rules {', '.join(unknown)}")
        # Every combination a user can end up with must still give valid bands.
        for combo in self._override_combinations():
            try:
                check_bands(apply_band_overrides(self.bands, combo))
            except ValueError as exc:
                raise ValueError(f"overrides {' + '.join(n for n, _ in combo)}: {exc}") from exc
        return self

    @property
    def rules(self) -> list[SignalRule]:
        return [*self.signal_table, *self.escalation]

    def _arms(self) -> Iterable[tuple[str, Arm]]:
        for layer in self.experiments.layers:
            for exp in layer.experiments:
                for arm in exp.arms:
                    yield exp.name, arm

    def _named_overrides(self) -> Iterable[tuple[str, ThresholdOverrides]]:
        for cohort in self.cohorts:
            yield f"cohorts.{cohort.name}", cohort.overrides
        for exp, arm in self._arms():
            yield f"experiments.{exp}.{arm.name}", arm.overrides
            for cohort in arm.cohorts:
                yield f"experiments.{exp}.{arm.name}.cohorts.{cohort.name}", cohort.overrides
        yield "assistive", self.assistive.overrides

    def _override_combinations(self) -> Iterable[Sequence[tuple[str, ThresholdOverrides]]]:
        """Every set of overrides one user can get: cohorts that can match together (one
        device, one channel, returning or not), one arm per layer with its matching cohorts."""
        assistive = [[], [("assistive", self.assistive.overrides)]]
        for chosen in compatible_subsets(self.cohorts):
            per_layer = [
                [[]]
                + [
                    [(f"arm {e.name}.{a.name}", a.overrides)]
                    + [(f"arm {e.name}.{a.name} cohort {c.name}", c.overrides) for c in extra]
                    for e in layer.experiments
                    for a in e.arms
                    for extra in compatible_subsets(a.cohorts, chosen)
                ]
                for layer in self.experiments.layers
            ]
            named = [(f"cohort {c.name}", c.overrides) for c in chosen]
            for arms in itertools.product(*per_layer, assistive):
                yield [*named, *(o for arm in arms for o in arm)]


def compatible_subsets(
    cohorts: Sequence[Cohort], given: Sequence[Cohort] = ()
) -> Iterable[list[Cohort]]:
    """The subsets of `cohorts` (in order) that one user can match together with `given`."""

    def walk(start: int, chosen: list[Cohort]) -> Iterable[list[Cohort]]:
        yield chosen
        for i in range(start, len(cohorts)):
            grown = [*chosen, cohorts[i]]
            if _compatible([*given, *grown]):
                yield from walk(i + 1, grown)

    return walk(0, [])


def _compatible(cohorts: Sequence[Cohort]) -> bool:
    for attr in ("device", "channel", "returning"):
        if len({getattr(c, attr) for c in cohorts} - {None}) > 1:
            return False
    return True


def with_overlay(policy: PolicyConfig, overlay: PolicyOverlay) -> PolicyConfig:
    """`policy` with the overlay's cohorts appended (a cohort of the same name that an earlier
    include brought in is replaced); raises ValidationError when the result does not hold."""
    raw = policy.model_dump(mode="json")
    new = {c.name for c in overlay.cohorts}
    replaced = {n for inc in policy.included for n in inc.cohorts} & new
    raw["cohorts"] = [c for c in raw["cohorts"] if c["name"] not in replaced]
    raw["cohorts"] += [c.model_dump(mode="json") for c in overlay.cohorts]
    return PolicyConfig.model_validate(raw)


def read_overlay(policy_path: Path, rel: str) -> PolicyOverlay:
    """The overlay `rel` (relative to the including file), validated; a ConfigError names
    both files when it is missing, not YAML or not an overlay."""
    path = (policy_path.parent / rel).resolve()
    where = f"{policy_path}: include {rel}"
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"{where}: {path} not found") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: {path} is not valid YAML: {exc}") from exc
    try:
        return PolicyOverlay.model_validate(raw or {})
    except ValidationError as exc:
        raise ConfigError(f"{where}:\n{format_validation_error(exc, str(path))}") from exc


def _included(rel: str, into: str, overlay: PolicyOverlay) -> dict[str, Any]:
    return {
        "path": rel,
        "into": into,
        "provenance": overlay.provenance,
        "cohorts": [c.name for c in overlay.cohorts],
    }


def _expand_arms(experiments: object, path: Path, included: list[dict[str, Any]]) -> object:
    """`experiments` with each arm's `include` read into the arm's cohorts (anything not
    shaped as expected is left for the model to report)."""

    def arm_of(exp: str, arm: object) -> object:
        if not isinstance(arm, dict) or not isinstance(arm.get("include"), str):
            return arm
        overlay = read_overlay(path, arm["include"])
        more = [c.model_dump(exclude_none=True) for c in overlay.cohorts]
        included.append(_included(arm["include"], f"experiments.{exp}.{arm.get('name')}", overlay))
        return {**arm, "cohorts": [*(arm.get("cohorts") or []), *more]}

    def exp_of(exp: object) -> object:
        if not isinstance(exp, dict) or not isinstance(exp.get("arms"), list):
            return exp
        return {**exp, "arms": [arm_of(str(exp.get("name")), a) for a in exp["arms"]]}

    def layer_of(layer: object) -> object:
        if not isinstance(layer, dict) or not isinstance(layer.get("experiments"), list):
            return layer
        return {**layer, "experiments": [exp_of(e) for e in layer["experiments"]]}

    if not isinstance(experiments, dict) or not isinstance(experiments.get("layers"), list):
        return experiments
    return {**experiments, "layers": [layer_of(layer) for layer in experiments["layers"]]}


def check_bands(bands: Sequence[Band]) -> None:
    """Bands are contiguous by construction (each starts where the previous ends): check the
    names, the order of the uppers, the end at 1.0 and that intensity never decreases."""
    _unique([b.name for b in bands], "band names")
    uppers = [b.upper for b in bands]
    if any(lo >= hi for lo, hi in itertools.pairwise(uppers)):
        raise ValueError(f"band uppers must increase strictly, got {uppers}")
    if uppers[-1] != 1.0:
        raise ValueError(f"the last band must end at 1.0, got {uppers[-1]}")
    ranks = [INTENSITY_RANK[b.intensity] for b in bands]
    if ranks != sorted(ranks):
        raise ValueError("band intensities must not decrease as the score rises")


def apply_band_overrides(
    bands: Sequence[Band], overrides: Iterable[tuple[str, ThresholdOverrides]]
) -> list[Band]:
    """Bands with the uppers replaced by each override in turn (later ones win)."""
    uppers = {b.name: b.upper for b in bands}
    for _, override in overrides:
        uppers.update(override.bands)
    return [b.model_copy(update={"upper": uppers[b.name]}) for b in bands]


def _unique(names: Sequence[str], what: str) -> None:
    seen: set[str] = set()
    dupes = sorted({n for n in names if n in seen or seen.add(n)})
    if dupes:
        raise ValueError(f"duplicate {what}: {', '.join(dupes)}")
