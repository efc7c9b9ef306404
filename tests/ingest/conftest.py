"""Fixtures of the ingestion tests."""

from __future__ import annotations

import pytest
from ingest_factory import REPO

from features.config import EventsConfig
from features.settings import load_config


@pytest.fixture(scope="session")
def events_cfg() -> EventsConfig:
    """The shipped configs/events.yaml."""
    return load_config(EventsConfig, REPO / "configs" / "events.yaml")
