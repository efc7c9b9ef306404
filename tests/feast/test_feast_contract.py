"""Definitions follow the feature-table contract; mistakes are named, not guessed around."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.settings import ConfigError, load_config, parse_config
from features.signals import SNAPSHOT_COUNTERS, SNAPSHOT_FIELDS
from features.store.config import FeatureStoreConfig, OnlineBackend
from features.store.definitions import (
    SESSION_STATE,
    STEP_STATS,
    USER_STATS,
    FeatureTableError,
    check_tables,
    contract_schemas,
    table_path,
    view_columns,
)
from features.store.repo import apply, materialize, open_store

TS = pa.timestamp("us", tz="UTC")


def test_view_columns_serve_everything_but_keys_and_clocks(layout) -> None:
    schemas = contract_schemas(layout)
    users = view_columns(USER_STATS, schemas[USER_STATS])
    stored = dict(users.stored)
    assert stored["user_device"] == "String" and stored["user_sessions_30d"] == "Int64"
    assert "user_first_seen_at" in stored and "user_first_seen_at" not in users.served
    assert "user_id" not in stored and "event_timestamp" not in stored
    session = view_columns(SESSION_STATE, schemas[SESSION_STATE])
    assert [n for n, _ in session.stored] == list(SNAPSHOT_FIELDS)
    assert session.served == SNAPSHOT_COUNTERS


def test_view_columns_name_every_problem() -> None:
    base = [pa.field("step", pa.string()), pa.field("event_timestamp", TS)]
    with pytest.raises(FeatureTableError, match="missing columns: step_typical_pause_s"):
        view_columns(STEP_STATS, pa.schema(base))
    typical = pa.field("step_typical_pause_s", pa.float64())
    bad = pa.schema([*base, typical, pa.field("dropoff", pa.float64())])
    with pytest.raises(FeatureTableError, match="must start with 'step_': dropoff"):
        view_columns(STEP_STATS, bad)
    naive = pa.schema(
        [pa.field("step", pa.string()), pa.field("event_timestamp", pa.timestamp("us")), typical]
    )
    with pytest.raises(FeatureTableError, match="UTC timestamp"):
        view_columns(STEP_STATS, naive)
    listy = pa.schema([*base, typical, pa.field("step_hist", pa.list_(pa.int64()))])
    with pytest.raises(FeatureTableError, match="step_hist has unsupported type"):
        view_columns(STEP_STATS, listy)


def test_tables_that_drift_from_the_contract_stop_apply(layout) -> None:
    cfg = load_config(FeatureStoreConfig, layout=layout)
    layout.features.mkdir(parents=True)
    wrong = pa.table(
        {
            "step": ["welcome"],
            "event_timestamp": pa.array([0], TS),
            "step_dropoff_rate": pa.array([1], pa.int64()),
        }
    )
    pq.write_table(wrong, table_path(layout, STEP_STATS))
    with pytest.raises(FeatureTableError) as err:
        check_tables(layout, contract_schemas(layout))
    message = str(err.value)
    assert "step_stats.parquet" in message
    assert "missing step_typical_pause_s" in message
    assert "step_dropoff_rate is int64, expected double" in message
    with pytest.raises(FeatureTableError):
        apply(layout, cfg)


def test_apply_works_before_the_first_build_and_materialize_says_what_is_missing(layout) -> None:
    cfg = load_config(FeatureStoreConfig, layout=layout)
    apply(layout, cfg)
    assert open_store(layout, cfg).get_feature_service(cfg.feature_service) is not None
    with pytest.raises(FeatureTableError, match="intent features build"):
        materialize(layout, cfg)


def test_config_rejects_unknown_backend_and_bad_names(layout) -> None:
    raw = load_config(FeatureStoreConfig, layout=layout).model_dump(mode="json")
    with pytest.raises(ConfigError, match=r"online_store\.backend"):
        parse_config(
            FeatureStoreConfig, raw | {"online_store": raw["online_store"] | {"backend": "mongo"}}
        )
    with pytest.raises(ConfigError, match="feature_service"):
        parse_config(FeatureStoreConfig, raw | {"feature_service": "model v1"})
    with pytest.raises(ConfigError, match=r"ttl\.user_stats_days"):
        parse_config(FeatureStoreConfig, raw | {"ttl": raw["ttl"] | {"user_stats_days": 0}})
    with pytest.raises(ConfigError, match="unknown key"):
        parse_config(FeatureStoreConfig, raw | {"feature_servce": "x"})


def test_override_validates_and_keeps_the_rest(layout) -> None:
    cfg = load_config(FeatureStoreConfig, layout=layout)
    redis = cfg.override(project="other", backend="redis")
    assert redis.online_store.backend is OnlineBackend.REDIS and redis.project == "other"
    assert redis.ttl == cfg.ttl and cfg.online_store.backend is OnlineBackend.SQLITE
    with pytest.raises(Exception, match="backend"):
        cfg.override(backend="mongo")
