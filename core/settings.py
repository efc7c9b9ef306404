"""Strict configuration: YAML files in `configs/` validated by pydantic models.

Every product threshold lives in a YAML file and is read through a model that forbids
unknown keys, so a typo in a config is an error naming the file and the key instead of a
silently ignored setting.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from core.layout import Layout


class StrictModel(BaseModel):
    """Base for config sections: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ConfigFile(StrictModel):
    """Base for a whole config file; `file_name` is its name under `configs/`."""

    file_name: ClassVar[str]

    @classmethod
    def expand(cls, raw: object, path: Path) -> object:
        """Hook for files that include others (`policy.yaml`): the mapping with its includes
        read, relative to `path`; raises ConfigError naming the included file. Default: as is."""
        return raw


class ConfigError(ValueError):
    """A config file is missing, is not YAML, or does not match its model."""


C = TypeVar("C", bound=ConfigFile)


def config_path(model: type[ConfigFile], layout: Layout | None = None) -> Path:
    """Default location of a config file: `<file_name>` in the first config folder having it."""
    return (layout or Layout.from_env()).config_file(model.file_name)


def load_config(model: type[C], path: Path | None = None, *, layout: Layout | None = None) -> C:
    """Read and validate one config file.

    Raises ConfigError with the file and the dotted key of every problem, e.g.
    `configs/policy.yaml: bands.0.upper: Input should be less than or equal to 1`.
    """
    path = Path(path) if path is not None else config_path(model, layout)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: config file not found") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    return parse_config(model, model.expand(raw or {}, path), source=str(path))


def parse_config(model: type[C], raw: object, *, source: str = "<config>") -> C:
    """Validate an already-parsed mapping (tests and overrides use this directly)."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from exc


def format_validation_error(exc: ValidationError, source: str) -> str:
    """One line per problem, `source: dotted.key: message`."""
    lines = []
    for err in exc.errors():
        key = ".".join(str(part) for part in err["loc"]) or "<root>"
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = "unknown key (not in the schema; check the spelling)"
        lines.append(f"{source}: {key}: {message}")
    return "\n".join(lines)
