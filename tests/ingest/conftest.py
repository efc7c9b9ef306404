"""Fixtures of the ingestion tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from ingest_factory import ECOMMERCE_CONFIGS, REPO

from core.layout import Layout
from core.settings import load_config
from features.config import EventsConfig


@pytest.fixture(scope="session")
def events_cfg() -> EventsConfig:
    """The shipped configs/events.yaml."""
    return load_config(EventsConfig, REPO / "configs" / "events.yaml")


@pytest.fixture
def shop_layout(tmp_path: Path) -> Layout:
    """A layout under tmp_path with the e-commerce funnel overlaid on the repo's configs."""
    return Layout.under(tmp_path, configs=ECOMMERCE_CONFIGS).ensure()
