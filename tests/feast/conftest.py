"""Feast fixtures: stores on hand-made tables (see feast_tables.py), Redis projects per test."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from urllib.parse import urlparse

import pytest
from feast_tables import REPO, REPO_CONFIGS, World, at, forget_definitions, write_tables

from core.layout import Layout
from core.settings import load_config
from features.store.config import FeatureStoreConfig, OnlineBackend


@pytest.fixture
def feast_cfg(layout: Layout) -> FeatureStoreConfig:
    return load_config(FeatureStoreConfig, layout=layout)


@pytest.fixture
def world(layout: Layout) -> World:
    return write_tables(layout)


@pytest.fixture(scope="module")
def sqlite_store(tmp_path_factory: pytest.TempPathFactory):
    """One applied + materialized SQLite store per test module (read-only tests share it)."""
    from features.store.repo import apply, materialize, open_store

    layout = Layout.under(tmp_path_factory.mktemp("feast"), configs=REPO_CONFIGS).ensure()
    world = write_tables(layout)
    cfg = load_config(FeatureStoreConfig, layout=layout)
    apply(layout, cfg)
    materialize(layout, cfg, end=at(600))
    return layout, cfg, world, open_store(layout, cfg)


@pytest.fixture
def redis_cfg(redis_url: str, feast_cfg: FeatureStoreConfig) -> Iterator[FeatureStoreConfig]:
    """The Redis backend under a project unique to this test; its keys are removed after."""
    import redis

    url = urlparse(redis_url)
    project = f"t{uuid.uuid4().hex[:12]}"
    cfg = feast_cfg.override(
        project=project,
        backend=OnlineBackend.REDIS,
        redis_connection_string=f"{url.hostname}:{url.port},db={url.path.lstrip('/') or 0}",
    )
    yield cfg
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(match=f"*{project}*"):
        client.delete(key)


@pytest.fixture
def repo_copy(layout, monkeypatch):
    """The repo folder inside a temporary checkout, so its relative paths land in `layout`."""
    target = layout.root / "features" / "feature_repo"
    shutil.copytree(REPO, target)
    monkeypatch.setenv("INTENT_HOME", str(layout.root))
    monkeypatch.setenv("INTENT_CONFIGS", str(REPO_CONFIGS))
    forget_definitions()
    yield target
    forget_definitions()
