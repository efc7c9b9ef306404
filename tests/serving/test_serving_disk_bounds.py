"""Disk stays bounded under sustained load: WAL truncation and decision-log retention.

Issue 11: in a 3-minute soak the decision-log WAL reached 1.33 GB and the caps WAL 474 MB
(the periodic PASSIVE checkpoint never rewinds a WAL that is always in use), and the log had
no retention. Four writer threads and a reader run here against real SQLite files.
"""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

import pytest
from serving_helpers import decision_row

from core.policy_config import CapsConfig
from core.vocabulary import ActionType
from serving.caps import CapRequest, SqliteCapStore
from serving.decision_log import sqlite_log
from serving.housekeeping import Housekeeper
from serving.sqlite_wal import wal_file

WAL_LIMIT_MB = 1.0
# The checkpointer looks every CHECKPOINT_S; between two looks the writers add a few MB on
# a fast machine, so the bound asserted is a multiple of the limit. Unlimited, the same load
# writes ~16 KB of WAL per decision: far past it.
CHECKPOINT_S = 0.05
OVERSHOOT = 8
DECISIONS = 6000
WRITERS = 4


class WalWatch:
    """Samples a WAL file's size on a thread; `worst` is the largest seen."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.worst = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(FileNotFoundError):
                self.worst = max(self.worst, self.path.stat().st_size)
            time.sleep(0.002)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.worst


def _load(work, threads: int, *, reader=None) -> None:
    stop = threading.Event()

    def read_loop() -> None:
        while not stop.is_set():
            reader()

    side = [threading.Thread(target=read_loop)] if reader is not None else []
    workers = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for t in [*side, *workers]:
        t.start()
    for t in workers:
        t.join()
    stop.set()
    for t in side:
        t.join()


@pytest.mark.parametrize("limit_mb", [None, WAL_LIMIT_MB], ids=["unlimited", "limited"])
def test_decision_log_wal_stays_bounded_under_sustained_load(tmp_path, limit_mb) -> None:
    path = tmp_path / "decisions.db"
    log = sqlite_log(
        path,
        synchronous="normal",
        batch_max=64,
        checkpoint_interval_s=CHECKPOINT_S,
        wal_limit_mb=limit_mb,
    )
    watch = WalWatch(wal_file(path))
    reasons = "[" + ",".join(['"a reason of some length"'] * 20) + "]"

    def write(k: int) -> None:
        for i in range(DECISIONS // WRITERS):
            log.append_decision(decision_row(f"{k}-{i}", reasons=reasons))

    _load(write, WRITERS, reader=lambda: log.has_decision("nope"))
    worst_mb = watch.stop() / 2**20
    assert len(log.decisions()) == DECISIONS
    log.close()
    bound = OVERSHOOT * WAL_LIMIT_MB
    print(f"measured: decision-log WAL limit {limit_mb} MB -> worst {worst_mb:.1f} MB")
    if limit_mb is None:
        assert worst_mb > bound, "the load is too light to show the unbounded WAL"
    else:
        assert worst_mb < bound, f"WAL reached {worst_mb:.1f} MB (limit {limit_mb} MB)"


# Cap checks commit without an fsync (synchronous=normal): here ~20k/s, so between two looks
# of the checkpointer the WAL gains far more than the decision log's; the server does a few
# hundred per second. The bound is wider, the unlimited WAL still far past it.
CAPS_OVERSHOOT = 32


@pytest.mark.parametrize("limit_mb", [None, WAL_LIMIT_MB], ids=["unlimited", "limited"])
def test_caps_wal_stays_bounded_under_sustained_load(tmp_path, limit_mb) -> None:
    path = tmp_path / "caps.db"
    cfg = CapsConfig(
        max_per_day=1000, max_per_episode=1000, cooldown_s=0, default_tz="UTC", actions={}
    )
    caps = SqliteCapStore(path, cfg, CHECKPOINT_S, wal_limit_mb=limit_mb)
    watch = WalWatch(wal_file(path))

    def acquire(k: int) -> None:
        for i in range(DECISIONS // WRITERS):
            req = CapRequest(f"u{k}-{i}", "s", f"e{i}", ActionType.GUIDE, 1.741e9 + i, "UTC")
            assert caps.acquire(req).allowed

    _load(acquire, WRITERS * 2)
    worst_mb = watch.stop() / 2**20
    caps.close()
    bound = CAPS_OVERSHOOT * WAL_LIMIT_MB
    print(f"measured: caps WAL limit {limit_mb} MB -> worst {worst_mb:.1f} MB")
    if limit_mb is None:
        assert worst_mb > bound, "the load is too light to show the unbounded WAL"
    else:
        assert worst_mb < bound, f"caps WAL reached {worst_mb:.1f} MB (limit {limit_mb} MB)"


def test_retention_deletes_old_decisions_and_outcomes_only(tmp_path) -> None:
    log = sqlite_log(tmp_path / "d.db", synchronous="normal", batch_max=64)
    now = time.time()
    ages_days = [0.5, 10, 89, 91, 400]
    for i, age in enumerate(ages_days):
        log.append_decision(decision_row(f"d{i}", ts=now - age * 86_400))
        log.append_outcome(f"d{i}", "accepted", now - age * 86_400)
    deleted = log.prune(now - 90 * 86_400)
    kept = sorted(log.decisions()["decision_id"])
    assert kept == [f"d{i}" for i, age in enumerate(ages_days) if age < 90]
    assert sorted(log.outcomes()["decision_id"]) == kept
    assert deleted == 2 * sum(age >= 90 for age in ages_days)
    log.close()


def test_retention_runs_on_its_own_and_bounds_the_file(tmp_path) -> None:
    """Rows keep arriving; with retention the file stops growing once the window is full."""
    path = tmp_path / "d.db"
    clock = {"now": 1_741_000_000.0}
    retention_s = 100.0
    log = sqlite_log(path, synchronous="normal", batch_max=256)
    keeper = Housekeeper(lambda _: log.prune(clock["now"] - retention_s), 3600.0)
    sizes = []
    for _ in range(12):  # 12 windows of 100 s, 1 row per second
        for i in range(100):
            clock["now"] += 1
            log.append_decision(decision_row(f"{clock['now']}-{i}", ts=clock["now"]))
        keeper.run_once()
        sizes.append(path.stat().st_size + wal_file(path).stat().st_size)
    keeper.close()
    assert len(log.decisions()) <= retention_s + 1
    assert max(sizes[6:]) <= 1.5 * max(sizes[:6]), sizes  # flat after the window filled
    log.close()


def test_open_log_takes_retention_and_wal_limit_from_serving_yaml(tmp_path) -> None:
    from serving_helpers import tmp_layout

    from serving.assemble import Configs, open_log

    layout = tmp_layout(tmp_path)
    backends = Configs.load(layout).serving.backends
    served = open_log(backends, layout, housekeeping=True)
    report = open_log(backends, layout)  # `intent report` reads, never prunes
    try:
        assert served._housekeeper is not None and report._housekeeper is None
        assert served._backend._wal_limit_mb == backends.decision_log.wal_limit_mb
    finally:
        served.close()
        report.close()
