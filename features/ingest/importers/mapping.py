"""Mapping files (`configs/mappings/*.yaml`): how a source's records become canonical events.

Two kinds: `segment` (Segment / RudderStack spec JSON lines: which call or track event name
becomes which event type, where ids and context live) and `table` (CSV / parquet: one spec
per kind of file, each canonical column from a source column, a constant, a template, or a
timestamp built from a date and an offset). Both can convert the source's unit of `value`
(`unit: ms` -> seconds, `unit: fraction` -> percent) and rename the source's page / screen
names to funnel steps (`steps:`, an exact table then regexes). Strict models, so a typo in
a mapping is an error naming the file and the key.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import Discriminator, Field, Tag, ValidationError, field_validator, model_validator

from core.settings import ConfigError, StrictModel, format_validation_error
from features.events import DEPTH_TYPES, EventType

# --- value sources -------------------------------------------------------------------------

# The source's unit of `value` -> the factor to the canonical unit (seconds for durations,
# percent for scroll depth). Only `value` takes a unit.
Unit = Literal["s", "ms", "percent", "fraction"]
UNIT_FACTOR: dict[str, float] = {"s": 1.0, "ms": 0.001, "percent": 1.0, "fraction": 100.0}
_DEPTH_UNITS = frozenset({"percent", "fraction"})


class ColumnSource(StrictModel):
    """The value of a source column (text as is; `unit` converts a numeric `value`)."""

    column: str = Field(min_length=1)
    unit: Unit | None = None


class ConstSource(StrictModel):
    """The same value on every row (e.g. the funnel step of a shop: `browse`)."""

    const: str | float


class TemplateSource(StrictModel):
    """Text built from columns, e.g. `view-{session_id}-{timeframe}`; null if any is null."""

    template: str = Field(min_length=1)

    @property
    def fields(self) -> list[str]:
        return [f for _, f, _, _ in string.Formatter().parse(self.template) if f is not None]

    @field_validator("template")
    @classmethod
    def _plain_fields(cls, template: str) -> str:
        try:
            parts = list(string.Formatter().parse(template))
        except ValueError as exc:
            raise ValueError(f"bad template {template!r}: {exc}") from exc
        for _, name, spec, conversion in parts:
            if name is not None and (not name or spec or conversion):
                raise ValueError(f"template fields must be plain column names: {template!r}")
        return template


class DateOffsetSource(StrictModel):
    """A timestamp from a date column plus an offset in milliseconds (Diginetica's layout)."""

    date: str = Field(min_length=1)
    date_format: str = Field(min_length=1)  # strptime format, e.g. %Y-%m-%d
    offset_ms: str | None = None  # column of milliseconds to add
    timezone: str = Field(min_length=1)  # IANA zone the dates are local to, e.g. UTC


class EpochSource(StrictModel):
    """A timestamp from a column of epoch numbers."""

    epoch: str = Field(min_length=1)
    unit: Literal["s", "ms", "us"]


class JsonSource(StrictModel):
    """A JSON object of some source columns (for `props`)."""

    json_columns: list[str] = Field(min_length=1)


class TypeColumnSource(StrictModel):
    """Event type from a column through a name table; names not listed are quarantined."""

    column: str = Field(min_length=1)
    values: dict[str, EventType] = Field(min_length=1)


def _kind(keys: tuple[str, ...]):
    def pick(value: Any) -> str | None:
        fields = value.keys() if isinstance(value, dict) else type(value).model_fields.keys()
        return next((k for k in keys if k in fields), None)

    return pick


TextSource = Annotated[
    Annotated[ColumnSource, Tag("column")]
    | Annotated[ConstSource, Tag("const")]
    | Annotated[TemplateSource, Tag("template")],
    Discriminator(_kind(("column", "const", "template"))),
]
TsSource = Annotated[
    Annotated[ColumnSource, Tag("column")]
    | Annotated[DateOffsetSource, Tag("date")]
    | Annotated[EpochSource, Tag("epoch")],
    Discriminator(_kind(("column", "date", "epoch"))),
]
TypeSource = Annotated[
    Annotated[TypeColumnSource, Tag("column")] | Annotated[ConstSource, Tag("const")],
    Discriminator(_kind(("column", "const"))),
]
PropsSource = Annotated[
    Annotated[ColumnSource, Tag("column")] | Annotated[JsonSource, Tag("json_columns")],
    Discriminator(_kind(("column", "json_columns"))),
]


def unit_of(source: object) -> str | None:
    """The `unit` of a value source (None when it has none)."""
    return getattr(source, "unit", None)


def check_unit(etype: EventType, unit: str | None, key: str) -> None:
    """A depth takes percent / fraction, a duration s / ms: anything else is a mapping error."""
    if unit is None:
        return
    depth = etype in DEPTH_TYPES
    if depth != (unit in _DEPTH_UNITS):
        wanted = "percent or fraction" if depth else "s or ms"
        raise ValueError(f"{key}: {etype.value} values take unit {wanted}, not {unit!r}")


class StepPattern(StrictModel):
    """Source step names matching an RE2 regex (searched, so anchor it) become `step`."""

    pattern: str = Field(min_length=1)
    step: str = Field(min_length=1)

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, pattern: str) -> str:
        import pyarrow as pa
        import pyarrow.compute as pc

        try:  # steps are mapped with Arrow's RE2, so check with it
            pc.match_substring_regex(pa.array([""]), pattern=pattern)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise ValueError(f"pattern {pattern!r} is not a valid regex: {exc}") from exc
        return pattern


class StepMapping(StrictModel):
    """Source page / screen / step names -> funnel steps: the exact table first, then the
    first matching regex; other names pass through (and are quarantined as `unknown_step`
    when the funnel does not have them)."""

    exact: dict[str, str] = Field(default_factory=dict)
    regex: list[StepPattern] = Field(default_factory=list)

    def targets(self) -> list[tuple[str, str]]:
        """(where, funnel step) of every entry, to check against the funnel."""
        out = [(f"steps.exact.{k}", v) for k, v in self.exact.items()]
        return out + [(f"steps.regex.{i}.step", p.step) for i, p in enumerate(self.regex)]


# --- table mappings ------------------------------------------------------------------------


class CsvOptions(StrictModel):
    """How to read a CSV file: every column is read as text."""

    separator: str = Field(min_length=1, max_length=1)
    null_values: list[str]


class ColumnsMapping(StrictModel):
    """Each canonical column's source; unmapped optional columns stay null."""

    event_id: TextSource
    user_id: TextSource | None = None
    anonymous_id: TextSource | None = None
    session_id: TextSource | None = None
    ts: TsSource
    type: TypeSource
    step: TextSource | None = None
    target: TextSource | None = None
    value: TextSource | None = None
    user_agent: TextSource | None = None
    tz: TextSource | None = None
    device: TextSource | None = None
    channel: TextSource | None = None
    props: PropsSource | None = None
    assistive: TextSource | None = None  # true / false / 1 / 0 text

    @model_validator(mode="after")
    def _actor(self) -> ColumnsMapping:
        if self.user_id is None and self.anonymous_id is None:
            raise ValueError("map user_id or anonymous_id (or both)")
        if isinstance(self.type, ConstSource) and self.type.const not in set(EventType):
            raise ValueError(f"type: {self.type.const!r} is not an event type")
        for name in COLUMN_NAMES_WITHOUT_UNIT:
            source = getattr(self, name)
            if isinstance(source, ColumnSource) and source.unit is not None:
                raise ValueError(f"{name}: only `value` takes a unit")
        if isinstance(self.type, ConstSource):
            check_unit(EventType(self.type.const), unit_of(self.value), "value.unit")
        return self


class TableSpec(StrictModel):
    """One kind of input file (e.g. the views file) and how its rows map."""

    name: str = Field(min_length=1)
    match: str = Field(min_length=1)  # glob on the file name, e.g. "*views*.csv"
    csv: CsvOptions | None = None  # required to read .csv files
    # Keep only rows whose session_id also occurs in the named table (the others are counted
    # as skipped): e.g. purchases outside a sample of sessions.
    only_sessions_of: str | None = None
    columns: ColumnsMapping


class TableMapping(StrictModel):
    """`intent import table`: CSV / parquet files, one spec per kind of file."""

    kind: Literal["table"]
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_-]+$")
    tables: list[TableSpec] = Field(min_length=1)
    steps: StepMapping = Field(default_factory=StepMapping)

    @model_validator(mode="after")
    def _references(self) -> TableMapping:
        names = [t.name for t in self.tables]
        if len(set(names)) != len(names):
            raise ValueError("table names must be unique")
        for table in self.tables:
            ref = table.only_sessions_of
            if ref is not None and (ref not in names or ref == table.name):
                raise ValueError(f"{table.name}: only_sessions_of must name another table")
            if ref is not None and table.columns.session_id is None:
                raise ValueError(f"{table.name}: only_sessions_of needs a session_id mapping")
        return self

    def spec_for(self, path: Path) -> TableSpec:
        """The first spec whose `match` glob matches the file name."""
        for spec in self.tables:
            if Path(path.name).match(spec.match):
                return spec
        globs = ", ".join(t.match for t in self.tables)
        raise ConfigError(f"{path}: matches no table of mapping {self.name!r} ({globs})")


# --- segment mappings ----------------------------------------------------------------------


class PathSource(StrictModel):
    """A dotted path into the message, e.g. `properties.depth` (`unit` only on `value`)."""

    path: str = Field(min_length=1)
    unit: Unit | None = None


SegmentSource = Annotated[
    Annotated[PathSource, Tag("path")] | Annotated[ConstSource, Tag("const")],
    Discriminator(_kind(("path", "const"))),
]


class SegmentRule(StrictModel):
    """What one call / track event becomes; step, target, value override the defaults."""

    type: EventType
    step: SegmentSource | None = None
    target: SegmentSource | None = None
    value: SegmentSource | None = None

    @model_validator(mode="after")
    def _units(self) -> SegmentRule:
        if unit_of(self.step) is not None or unit_of(self.target) is not None:
            raise ValueError("only `value` takes a unit")
        check_unit(self.type, unit_of(self.value), "value.unit")
        return self


class SegmentFields(StrictModel):
    """Where each canonical column lives in a message: dotted paths, first present wins."""

    event_id: list[str] = Field(min_length=1)
    user_id: list[str]
    anonymous_id: list[str]
    session_id: list[str]
    ts: list[str] = Field(min_length=1)
    step: list[str]
    target: list[str]
    value: list[str]
    user_agent: list[str]
    tz: list[str]
    device: list[str]
    channel: list[str]
    props: list[str]
    assistive: list[str] = Field(default_factory=list)  # e.g. context.assistive


class SegmentMapping(StrictModel):
    """`intent import segment`: Segment / RudderStack spec messages, one JSON per line."""

    kind: Literal["segment"]
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_-]+$")
    fields: SegmentFields
    calls: dict[Literal["page", "screen", "identify"], SegmentRule]
    track: dict[str, SegmentRule] = Field(min_length=1)
    # track names deliberately left out (counted as skipped, not quarantined)
    ignore_track: list[str] = Field(default_factory=list)
    steps: StepMapping = Field(default_factory=StepMapping)

    @model_validator(mode="after")
    def _ignored_not_mapped(self) -> SegmentMapping:
        both = sorted(set(self.ignore_track) & set(self.track))
        if both:
            raise ValueError(f"ignore_track: {', '.join(both)} also mapped in track")
        return self


COLUMN_NAMES_WITHOUT_UNIT = tuple(f for f in ColumnsMapping.model_fields if f != "value")

M = TypeVar("M", TableMapping, SegmentMapping)


def load_mapping(path: Path, kind: type[M]) -> M:
    """Read a mapping file of the expected kind; ConfigError names the file and the key."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: mapping file not found") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    expected = "table" if kind is TableMapping else "segment"
    if not isinstance(raw, dict) or raw.get("kind") != expected:
        raise ConfigError(f"{path}: kind: expected {expected!r} (a {expected} mapping)")
    try:
        return kind.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, str(path))) from exc
