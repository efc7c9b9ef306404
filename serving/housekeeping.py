"""Periodic upkeep off the request path: decision-log retention.

The log had no retention (542 MB for 359 k decisions in a soak, issue 11). `Housekeeper`
calls a job (`DecisionLog.prune` with the configured retention) on its own thread every
interval; deleted pages are reused by later inserts, so the file stops growing once the
retention window is full.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from serving.log_limit import LimitedLog

log = logging.getLogger(__name__)
_LIMITED = LimitedLog(log)


class Housekeeper:
    """Runs `job(now_epoch)` every `interval_s` seconds on a daemon thread until closed."""

    def __init__(
        self, job: Callable[[float], int], interval_s: float, name: str = "housekeeping"
    ) -> None:
        if interval_s <= 0:
            raise ValueError(f"housekeeping interval must be positive, got {interval_s}")
        self._job = job
        self._interval_s = interval_s
        self.runs = 0
        self.deleted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def run_once(self) -> int:
        deleted = self._job(time.time())
        self.runs += 1
        self.deleted += deleted
        return deleted

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self.run_once()
            except Exception as exc:  # a backend outage: try again next interval
                _LIMITED.warning("housekeeping", "housekeeping failed: %s", type(exc).__name__)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
