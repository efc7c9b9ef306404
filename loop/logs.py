"""Where a decision log is read from: the server's configured backend or a SQLite file.

The report and the export only read; a file that does not exist is an error (opening it
would create an empty log and report nothing, silently).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from core.layout import Layout
from serving.config import PostgresLog, ServingConfig, SqliteLog
from serving.decision_log import DecisionLog, sqlite_log


class LogSourceError(ValueError):
    """No decision log where one was expected, or it cannot be read."""


def describe(cfg: ServingConfig, layout: Layout, path: Path | None) -> str:
    if path is not None:
        return str(path)
    store = cfg.backends.decision_log
    if isinstance(store, SqliteLog):
        return str(layout.serving / store.file)
    if isinstance(store, PostgresLog):
        return f"postgres schema {store.schema_name}"
    return "memory"


def open_decision_log(cfg: ServingConfig, layout: Layout, path: Path | None) -> DecisionLog:
    """The log at `path` (SQLite), else the one serving.yaml configures."""
    from serving.assemble import open_log

    if path is not None:
        if not path.is_file():
            raise LogSourceError(f"no decision log at {path}")
        return sqlite_log(path, synchronous="normal", batch_max=1)
    store = cfg.backends.decision_log
    if isinstance(store, SqliteLog) and not (layout.serving / store.file).is_file():
        raise LogSourceError(
            f"no decision log yet at {layout.serving / store.file}: the server writes it "
            "(`intent serve`); or pass --log FILE (e.g. one kept by `intent evaluate-policy`)"
        )
    if not isinstance(store, SqliteLog | PostgresLog):
        raise LogSourceError("serving.yaml keeps the decision log in memory: nothing to read")
    try:
        return open_log(cfg.backends, layout)
    except Exception as exc:  # a server that is down surfaces as many driver errors
        raise LogSourceError(f"cannot open the decision log: {type(exc).__name__}: {exc}") from exc


def read_log(log: DecisionLog) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(decisions, outcomes) of a log; closes it."""
    try:
        return log.decisions(), log.outcomes()
    finally:
        log.close()


def read_log_file(path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(decisions, outcomes) of the SQLite decision log at `path` (offline readers: policy
    learning, reports), without the caller knowing the serving package's log classes."""
    return read_log(sqlite_log(Path(path), synchronous="normal", batch_max=1))
