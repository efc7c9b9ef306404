"""The Feast repo's contract and inputs: table schemas, the values the declarations in
`features/feature_repo/` take from a layout, and the on-demand transformation.

The declarations themselves are the files of `features/feature_repo/`; `build_definitions`
calls them for any layout (our jobs, the server) and `repo_definitions` for the
environment's layout (the `feast` CLI), so there is one definition of every object.

Schemas come from the offline build's contract (`features.pipeline.build.expected_schemas`):
`session_state` is `signals.SNAPSHOT_FIELDS`; `user_stats` / `step_stats` are every
prefixed aggregate column, so a new aggregate becomes a feature without touching this file.
The FeatureService - the model's contract - lists every aggregate and session counter
except clocks (`*_at`, timestamps), plus the request-time signals of the on-demand view.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from core.layout import Layout
from core.settings import load_config
from features.config import SignalsConfig
from features.signals import (
    DERIVED_FIELDS,
    SNAPSHOT_COUNTERS,
    SNAPSHOT_FIELDS,
    USER_DERIVED_FIELDS,
    USER_FIRST_SEEN,
    derive,
    derive_user,
)
from features.store.config import FeatureStoreConfig, TtlConfig

if TYPE_CHECKING:
    from feast import (
        Entity,
        FeatureService,
        FeatureView,
        OnDemandFeatureView,
        PushSource,
        RequestSource,
    )

# Offline tables (`layout.features / <name>.parquet`) and their keys.
USER_STATS = "user_stats"
STEP_STATS = "step_stats"
SESSION_STATE = "session_state"
SESSION_PUSH = "session_state_push"
MOMENT_SIGNALS = "moment_signals"
REQUEST_SOURCE = "decision_request"

TABLE_FILES: dict[str, str] = {
    USER_STATS: "user_stats.parquet",
    STEP_STATS: "step_stats.parquet",
    SESSION_STATE: "session_snapshots.parquet",
}
JOIN_KEYS: dict[str, str] = {USER_STATS: "user_id", STEP_STATS: "step", SESSION_STATE: "session_id"}
PREFIXES: dict[str, str] = {USER_STATS: "user_", STEP_STATS: "step_"}
TIMESTAMP_FIELD = "event_timestamp"
CREATED_FIELD = "created_timestamp"  # optional tie-breaker column Feast understands
REQUEST_TS = "request_ts"  # decision time, epoch seconds
STEP_TYPICAL_PAUSE = "step_typical_pause_s"  # derive()'s reference pause, from step stats
ON_DEMAND_FIELDS: tuple[str, ...] = DERIVED_FIELDS + USER_DERIVED_FIELDS  # moment_signals


class FeatureTableError(ValueError):
    """An offline feature table is missing or does not match the feature-table contract."""


def is_clock(name: str) -> bool:
    """Clock columns (epoch `*_at`) are stored as inputs, never served: a raw clock lets a
    model learn the calendar instead of behaviour."""
    return name.endswith("_at")


# --- schemas ------------------------------------------------------------------------------


def contract_schemas(layout: Layout) -> dict[str, pa.Schema]:
    """Arrow schemas the offline build promises for the view tables (`build.expected_schemas`).

    Taken from the contract, not from files on disk, so `apply` works before the first build
    and the FeatureService does not change with whatever a file happens to hold.
    """
    from features.pipeline.build import PipelineConfigs, expected_schemas

    schemas = expected_schemas(PipelineConfigs.load(layout))
    return {view: schemas[Path(file).stem] for view, file in TABLE_FILES.items()}


def check_tables(layout: Layout, schemas: Mapping[str, pa.Schema]) -> None:
    """Raise FeatureTableError when a table on disk differs from its contract schema.

    A missing table is fine here (apply may precede the first build); materialize says so.
    """
    for view, expected in schemas.items():
        path = table_path(layout, view)
        if not path.exists():
            continue
        found = pq.read_schema(path)
        wanted = {f.name: f.type for f in expected}
        have = {f.name: f.type for f in found}
        problems = [f"missing {n}" for n in wanted if n not in have]
        problems += [
            f"{n} is {have[n]}, expected {t}"
            for n, t in wanted.items()
            if n in have and have[n] != t
        ]
        if problems:
            raise FeatureTableError(
                f"{path}: does not match the feature-table contract: " + "; ".join(problems)
            )


def table_path(layout: Layout, view: str) -> Path:
    """Where the offline table behind a feature view lives."""
    return layout.features / TABLE_FILES[view]


@dataclass(frozen=True)
class ViewColumns:
    """Stored columns of one feature view: (name, feast dtype name), and the served subset."""

    stored: tuple[tuple[str, str], ...]
    served: tuple[str, ...]


def view_columns(view: str, schema: pa.Schema) -> ViewColumns:
    """Check one table against the contract and pick the view's stored and served columns.

    Raises FeatureTableError naming the table and every offending column.
    """
    key = JOIN_KEYS[view]
    missing = [c for c in (key, TIMESTAMP_FIELD) if c not in schema.names]
    if view == SESSION_STATE:
        missing += [c for c in SNAPSHOT_FIELDS if c not in schema.names]
    if view == STEP_STATS and STEP_TYPICAL_PAUSE not in schema.names:
        missing.append(STEP_TYPICAL_PAUSE)
    if missing:
        raise FeatureTableError(f"{TABLE_FILES[view]}: missing columns: {', '.join(missing)}")
    ts_type = schema.field(TIMESTAMP_FIELD).type
    if not pa.types.is_timestamp(ts_type) or ts_type.tz is None:
        raise FeatureTableError(
            f"{TABLE_FILES[view]}: {TIMESTAMP_FIELD} must be a UTC timestamp column, got {ts_type}"
        )
    if view == SESSION_STATE:
        stored = tuple((name, "Float64") for name in SNAPSHOT_FIELDS)
        return ViewColumns(stored, SNAPSHOT_COUNTERS)

    prefix = PREFIXES[view]
    candidates = [
        f for f in schema if f.name not in (key, TIMESTAMP_FIELD, CREATED_FIELD, REQUEST_TS)
    ]
    unprefixed = [f.name for f in candidates if not f.name.startswith(prefix)]
    if unprefixed:
        raise FeatureTableError(
            f"{TABLE_FILES[view]}: feature columns must start with {prefix!r}: "
            + ", ".join(unprefixed)
        )
    stored = tuple((f.name, _feast_dtype_name(view, f)) for f in candidates)
    served = tuple(
        name for name, dtype in stored if not is_clock(name) and dtype != "UnixTimestamp"
    )
    return ViewColumns(stored, served)


def _feast_dtype_name(view: str, f: pa.Field) -> str:
    t = f.type
    if pa.types.is_float64(t) or pa.types.is_decimal(t):
        return "Float64"
    if pa.types.is_float32(t) or pa.types.is_float16(t):
        return "Float32"
    if pa.types.is_int64(t) or pa.types.is_uint32(t):
        return "Int64"
    if pa.types.is_integer(t) and t.bit_width <= 32:
        return "Int32" if pa.types.is_signed_integer(t) or t.bit_width < 32 else "Int64"
    if pa.types.is_boolean(t):
        return "Bool"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_dictionary(t):
        return "String"
    if pa.types.is_timestamp(t):
        return "UnixTimestamp"
    raise FeatureTableError(f"{TABLE_FILES[view]}: column {f.name} has unsupported type {t}")


# --- the on-demand transformation ---------------------------------------------------------


def moment_signals_udf(inputs):
    """Request-time signals as Feast itself computes them (`feast` CLI, UI, historical and
    online reads through the registry): `features.signals.derive()` with the signals.yaml of
    the environment's layout (INTENT_HOME / INTENT_CONFIGS). Self-contained because Feast
    re-creates it from this source text. Our jobs and the server pass their layout's config
    to `derive_columns` instead (`features.store.repo.resolve_service`, `package_plan`)."""
    from features.store.definitions import derive_configured

    return derive_configured(inputs)


def derive_configured(inputs: Mapping[str, Sequence[Any]]) -> dict[str, list]:
    """`derive_columns` with the signals config of `Layout.from_env()`."""
    signals_cfg = load_config(SignalsConfig, layout=Layout.from_env())
    return derive_columns(inputs, signals_cfg.model_dump_json())


@functools.lru_cache(maxsize=8)
def _signals_config(signals_json: str) -> SignalsConfig:
    return SignalsConfig.model_validate_json(signals_json)


def derive_columns(inputs: Mapping[str, Sequence[Any]], signals_json: str) -> dict[str, list]:
    """Batch form of `signals.derive` over Feast's column dict (online and historical).

    Missing values arrive as None; a session with no stored row (unknown, expired) gets NaN
    for every signal, never a made-up zero.
    """
    cfg = _signals_config(signals_json)
    now_column = inputs[REQUEST_TS]
    typical_column = inputs[STEP_TYPICAL_PAUSE]
    first_seen_column = inputs[USER_FIRST_SEEN]
    columns = {name: inputs[name] for name in SNAPSHOT_FIELDS}
    out: dict[str, list] = {name: [] for name in ON_DEMAND_FIELDS}
    for i, now in enumerate(now_column):
        snap = {name: _float(values[i]) for name, values in columns.items()}
        now_s = _float(now)
        if math.isnan(snap["events"]) or math.isnan(now_s):
            row = dict.fromkeys(DERIVED_FIELDS, math.nan)
        else:
            row = derive(snap, now_s, cfg, _float(typical_column[i]))
        row.update(derive_user(now_s, _float(first_seen_column[i])))
        for name in ON_DEMAND_FIELDS:
            out[name].append(row[name])
    return out


def _float(value: Any) -> float:
    return math.nan if value is None else float(value)


# --- the Feast objects --------------------------------------------------------------------


@dataclass(frozen=True)
class FeastDefinitions:
    """Every object of the feature repo; `objects()` is what `FeatureStore.apply` takes."""

    user: Entity
    session: Entity
    step: Entity
    user_stats: FeatureView
    step_stats: FeatureView
    session_state: FeatureView
    session_push: PushSource
    request: RequestSource
    moment_signals: OnDemandFeatureView
    service: FeatureService

    def objects(self) -> list[Any]:
        return [
            self.user,
            self.session,
            self.step,
            self.session_push,
            self.request,
            self.user_stats,
            self.step_stats,
            self.session_state,
            self.moment_signals,
            self.service,
        ]

    def served_features(self) -> list[str]:
        """The FeatureService's feature names in order: the model's input contract."""
        return [f.name for p in self.service.feature_view_projections for f in p.features]


# Feast stamps every data source with the time it was constructed, and a feature view embeds
# its source: each run of the definitions then differs from what `feast apply` stored, and
# `feast plan` reported every view as updated. A fixed stamp makes the definitions a value.
DEFINITIONS_TIMESTAMP = datetime(2025, 1, 1, tzinfo=UTC)


def pinned(source: Any) -> Any:
    """`source` with its created / last-updated stamps fixed (see DEFINITIONS_TIMESTAMP)."""
    source.created_timestamp = DEFINITIONS_TIMESTAMP
    source.last_updated_timestamp = DEFINITIONS_TIMESTAMP
    return source


@dataclass(frozen=True)
class RepoValues:
    """What the declarations in `features/feature_repo/` take from a layout and its configs:
    table paths, TTLs, the contract's columns and the FeatureService name. Everything else
    in a declaration is fixed text, the same for every layout."""

    tables: Mapping[str, str]  # view -> offline parquet path
    created_columns: Mapping[str, str]  # view -> created-timestamp column, "" when absent
    ttl: TtlConfig
    columns: Mapping[str, ViewColumns]
    feature_service: str

    def fields(self, view: str) -> list[Any]:
        """The view's stored columns as Feast fields."""
        from feast import Field
        from feast import types as ft

        return [Field(name=n, dtype=getattr(ft, d)) for n, d in self.columns[view].stored]

    def served(self, view: str) -> list[str]:
        """The view's columns the FeatureService serves (no clocks)."""
        return list(self.columns[view].served)


def repo_values(
    layout: Layout, cfg: FeatureStoreConfig, schemas: Mapping[str, pa.Schema]
) -> RepoValues:
    """The declarations' inputs for one layout (checks every schema against the contract)."""
    return RepoValues(
        tables={view: str(table_path(layout, view)) for view in TABLE_FILES},
        created_columns={
            view: CREATED_FIELD if CREATED_FIELD in schemas[view].names else ""
            for view in TABLE_FILES
        },
        ttl=cfg.ttl,
        columns={view: view_columns(view, schemas[view]) for view in TABLE_FILES},
        feature_service=cfg.feature_service,
    )


def build_definitions(
    layout: Layout,
    cfg: FeatureStoreConfig,
    schemas: Mapping[str, pa.Schema],
) -> FeastDefinitions:
    """The declarations of `features/feature_repo/` for a layout (no I/O, nothing applied).

    The same functions make what the `feast` CLI applies there (`feast_objects.py`, the
    environment's layout), so the registry never depends on which of the two applied it.
    """
    from features.feature_repo import data_sources, entities, on_demand, services, views

    values = repo_values(layout, cfg, schemas)
    user, session, step = entities.declare()
    sources = data_sources.declare(values)
    user_stats, step_stats, session_state = views.declare(
        values, user=user, session=session, step=step, sources=sources
    )
    moment_signals = on_demand.declare(
        session_state=session_state,
        step_stats=step_stats,
        user_stats=user_stats,
        request=sources.decision_request,
    )
    service = services.declare(
        values,
        user_stats=user_stats,
        step_stats=step_stats,
        session_state=session_state,
        moment_signals=moment_signals,
    )
    return FeastDefinitions(
        user=user,
        session=session,
        step=step,
        user_stats=user_stats,
        step_stats=step_stats,
        session_state=session_state,
        session_push=sources.session_state_push,
        request=sources.decision_request,
        moment_signals=moment_signals,
        service=service,
    )


def definitions_for(layout: Layout, cfg: FeatureStoreConfig | None = None) -> FeastDefinitions:
    """Load configs and table schemas for a layout, check existing tables, then build."""
    cfg = cfg or load_config(FeatureStoreConfig, layout=layout)
    schemas = contract_schemas(layout)
    check_tables(layout, schemas)
    return build_definitions(layout, cfg, schemas)


@functools.cache
def repo_definitions() -> FeastDefinitions:
    """The definitions for the environment's layout (INTENT_HOME / INTENT_CONFIGS, as the
    `feast` CLI runs), built once per process: what `feature_repo/feast_objects.py` shows
    the `feast` CLI."""
    return definitions_for(Layout.from_env())
