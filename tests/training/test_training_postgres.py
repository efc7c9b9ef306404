"""Tracking and registry on the local PostgreSQL (database `test`, a schema per test run)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from core.registry import ModelSourceConfig, choose_model
from training.promote import promote
from training.run import record_training
from training.tracking import aliases, session, tracking_uri

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture
def postgres_url(postgres_dsn: str) -> Iterator[str]:
    """A SQLAlchemy URL whose tables live in a fresh schema, dropped afterwards."""
    import psycopg

    schema = f"mlflow_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    host_and_db = postgres_dsn.split("://", 1)[1]
    yield f"postgresql+psycopg://{host_and_db}?options=-csearch_path%3D{schema}"
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


def test_runs_registry_and_aliases_live_in_postgres(
    pipeline, fitted, store_layout, postgres_url, postgres_dsn
) -> None:
    import psycopg

    cfg = pipeline.configs.training.override(
        tracking={"backend": "postgres", "postgres_url": postgres_url}
    )
    assert tracking_uri(store_layout, cfg.tracking) == postgres_url
    outcome = record_training(store_layout, cfg, fitted, pipeline.data, run_name="pg")
    result = promote(store_layout, cfg)
    assert outcome.version == "1" and result.promoted and result.champion_after == "1"
    assert not (store_layout.mlruns / "mlflow.db").exists()  # nothing went to sqlite
    with session(postgres_url) as client:
        assert aliases(client, "intent-scorer") == {"champion": "1"}
        run = client.get_run(outcome.run_id)
        assert run.data.metrics["test_roc_auc"] == pytest.approx(outcome.metrics["test_roc_auc"])
    schema = postgres_url.rsplit("%3D", 1)[1]
    with psycopg.connect(postgres_dsn) as conn:
        (count,) = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = %s", (schema,)
        ).fetchone()
        (aliased,) = conn.execute(
            f"SELECT count(*) FROM {schema}.registered_model_aliases"
        ).fetchone()
    assert count > 10 and aliased == 1
    # the server finds the champion through the same store
    source = ModelSourceConfig(
        registered_model="intent-scorer",
        alias="champion",
        tracking_uri=postgres_url,
        reload_interval_s=0,
    )
    choice = choose_model(source, store_layout)
    assert choice.source == "registry" and choice.version == "1"
