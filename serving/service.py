"""The scoring service (BentoML 1.4): `bentoml serve serving.service:IntentService`.

Thin HTTP edge over `serving.engine.DecisionEngine`: validate (400 naming the field), call
the engine, shape the answer. Everything is loaded in `__init__` (model, reader, stores), so
the first request is as fast as the others. Endpoints:

- POST /score, /score_batch: decisions; /events: live session state (+ Feast push);
  /outcome: what happened after a decision; /reload: swap in a newly promoted champion;
  /echo: parses a score request and returns it (the benchmark's framework floor).
- GET /readyz (JSON: model source registry / bundle / rules; degraded still serves),
  /model, /livez, /metrics (BentoML's request metrics plus `serving.metrics`), /docs.

Configured by `configs/serving.yaml` (+ policy, signals, funnel, events) of
`Layout.from_env()`; the optional bearer token comes from the variable `auth.token_env`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import logging
import os
import tempfile
import time
import warnings
from datetime import UTC, datetime
from typing import Any

import bentoml
from bentoml.exceptions import ServiceUnavailable
from starlette.responses import JSONResponse

from features.layout import Layout
from serving.assemble import Configs, build_engine, refresh_model
from serving.decision_log import DecisionLogError
from serving.http import Gateway, GatewayMiddleware
from serving.log_limit import DropHandled, LimitedLog
from serving.metrics import engine_metrics, metrics_text
from serving.readiness import Readiness
from serving.schemas import (
    EventIn,
    EventsResponse,
    ModelInfo,
    OutcomeRequest,
    OutcomeResponse,
    ReloadResponse,
    RequestRules,
    ScoreBatchResponse,
    ScoreRequest,
    ScoreResponse,
    check_events,
    check_score_batch,
    check_score_request,
)
from serving.sessions import LiveEvent

log = logging.getLogger("intent.serving")
_LIMITED = LimitedLog(log)


def user_hash(user_id: str) -> str:
    """What logs may say about a user: a short one-way hash."""
    return hashlib.sha256(user_id.encode()).hexdigest()[:12]


class ClientErrorFilter(logging.Filter):
    """Turns BentoML's traceback for a rejected request into one line naming the fields.

    A client's bad input is not a server error, and the exception text could carry the
    input (user ids, free text); the line keeps only the path and the field locations.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        from pydantic import ValidationError

        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, ValidationError):
            try:
                where = record.getMessage()
                fields = ", ".join(
                    ".".join(str(p) for p in e["loc"]) or "<body>" for e in exc.errors()
                )
            except Exception:  # a log filter must never fail the request
                where, fields = "request", "?"
            record.msg, record.args = "%s: rejected (400), invalid: %s", (where, fields)
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def install_log_filter() -> None:
    http_log = logging.getLogger("bentoml._internal.server.http_app")
    if not any(isinstance(f, ClientErrorFilter) for f in http_log.filters):
        http_log.addFilter(ClientErrorFilter())
    if not any(isinstance(f, DropHandled) for f in http_log.filters):
        http_log.addFilter(DropHandled(ServiceUnavailable))  # logged by us, rate-limited


@bentoml.service(
    name="intent_service",
    traffic={"timeout": 30},
    # Access lines cost ~10 % of a request; enable with BENTOML_CONFIG_OPTIONS=
    # "services.intent_service.logging.access.enabled=true" where a proxy does not log.
    logging={"access": {"enabled": False}},
)
class IntentService:
    """Micro-moment decisions for the trigger dispatcher."""

    def __init__(self) -> None:
        if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
            # In process (`to_asgi()`) BentoML's /metrics still reads a multiprocess folder
            # and fails without one; `bentoml serve` always sets it before we get here.
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="intent-metrics-")
        install_log_filter()
        # BentoML 1.4.40 reads `model_fields` off request instances on every call, which
        # pydantic 2.11+ flags as deprecated: one warning line per request, none of ours.
        warnings.filterwarnings("ignore", message="Accessing the 'model_fields' attribute")
        self.layout = Layout.from_env()
        self.configs = Configs.load(self.layout)
        cfg = self.configs.serving
        self.metrics = engine_metrics()
        self.engine = build_engine(self.layout, self.configs, on_decision=self.metrics.observe)
        self.rules = RequestRules(
            steps=frozenset(self.configs.funnel.steps),
            max_id_length=cfg.limits.max_id_length,
            future_tolerance_s=self.configs.events.future_tolerance_s,
            max_batch=cfg.limits.max_batch,
            max_events=cfg.limits.max_events,
        )
        self.gateway = Gateway(
            os.environ.get(cfg.auth.token_env) or None,
            cfg.auth.public_paths,
            cfg.limits.max_body_bytes,
        )
        self._poller: asyncio.Task | None = None
        self._reload_lock = asyncio.Lock()
        self.ready = Readiness(
            self.engine,
            budget_s=cfg.backends.budgets.probe_ms / 1000.0,
            threads=cfg.backends.budgets.threads,
            online_configured=cfg.features.online_store == "feast",
        )
        rt = self.engine.runtime
        log.info(
            "model source=%s version=%s (%s); online store: %s, read %s",
            rt.source,
            rt.model_version,
            rt.detail,
            rt.reader_detail,
            rt.reader.mode if rt.reader is not None else "-",
        )

    @bentoml.on_startup
    async def start_model_polling(self) -> None:
        if self.configs.serving.model.reload_interval_s > 0:
            self._poller = asyncio.create_task(self._poll_models())

    @bentoml.on_startup
    def freeze_heap(self) -> None:
        """Exempt what start-up loaded from the cyclic GC (`gc.freeze`).

        Feast, MLflow, ONNX Runtime and pandas leave ~400k long-lived objects; every full
        collection walked them all - a ~250 ms stall of the event loop every few thousand
        requests (the max latency of every benchmark run). Frozen, a full collection walks
        only what came after start-up (~25 ms). A model swapped in later is not frozen.
        """
        gc.collect()
        gc.freeze()

    @bentoml.on_shutdown
    async def stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        self.ready.close()
        self.engine.close()
        gc.unfreeze()  # in process (tests) the heap goes back to the collector

    async def _poll_models(self) -> None:
        interval = self.configs.serving.model.reload_interval_s
        while True:
            await asyncio.sleep(interval)
            try:
                await self._refresh()
            except Exception:
                log.exception("model check failed")

    async def _refresh(self) -> bool:
        async with self._reload_lock:
            changed = await asyncio.to_thread(
                refresh_model, self.engine, self.configs.serving, self.layout
            )
        if changed:
            self.metrics.model_reloads.labels(source=self.engine.runtime.source).inc()
        return changed

    # --- decisions ----------------------------------------------------------------------
    @bentoml.api(route="/score", input_spec=ScoreRequest, output_spec=ScoreResponse)
    async def score(self, **fields: Any) -> ScoreResponse:
        """Decide at one micro-moment: score, band, action + content, reasons, caps, arm."""
        now = time.time()
        req = ScoreRequest.model_construct(**fields)
        check_score_request(req, self.rules, now)
        decision = await self._decide(req, now)
        return ScoreResponse.of(decision)

    @bentoml.api(route="/score_batch")
    async def score_batch(self, requests: list[ScoreRequest]) -> ScoreBatchResponse:
        """Several decisions in one call (at most `limits.max_batch`), answered in order."""
        now = time.time()
        check_score_batch(requests, self.rules, now)
        decisions = [await self._decide(req, now) for req in requests]
        return ScoreBatchResponse(decisions=[ScoreResponse.of(d) for d in decisions])

    async def _decide(self, req: ScoreRequest, now: float):
        try:
            decision = await self.engine.decide_async(req.to_engine(now))
        except DecisionLogError as exc:
            _LIMITED.error("decision-log", "decision not logged, not answered: %s", exc)
            raise ServiceUnavailable("decision log unavailable") from exc
        if decision.action.value != "none" and log.isEnabledFor(logging.DEBUG):
            log.debug("trigger %s for user %s", decision.action, user_hash(req.user_id))
        return decision

    @bentoml.api(route="/echo", input_spec=ScoreRequest, output_spec=ScoreRequest)
    async def echo(self, **fields: Any) -> ScoreRequest:
        """Parse a score request and return it: the framework's floor for benchmarks."""
        return ScoreRequest.model_construct(**fields)

    # --- events and outcomes ------------------------------------------------------------
    @bentoml.api(route="/events")
    async def events(self, events: list[EventIn]) -> EventsResponse:  # type: ignore[valid-type]
        """Canonical events: deduplicated by event_id, folded into the live session state."""
        now = time.time()
        check_events(events, self.rules, now)
        live = [
            LiveEvent(
                e.event_id,
                e.session_id,
                e.user_id,
                e.anonymous_id,
                e.ts.timestamp(),
                str(e.type),
                e.step,
                e.target,
                e.value,
            )
            for e in events
        ]
        sessions = self.engine.sessions
        result = await asyncio.to_thread(sessions.apply, live)
        if result.late:
            late_ids = {e.event_id for e in result.late}
            await asyncio.to_thread(
                self._quarantine_late, [e for e in events if e.event_id in late_ids]
            )
        pushed = await self._push(result.touched)
        for name, n in (
            ("accepted", len(result.accepted)),
            ("duplicate", len(result.duplicates)),
            ("late", len(result.late)),
        ):
            if n:
                self.metrics.events.labels(result=name).inc(n)
        return EventsResponse(
            accepted=len(result.accepted),
            duplicates=result.duplicates,
            late=[e.event_id for e in result.late],
            sessions=sorted(result.touched),
            pushed=pushed,
        )

    def _quarantine_late(self, events: list[Any]) -> None:
        import numpy as np
        import pyarrow as pa

        from features.event_store import write_quarantine
        from features.events import EVENT_SCHEMA, event_to_row
        from features.validate import quarantine_rows

        table = pa.Table.from_pylist([event_to_row(e) for e in events], schema=EVENT_SCHEMA)
        n = table.num_rows
        rows = quarantine_rows(
            table,
            np.arange(n),
            pa.array(["late_event"] * n),
            pa.array(["api:/events"] * n),
        )
        write_quarantine(self.layout, rows, "api-events")

    async def _push(self, touched: dict[str, tuple[dict[str, float], float]]) -> bool | None:
        reader = self.engine.runtime.reader
        if reader is None or not reader.can_push:
            return None
        if not touched:
            return True

        def push_all() -> None:
            for sid, (snap, ts) in touched.items():
                reader.push_session(sid, snap, datetime.fromtimestamp(ts, UTC))

        try:
            await asyncio.to_thread(push_all)
        except Exception as exc:
            log.warning("session push to the online store failed: %s", type(exc).__name__)
            return False
        return True

    @bentoml.api(route="/outcome", input_spec=OutcomeRequest, output_spec=OutcomeResponse)
    async def outcome(self, **fields: Any) -> OutcomeResponse:
        """What happened after a decision: accepted, dismissed, step_completed, abandoned."""
        req = OutcomeRequest.model_construct(**fields)
        now = req.ts.timestamp() if req.ts is not None else time.time()
        if len(req.decision_id) > self.rules.max_id_length:
            return _error(400, "decision_id", "too long")
        try:
            recorded = await self.engine.record_outcome_async(req.decision_id, req.outcome, now)
        except DecisionLogError as exc:
            _LIMITED.error("decision-log", "outcome not recorded: %s", exc)
            raise ServiceUnavailable("decision log unavailable") from exc
        if not recorded:
            return _error(404, "decision_id", "unknown decision id")
        return OutcomeResponse(decision_id=req.decision_id, outcome=req.outcome, recorded=True)

    # --- the model ----------------------------------------------------------------------
    @bentoml.api(route="/reload")
    async def reload(self) -> ReloadResponse:
        """Check the registry now and swap in a newly promoted champion (no restart)."""
        changed = await self._refresh()
        return ReloadResponse(changed=changed, model=self.model_info())

    def __metrics__(self, content: str) -> str:
        return metrics_text(content)

    def model_info(self) -> ModelInfo:
        rt = self.engine.runtime
        m = rt.bundle.manifest if rt.bundle is not None else None
        return ModelInfo(
            source=rt.source,
            detail=rt.detail,
            model_version=m.model_version if m else None,
            model_name=m.model_name if m else None,
            run_id=m.run_id if m else None,
            feature_service=m.feature_service if m else None,
            metrics=m.metrics if m else {},
            thresholds=m.thresholds if m else {},
            training_window=m.training_window.model_dump(mode="json") if m else None,
            features=len(m.features) if m else 0,
            online_store=rt.reader_detail,
        )

    def readiness(self) -> tuple[int, dict[str, Any]]:
        """Each dependency's health (serving.readiness); public detail only."""
        return self.ready.report()

    async def readiness_async(self) -> tuple[int, dict[str, Any]]:
        return await self.ready.report_async()


def _error(status: int, field: str, message: str) -> JSONResponse:
    return JSONResponse(
        {"error": f"{field}: {message}", "detail": [{"loc": [field], "msg": message}]},
        status_code=status,
    )


IntentService.add_asgi_middleware(GatewayMiddleware)
