"""Rate-limited log lines: an outage logs a few lines, not one per request.

During a PostgreSQL outage every /score answered 503 and logged ~31 lines (issue 11): at a few
hundred requests a second the log buried everything else and cost disk and CPU. `LimitedLog`
lets through at most `burst` lines per key and window of `window_s` (fixed windows, so any
stretch of `window_s` seconds has at most 2 x `burst`), then one summary line saying how
many were suppressed when the window ends.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable


class LimitedLog:
    """At most `burst` lines per key per `window_s` seconds on `logger`."""

    def __init__(
        self,
        logger: logging.Logger,
        *,
        burst: int = 3,
        window_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if burst < 1 or window_s <= 0:
            raise ValueError(f"burst must be >= 1 and window_s > 0, got {burst}, {window_s}")
        self.logger = logger
        self.burst = burst
        self.window_s = window_s
        self._clock = clock
        self._lock = threading.Lock()
        self._windows: dict[str, tuple[float, int, int]] = {}  # key -> (start, sent, dropped)

    def log(self, level: int, key: str, msg: str, *args: object) -> bool:
        """Log unless `key` already used its burst in this window; True when logged."""
        now = self._clock()
        with self._lock:
            start, sent, dropped = self._windows.get(key, (now, 0, 0))
            summary = None
            if now - start >= self.window_s:
                if dropped:
                    summary = dropped
                start, sent, dropped = now, 0, 0
            allowed = sent < self.burst
            self._windows[key] = (start, sent + allowed, dropped + (not allowed))
        if summary:
            self.logger.log(level, "%s: %d similar lines suppressed", key, summary)
        if allowed:
            self.logger.log(level, msg, *args)
        return allowed

    def warning(self, key: str, msg: str, *args: object) -> bool:
        return self.log(logging.WARNING, key, msg, *args)

    def error(self, key: str, msg: str, *args: object) -> bool:
        return self.log(logging.ERROR, key, msg, *args)


class DropHandled(logging.Filter):
    """Drops a framework's traceback for an exception the service already logged (limited).

    BentoML logs "Exception on /score [POST]" with a full traceback for every 503 it turns
    `ServiceUnavailable` into; during an outage that was ~31 lines per request.
    """

    def __init__(self, *types: type[BaseException]) -> None:
        super().__init__()
        self.types = types

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, self.types)
