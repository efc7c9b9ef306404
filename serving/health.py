"""Dependency health: what /readyz reports, with a public view that leaks nothing.

Each dependency (model, online store, caps, decision log, sessions) gets a `Health`: a
status, a short public reason code (`missing`, `unreachable`, `timeout`, ...) and an internal
detail (exception text, paths) that only goes to the log. `HealthBoard` keeps what the
server learns as it runs (a refused hot reload), `summarize` turns the probes into the
/readyz answer.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum


class Status(StrEnum):
    OK = "ok"
    DEGRADED = "degraded"  # still serving, not as intended (bundle fallback, rules only)
    DOWN = "down"


# Dependencies without which no decision can be answered (a 503 from /readyz).
CRITICAL = frozenset({"decision_log"})


@dataclass(frozen=True)
class Health:
    component: str
    status: Status
    reason: str = "ok"  # public: a fixed code, never a path or exception text
    detail: str = ""  # internal: for the log only
    checked_at: float = field(default_factory=time.time)

    def public(self) -> dict[str, str]:
        return {"status": str(self.status), "reason": self.reason}


class HealthBoard:
    """Health learned outside the probes (e.g. a refused hot reload), thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._notes: dict[str, Health] = {}

    def note(self, component: str, status: Status, reason: str, detail: str = "") -> None:
        with self._lock:
            self._notes[component] = Health(component, status, reason, detail)

    def clear(self, component: str) -> None:
        with self._lock:
            self._notes.pop(component, None)

    def notes(self) -> list[Health]:
        with self._lock:
            return list(self._notes.values())


def worst(a: Status, b: Status) -> Status:
    order = [Status.OK, Status.DEGRADED, Status.DOWN]
    return max(a, b, key=order.index)


def summarize(healths: Iterable[Health]) -> tuple[int, dict[str, object]]:
    """(HTTP status, public body): 503 only when a critical dependency is down; any other
    problem is `degraded` (the server still answers, e.g. with the rules)."""
    merged: dict[str, Health] = {}
    for h in healths:
        old = merged.get(h.component)
        if old is None or worst(old.status, h.status) != old.status:
            merged[h.component] = h
    down = sorted(c for c, h in merged.items() if h.status == Status.DOWN and c in CRITICAL)
    degraded = any(h.status != Status.OK for h in merged.values())
    status = "unavailable" if down else "ready"  # ready = answering; `degraded` says how well
    body: dict[str, object] = {
        "status": status,
        "degraded": degraded,
        "dependencies": {c: merged[c].public() for c in sorted(merged)},
    }
    return (503 if down else 200), body
