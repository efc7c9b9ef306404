"""Open, apply, materialize and query the Feast store of a layout.

The store is configured in code (a `RepoConfig` from the layout and `configs/features.yaml`)
rather than from `feature_store.yaml`, so nothing depends on the working directory and tests
can point a store at a temporary layout or at their own Redis project.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq

from core.layout import Layout
from features.store.config import FeatureStoreConfig, OnlineBackend
from features.store.definitions import (
    REQUEST_TS,
    TIMESTAMP_FIELD,
    FeastDefinitions,
    FeatureTableError,
    definitions_for,
)

if TYPE_CHECKING:
    from feast import FeatureService, FeatureStore, FeatureView, OnDemandFeatureView

SQLITE_FILE = "online_store.db"
ENTITY_COLUMNS: tuple[str, ...] = ("user_id", "session_id", "step")
DECISION_COLUMNS: tuple[str, ...] = (*ENTITY_COLUMNS, TIMESTAMP_FIELD, REQUEST_TS)
_TS = "__join_ts"


def repo_config(layout: Layout, cfg: FeatureStoreConfig, *, offline: bool = True):
    """The Feast RepoConfig of a layout: file registry under `layout.feast`, file offline store,
    SQLite (embedded) or Redis online store. `offline=False` (the scoring server, which only
    reads online) leaves the offline store out: its dask config costs ~0.6 s of import."""
    from feast import RepoConfig
    from feast.infra.online_stores.redis import RedisOnlineStoreConfig
    from feast.infra.online_stores.sqlite import SqliteOnlineStoreConfig
    from feast.repo_config import RegistryConfig

    online = cfg.online_store
    if online.backend is OnlineBackend.REDIS:
        key_ttl = online.redis_key_ttl_days
        online_store = RedisOnlineStoreConfig(
            connection_string=online.redis_connection_string,
            key_ttl_seconds=int(key_ttl * 86_400) if key_ttl is not None else None,
        )
    else:
        online_store = SqliteOnlineStoreConfig(path=str(layout.feast / SQLITE_FILE))
    return RepoConfig(
        project=cfg.project,
        provider="local",
        registry=RegistryConfig(
            registry_type="file",
            path=str(registry_path(layout, cfg)),
            cache_ttl_seconds=cfg.registry_cache_ttl_s,
        ),
        online_store=online_store,
        offline_store=_file_offline_store() if offline else None,
        entity_key_serialization_version=3,
        repo_path=layout.feast,
    )


def _file_offline_store():
    from feast.infra.offline_stores.dask import DaskOfflineStoreConfig

    return DaskOfflineStoreConfig(type="file")


def registry_path(layout: Layout, cfg: FeatureStoreConfig) -> Path:
    """One registry per online backend: it records how far each view was materialized, and
    a Redis store must not inherit the SQLite store's progress (or it would stay empty)."""
    if cfg.online_store.backend is OnlineBackend.SQLITE:
        return layout.feast / "registry.db"  # the path feature_repo/feature_store.yaml uses
    return layout.feast / f"registry_{cfg.online_store.backend}.db"


def open_store(layout: Layout, cfg: FeatureStoreConfig, *, offline: bool = True) -> FeatureStore:
    """A FeatureStore for the layout (creates `layout.feast`; does not apply anything);
    `offline=False`: online reads and pushes only (see `repo_config`)."""
    from feast import FeatureStore

    layout.feast.mkdir(parents=True, exist_ok=True)
    return FeatureStore(config=repo_config(layout, cfg, offline=offline))


def apply(layout: Layout, cfg: FeatureStoreConfig) -> FeastDefinitions:
    """Register the repo's objects and create the online tables; returns what was applied."""
    defs = definitions_for(layout, cfg)
    store = open_store(layout, cfg)
    with warnings.catch_warnings():
        # Feast flags every on-demand view as "experimental" on each apply; ours is tested.
        warnings.filterwarnings("ignore", "On demand feature view", RuntimeWarning)
        store.apply(defs.objects())
    return defs


@dataclass(frozen=True)
class MaterializedRange:
    """What one materialization run loaded into the online store for one view."""

    view: str
    start: datetime
    end: datetime
    first_run: bool


def materialize(
    layout: Layout,
    cfg: FeatureStoreConfig,
    end: datetime | None = None,
    on_view: Callable[[MaterializedRange], None] | None = None,
) -> list[MaterializedRange]:
    """Load new offline rows into the online store, incrementally, up to `end` (default now).

    Feast's `materialize_incremental` starts a never-materialized view at `now - ttl`, which
    silently skips older history (a replayed or simulated month, a backfill). So a view's
    first run starts at the earliest row of its table; later runs continue from the end
    Feast recorded last time. `on_view` is called after each view (progress reporting).
    """
    store = open_store(layout, cfg)
    end = _utc(end) if end is not None else datetime.now(UTC)
    views = store.list_feature_views()
    if not views:
        raise FeatureTableError("nothing applied yet; run `intent features apply` first")
    _check_ready(layout, [Path(v.batch_source.path).stem for v in views])
    done = []
    for view in sorted(views, key=lambda v: v.name):
        previous = view.most_recent_end_time
        if previous is None:
            start = _earliest_row(view) - timedelta(seconds=1)
            if start < end:
                store.materialize(start, end, feature_views=[view.name])
            ran = MaterializedRange(view.name, start, end, first_run=True)
        else:
            store.materialize_incremental(end, feature_views=[view.name])
            ran = MaterializedRange(view.name, _utc(previous), end, first_run=False)
        done.append(ran)
        if on_view is not None:
            on_view(ran)
    return done


def _check_ready(layout: Layout, tables: list[str]) -> None:
    """Refuse missing or empty view tables with their cause (features.pipeline.readiness)."""
    from core.settings import load_config
    from features.config import EventsConfig
    from features.pipeline.readiness import check_materializable

    gap = load_config(EventsConfig, layout=layout).session_gap_minutes
    check_materializable(layout, tables, gap)


def _earliest_row(view: FeatureView) -> datetime:
    """Earliest event timestamp in a view's batch table (one column read)."""
    source = view.batch_source
    if not Path(source.path).exists():
        raise FeatureTableError(f"{source.path}: not found; run `intent features build` first")
    column = pq.read_table(source.path, columns=[source.timestamp_field]).column(0)
    earliest = pc.min(column).as_py()
    if earliest is None:
        raise FeatureTableError(f"{source.path}: the table has no rows")
    return _utc(earliest)


def _utc(ts: datetime) -> datetime:
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


@dataclass(frozen=True)
class ServicePlan:
    """A FeatureService resolved once into what reading it takes.

    `stored` maps each stored view to the features read from it: the served ones plus the
    on-demand view's inputs (session clocks, the step's typical pause). `on_demand` holds
    each on-demand view's function as the registry stores it, with its input names.
    """

    feature_names: tuple[str, ...]
    stored: dict[str, tuple[str, ...]]
    join_keys: dict[str, str]
    ttl_s: dict[str, float | None]
    on_demand: tuple[tuple[Callable[[dict], dict], tuple[str, ...]], ...]

    def view_of(self, feature: str) -> str:
        return next(view for view, names in self.stored.items() if feature in names)


def resolve_service(
    store: FeatureStore, service: FeatureService, signals_json: str | None = None
) -> ServicePlan:
    """Resolve a FeatureService against the registry (call once, not per request).

    With `signals_json` (a layout's signals config) `moment_signals` is our own
    `derive_columns` with it, as the server's `package_plan`. Without, the on-demand
    functions come from the registry, which re-creates them by running the source text it
    stores (`definitions.moment_signals_udf`, environment's config): fine for offline jobs that
    applied the registry themselves, never for the server.
    """
    from features.store.definitions import MOMENT_SIGNALS, derive_columns

    odfvs = {v.name: v for v in store.list_on_demand_feature_views()}
    udfs = {name: odfv.feature_transformation.udf for name, odfv in odfvs.items()}
    if signals_json is not None:
        udfs[MOMENT_SIGNALS] = functools.partial(derive_columns, signals_json=signals_json)
    return _plan(service, odfvs, udfs, store.get_feature_view, lambda v: v.entity_columns[0].name)


def _plan(
    service: FeatureService,
    odfvs: dict[str, OnDemandFeatureView],
    udfs: dict[str, Callable[[dict], dict]],
    get_view: Callable[[str], FeatureView],
    join_key: Callable[[FeatureView], str],
) -> ServicePlan:
    names: list[str] = []
    stored: dict[str, list[str]] = {}
    on_demand = []

    def need(view: str, features: list[str]) -> None:
        wanted = stored.setdefault(view, [])
        wanted += [f for f in features if f not in wanted]

    for projection in service.feature_view_projections:
        features = [f.name for f in projection.features]
        names += features
        odfv = odfvs.get(projection.name)
        if odfv is None:
            need(projection.name, features)
            continue
        inputs: list[str] = []
        for source in odfv.source_feature_view_projections.values():
            source_features = [f.name for f in source.features]
            need(source.name, source_features)
            inputs += source_features
        on_demand.append((udfs[projection.name], tuple(inputs)))
    if len(set(names)) != len(names):
        raise ValueError(f"feature service {service.name!r} serves a feature name twice")
    views = {name: get_view(name) for name in stored}
    return ServicePlan(
        feature_names=tuple(names),
        stored={view: tuple(features) for view, features in stored.items()},
        join_keys={name: join_key(view) for name, view in views.items()},
        ttl_s={
            name: view.ttl.total_seconds() if view.ttl else None for name, view in views.items()
        },
        on_demand=tuple(on_demand),
    )


def package_definitions(layout: Layout, cfg: FeatureStoreConfig) -> FeastDefinitions:
    """The Feast objects as the installed package builds them from the configs (no registry,
    no tables read): what the server serves."""
    from features.store.definitions import build_definitions, contract_schemas

    return build_definitions(layout, cfg, contract_schemas(layout))


def package_plan(defs: FeastDefinitions, service_name: str, signals_json: str) -> ServicePlan:
    """`resolve_service` from the installed package: the on-demand function is our own
    `feast_defs.derive_columns` with the configured signals, never code stored in
    `registry.db` (which anyone able to write that file could replace, issue 11)."""
    from features.store.definitions import JOIN_KEYS, MOMENT_SIGNALS, derive_columns

    if defs.service.name != service_name:
        raise ValueError(
            f"feature service {service_name!r} is not the package's ({defs.service.name!r}); "
            "serve a model trained on the configured FeatureService (configs/features.yaml)"
        )
    odfvs = {MOMENT_SIGNALS: defs.moment_signals}
    udfs = {MOMENT_SIGNALS: functools.partial(derive_columns, signals_json=signals_json)}
    views = {v.name: v for v in (defs.user_stats, defs.step_stats, defs.session_state)}
    # a view's entity columns are filled in by `apply`; the package knows its join keys
    return _plan(defs.service, odfvs, udfs, views.__getitem__, lambda v: JOIN_KEYS[v.name])


def check_registry_matches(store: FeatureStore, plan: ServicePlan, service_name: str) -> None:
    """Raise ValueError when the registry's FeatureService lists other features than the
    package's plan (the online tables would not hold what the server reads)."""
    registered = store.get_feature_service(service_name)  # a plain proto: no code runs
    names = tuple(f.name for p in registered.feature_view_projections for f in p.features)
    if names != plan.feature_names:
        missing = sorted(set(plan.feature_names) - set(names))
        extra = sorted(set(names) - set(plan.feature_names))
        raise ValueError(
            f"the Feast registry's {service_name!r} differs from the installed package "
            f"(missing {missing or '-'}, extra {extra or '-'}); run `intent features apply`"
        )


class ServiceNotApplied(LookupError):
    """The configured FeatureService is not in the Feast registry (`intent features apply`)."""


def service_frame(
    layout: Layout, cfg: FeatureStoreConfig, decision_points: pd.DataFrame
) -> tuple[pd.DataFrame, FeatureService]:
    """`historical_frame` of `decision_points` through the applied FeatureService, the
    on-demand features derived with the layout's signals config (as the server derives
    them); with the service, whose feature names the callers need."""
    from core.settings import load_config
    from features.config import SignalsConfig

    store = open_store(layout, cfg)
    try:
        service = store.get_feature_service(cfg.feature_service)
    except Exception as exc:  # Feast raises its own not-found types
        raise ServiceNotApplied(
            f"feature service {cfg.feature_service!r} is not in the Feast registry "
            f"({layout.feast}); run `intent features apply` first"
        ) from exc
    signals_json = load_config(SignalsConfig, layout=layout).model_dump_json()
    return historical_frame(store, decision_points, service, signals_json), service


def historical_frame(
    store: FeatureStore,
    decision_points: pd.DataFrame,
    service: FeatureService,
    signals_json: str | None = None,
) -> pd.DataFrame:
    """The point-in-time training frame: one row per decision point, in the input order.

    Every input column passes through (keys, `label`, `oracle_p`, ...) followed by the
    service's features: each stored one is the latest value at or before the row's
    `event_timestamp` within its view's TTL (missing: NaN), the on-demand ones are computed
    at `request_ts` by `resolve_service`'s function (the layout's config when `signals_json`
    is given, as the server computes them).

    Feast does the point-in-time joins, one view at a time on that view's distinct
    (key, timestamp) pairs: its file (Dask) offline store drops - instead of nulling -
    entity rows with no valid row in a view (a user's first session, an expired row), and
    collapses entity rows sharing key and timestamp (feast-dev/feast#6787). Joining the
    results back with a left merge keeps every decision point.
    """
    check_decision_points(decision_points)
    plan = resolve_service(store, service, signals_json)
    produced = {*plan.feature_names, *(f for names in plan.stored.values() for f in names)}
    clashes = sorted(produced & set(decision_points.columns) - set(plan.join_keys.values()))
    if clashes:
        raise ValueError(f"decision points: columns clash with feature names: {clashes}")
    frame = decision_points.reset_index(drop=True)
    frame[_TS] = _ts_key(frame[TIMESTAMP_FIELD])
    for view, features in plan.stored.items():
        key = plan.join_keys[view]
        entities = frame[[key, TIMESTAMP_FIELD, _TS]].drop_duplicates([key, _TS])
        refs = [f"{view}:{name}" for name in features]
        got = store.get_historical_features(
            entity_df=entities[[key, TIMESTAMP_FIELD]], features=refs
        ).to_df()
        got[_TS] = _ts_key(got[TIMESTAMP_FIELD])
        frame = frame.merge(
            got[[key, _TS, *features]], on=[key, _TS], how="left", validate="many_to_one"
        )
    for function, inputs in plan.on_demand:
        columns: dict[str, list] = {name: frame[name].tolist() for name in inputs}
        columns[REQUEST_TS] = frame[REQUEST_TS].tolist()
        for name, values in function(columns).items():
            frame[name] = values
    return frame[[*decision_points.columns, *plan.feature_names]]


def _ts_key(ts: pd.Series) -> pd.Series:
    """Timestamps as one dtype on both sides of a merge (Feast may change the unit)."""
    return pd.to_datetime(ts, utc=True).astype("datetime64[ns, UTC]")


def check_decision_points(frame: pd.DataFrame) -> None:
    """Raise ValueError naming every missing column, null key or non-UTC timestamp."""
    missing = [c for c in DECISION_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"decision points: missing columns: {', '.join(missing)}")
    nulls = {c: int(n) for c, n in frame[list(DECISION_COLUMNS)].isna().sum().items() if n}
    if nulls:
        detail = ", ".join(f"{c} ({n} rows)" for c, n in nulls.items())
        raise ValueError(f"decision points: null values in {detail}")
    ts = frame[TIMESTAMP_FIELD]
    if not isinstance(ts.dtype, pd.DatetimeTZDtype):
        raise ValueError(f"decision points: {TIMESTAMP_FIELD} must be a UTC timestamp column")
    if not pd.api.types.is_float_dtype(frame[REQUEST_TS]):
        raise ValueError(f"decision points: {REQUEST_TS} must be epoch seconds (float)")


def teardown(layout: Layout, cfg: FeatureStoreConfig) -> None:
    """Drop the project's online data (SQLite tables or Redis keys) and its registry entries."""
    store = open_store(layout, cfg)
    store.teardown()
