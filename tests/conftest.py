"""Shared fixtures: every test writes into its own temporary layout, never into the repo."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from core.layout import Layout

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    """A layout under tmp_path that reads the repo's configs."""
    return Layout.under(tmp_path, configs=REPO_ROOT / "configs").ensure()


def server_listening(host: str, port: int) -> bool:
    """True when something accepts TCP connections at host:port."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The local Redis; skips with a clear message when it is not running."""
    if not server_listening("127.0.0.1", 6379):
        pytest.skip("Redis is not running at 127.0.0.1:6379")
    return "redis://127.0.0.1:6379/0"


@pytest.fixture(scope="session")
def postgres_dsn() -> str:
    """The local PostgreSQL (trust auth, database `test`); skips when it is not running."""
    if not server_listening("127.0.0.1", 5432):
        pytest.skip("PostgreSQL is not running at 127.0.0.1:5432")
    return "postgresql://postgres@127.0.0.1:5432/test"
