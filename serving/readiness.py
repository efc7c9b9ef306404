"""/readyz: every dependency probed in parallel off the event loop, within a budget.

`Readiness.report_async()` (and `report()` for a synchronous caller) returns the HTTP status
and the public body: overall status, model source and version, and per dependency a status
and a reason code. Nothing in the body is a path or exception text (the endpoint is public);
problems are logged with their detail, rate-limited.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from typing import Any

from serving.health import Health, Status, summarize
from serving.health_probes import Probe, model_health, online_store_probe, store_probe
from serving.log_limit import LimitedLog
from serving.offloop import OffLoop

log = logging.getLogger(__name__)
_LIMITED = LimitedLog(log)


class Readiness:
    """Probes the engine's dependencies; `budget_s` bounds the whole report."""

    def __init__(self, engine: Any, *, budget_s: float, threads: int, online_configured: bool):
        self.engine = engine
        self.budget_s = budget_s
        self.online_configured = online_configured
        self._pool = OffLoop(threads, "readiness")

    def probes(self) -> list[tuple[str, Probe]]:
        e = self.engine
        probes = [
            ("online_store", online_store_probe(e.runtime, self.online_configured)),
            ("caps", store_probe("caps", e.caps, self.budget_s)),
            ("decision_log", store_probe("decision_log", e.log, self.budget_s)),
        ]
        if e.sessions is not None:
            probes.append(("sessions", store_probe("sessions", e.sessions, self.budget_s)))
        return probes

    def _collect(self, futures: list[concurrent.futures.Future], names: tuple) -> list[Health]:
        out = []
        for future, name in zip(futures, names, strict=True):
            if future.done() and not future.cancelled():
                out.append(future.result())
            else:
                future.cancel()
                out.append(Health(name, Status.DOWN, "timeout", "probe overran its budget"))
        return out

    def _finish(self, healths: list[Health]) -> tuple[int, dict[str, Any]]:
        rt = self.engine.runtime
        healths = [model_health(rt), *healths, *self.engine.health.notes()]
        for h in healths:
            if h.status != Status.OK and h.detail:
                _LIMITED.warning(
                    f"readyz-{h.component}", "%s %s: %s", h.component, h.status, h.detail
                )
        status, body = summarize(healths)
        body["model_source"] = rt.source
        body["model_version"] = rt.model_version
        return status, body

    async def report_async(self) -> tuple[int, dict[str, Any]]:
        names, probes = zip(*self.probes(), strict=True)
        futures = [self._pool.submit(p) for p in probes]
        await asyncio.wait([asyncio.wrap_future(f) for f in futures], timeout=self.budget_s)
        return self._finish(self._collect(futures, names))

    def report(self) -> tuple[int, dict[str, Any]]:
        names, probes = zip(*self.probes(), strict=True)
        futures = [self._pool.submit(p) for p in probes]
        concurrent.futures.wait(futures, timeout=self.budget_s)
        return self._finish(self._collect(futures, names))

    def close(self) -> None:
        self._pool.close()
