"""One probe per dependency: data in (the engine's parts), a `Health` out.

Probes call the backends (blocking); `serving.readiness` runs them off the event loop in
parallel, each within `budgets.probe_ms`. Public reasons are fixed codes; exception text
and paths stay in `detail` (the log).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from serving.health import Health, Status

Probe = Callable[[], Health]


def _reason(exc: BaseException) -> str:
    """A public reason code for a probe failure."""
    name = type(exc).__name__
    if isinstance(exc, FileNotFoundError) or "Missing" in name or "Gone" in name:
        return "missing"
    if isinstance(exc, TimeoutError) or "Timeout" in name:
        return "timeout"
    if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
        return "locked"
    return "unreachable"


def guarded(component: str, check: Callable[[], None]) -> Probe:
    """A probe that is OK when `check()` returns and DOWN (with a reason code) when it raises."""

    def probe() -> Health:
        try:
            check()
        except Exception as exc:
            return Health(component, Status.DOWN, _reason(exc), f"{type(exc).__name__}: {exc}")
        return Health(component, Status.OK)

    return probe


def model_health(runtime: Any) -> Health:
    """The registry champion is OK; a local bundle or the rules alone are degraded."""
    if runtime.source == "registry":
        return Health("model", Status.OK)
    reason = "bundle_fallback" if runtime.source == "bundle" else "rules_only"
    return Health("model", Status.DEGRADED, reason, runtime.detail)


def online_store_probe(runtime: Any, configured: bool) -> Probe:
    """The online store the runtime reads: missing reader = down when one is configured."""
    reader = runtime.reader
    if reader is None:
        if not configured:
            return lambda: Health("online_store", Status.OK, "not_configured")
        return lambda: Health("online_store", Status.DOWN, "unavailable", runtime.reader_detail)
    return guarded("online_store", reader.check)


def sqlite_file_check(path: Path, timeout_s: float) -> Callable[[], None]:
    """The file exists and answers a read within `timeout_s` (a lock held elsewhere fails)."""

    def check() -> None:
        if not Path(path).is_file():  # deleted under the server: it writes to a lost inode
            raise FileNotFoundError(f"{path} is missing")
        uri = Path(path).resolve().as_uri() + "?mode=ro"
        con = sqlite3.connect(uri, uri=True, timeout=timeout_s)
        try:
            con.execute("SELECT count(*) FROM sqlite_master").fetchone()
        finally:
            con.close()

    return check


def store_probe(component: str, store: Any, timeout_s: float) -> Probe:
    """Caps / decision log / sessions: a SQLite file, or a server with `ping()`."""
    path = getattr(store, "path", None) or getattr(getattr(store, "_backend", None), "path", None)
    if path is not None:
        return guarded(component, sqlite_file_check(path, timeout_s))
    ping = getattr(store, "ping", None)
    if ping is not None:
        return guarded(component, ping)
    return lambda: Health(component, Status.OK, "in_memory")
