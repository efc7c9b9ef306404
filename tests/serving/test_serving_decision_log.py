"""Decision log: durable appends (group commit), frames joinable by decision id, PostgreSQL."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pandas as pd
import pytest
from serving_helpers import decision_row

from serving.decision_log import (
    DecisionLogError,
    SqliteBackend,
    memory_log,
    postgres_log,
    sqlite_log,
    to_json,
)


def _exercise(log) -> None:
    log.append_decision(decision_row("d1", ts=100.0))
    log.append_decision(decision_row("d2", ts=200.0, holdout=1, action="none", arm="holdout"))
    log.append_decision(decision_row("d1", ts=100.0))  # a retried append is ignored
    log.append_outcome("d1", "accepted", 130.0)
    log.append_outcome("d1", "step_completed", 160.0)
    log.append_outcome("d1", "accepted", 131.0)  # the same outcome twice counts once
    decisions, outcomes = log.decisions(), log.outcomes()
    assert list(decisions["decision_id"]) == ["d1", "d2"]
    assert decisions["holdout"].tolist() == [False, True]
    assert str(decisions["ts"].dtype) == "datetime64[ns, UTC]"
    assert decisions["ts"].iloc[1] == pd.Timestamp(200, unit="s", tz="UTC")
    assert sorted(outcomes["outcome"]) == ["accepted", "step_completed"]
    joined = decisions.merge(outcomes, on="decision_id", how="left", suffixes=("", "_outcome"))
    assert len(joined) == 3 and joined["outcome"].isna().sum() == 1
    with pytest.raises(ValueError, match="unknown"):
        log.submit_decision({**decision_row("d3"), "color": "red"})


def test_sqlite_log_round_trip(tmp_path: Path) -> None:
    with sqlite_log(tmp_path / "d.db", synchronous="full", batch_max=16) as log:
        _exercise(log)
        assert log.has_decision("d1") and not log.has_decision("nope")
    con = sqlite3.connect(tmp_path / "d.db")
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_memory_log_round_trip() -> None:
    with memory_log() as log:
        _exercise(log)


def test_postgres_log_round_trip(postgres_dsn: str) -> None:
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    try:
        with postgres_log(postgres_dsn, schema, batch_max=16) as log:
            _exercise(log)
            assert log.has_decision("d2")
        # a second process (another replica) sees the same rows
        with postgres_log(postgres_dsn, schema, batch_max=16) as other:
            assert len(other.decisions()) == 2
    finally:
        with psycopg.connect(postgres_dsn, autocommit=True) as con:
            con.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def test_concurrent_appends_share_commits(tmp_path: Path) -> None:
    backend = SqliteBackend(tmp_path / "d.db", "full")
    writes = []
    original = backend.write

    def counting(decisions, outcomes):
        writes.append(len(decisions))
        original(decisions, outcomes)

    backend.write = counting
    from serving.decision_log import DecisionLog

    log = DecisionLog(backend, batch_max=64)
    threads = [
        threading.Thread(
            target=lambda k=k: [log.append_decision(decision_row(f"{k}-{i}")) for i in range(40)]
        )
        for k in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(log.decisions()) == 320
    assert sum(writes) == 320
    assert len(writes) < 320  # several appends rode on one commit (group commit)
    log.close()


def test_a_failed_write_is_never_acknowledged(tmp_path: Path) -> None:
    with sqlite_log(tmp_path / "d.db", synchronous="full", batch_max=8) as log:
        log.append_decision(decision_row("ok"))
        con = sqlite3.connect(tmp_path / "d.db")
        con.execute("DROP TABLE decisions")
        con.commit()
        con.close()
        with pytest.raises(DecisionLogError, match="no such table"):
            log.append_decision(decision_row("lost"))


CHILD = """
import sys
from serving.decision_log import sqlite_log
sys.path.insert(0, sys.argv[2])
from serving_helpers import decision_row
log = sqlite_log(sys.argv[1], synchronous="full", batch_max=64, checkpoint_interval_s=0.05)
i = 0
while True:
    log.append_decision(decision_row(f"d{i}"))
    print(f"d{i}", flush=True)  # acknowledged only after the commit returned
    i += 1
"""


def test_a_crash_loses_no_acknowledged_write(tmp_path: Path) -> None:
    db = tmp_path / "d.db"
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(db), str(Path(__file__).parent)],
        stdout=subprocess.PIPE,
        text=True,
    )
    acked = []
    try:
        for line in proc.stdout:
            acked.append(line.strip())
            if len(acked) >= 150:
                break
    finally:
        proc.send_signal(signal.SIGKILL)  # no clean shutdown, no flush
        proc.wait()
    assert len(acked) >= 150
    stored = {r[0] for r in sqlite3.connect(db).execute("SELECT decision_id FROM decisions")}
    assert set(acked) <= stored


def test_checkpoints_run_off_the_commit_path(tmp_path: Path) -> None:
    import time

    db = tmp_path / "d.db"
    with sqlite_log(db, synchronous="full", batch_max=8, checkpoint_interval_s=0.05) as log:
        empty = db.stat().st_size
        for i in range(200):
            log.append_decision(decision_row(f"d{i}", signals="x" * 500))
        deadline = time.monotonic() + 5
        while db.stat().st_size <= empty + 100_000 and time.monotonic() < deadline:
            time.sleep(0.05)
        # the checkpointer thread copied the WAL into the database while the log was open
        assert db.stat().st_size > empty + 100_000
        assert len(log.decisions()) == 200


def test_to_json_writes_strict_json() -> None:
    assert to_json({"a": float("nan"), "b": [1.0, float("inf")], "c": "x"}) == (
        '{"a":null,"b":[1.0,null],"c":"x"}'
    )
