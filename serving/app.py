"""The scoring HTTP API as one ASGI application (FastAPI), whoever serves it.

BentoML mounts it (`serving.service:IntentService`, the design's server) and
`intent serve --server uvicorn` runs it bare (`serving.app_bare`) for more headroom: the
routes, their OpenAPI, auth, size limits and error shapes are the same code in both.

- POST /score, /score_batch: decisions; /events: live session state (each invalid event is
  rejected on its own and quarantined, the valid ones are applied); /outcome: what happened
  after a decision; /reload: swap in a newly promoted champion; /echo: parses a score request
  and returns it (the benchmark's framework floor).
- GET /readyz (JSON), /livez, /model, /metrics; OpenAPI at /docs.json, Swagger at /docs.

Bodies are read raw and validated by pydantic-core in one pass (`model_validate_json`):
every bad input is a 400 naming the field (never a 422 or 500), any body that is not JSON a
415 (`serving.http`). The app holds no state of its own: `resolve()` returns the
`ServingState` built at start-up (by BentoML's service or the bare lifespan), None before.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ValidationError

from core.layout import Layout
from serving.decision_log import DecisionLogError
from serving.drift import attach_drift
from serving.http import Gateway, GatewayMiddleware, error_body
from serving.log_limit import LimitedLog
from serving.metrics import EngineMetrics, engine_metrics, metrics_text
from serving.readiness import Readiness
from serving.schemas import (
    EXAMPLE_EVENTS,
    EXAMPLE_OUTCOME,
    EXAMPLE_REQUEST,
    ErrorBody,
    EventsEnvelope,
    EventsRequest,
    EventsResponse,
    FieldProblems,
    LiveOut,
    ModelInfo,
    OutcomeRequest,
    OutcomeResponse,
    ReadyOut,
    ReloadResponse,
    RequestRules,
    ScoreBatchRequest,
    ScoreBatchResponse,
    ScoreRequest,
    ScoreResponse,
    check_age,
    check_score_batch,
    check_score_request,
    split_events,
)
from serving.sessions import LiveEvent

log = logging.getLogger("intent.serving")
_LIMITED = LimitedLog(log)  # an outage logs a few lines, not one per request

JSON = "application/json"


# --- the state behind the routes ----------------------------------------------------------


@dataclass
class ServingState:
    """Everything the routes use, built once at start-up (`open_state`)."""

    layout: Layout
    configs: Any  # serving.assemble.Configs
    engine: Any
    metrics: EngineMetrics
    rules: RequestRules
    gateway: Gateway
    ready: Readiness
    reload_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    poller: asyncio.Task | None = None
    started_at: float = field(default_factory=time.time)
    drift: Any = None  # serving.drift.DriftMonitor

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

    async def readiness(self) -> tuple[int, dict[str, Any]]:
        """Each dependency's health (serving.readiness), probed off the loop; public detail."""
        return await self.ready.report_async()

    async def refresh(self) -> bool:
        from serving.assemble import refresh_model

        async with self.reload_lock:
            changed = await asyncio.to_thread(
                refresh_model, self.engine, self.configs.serving, self.layout
            )
        if changed:
            self.metrics.model_reloads.labels(source=self.engine.runtime.source).inc()
        return changed


def request_rules(configs: Any) -> RequestRules:
    limits = configs.serving.limits
    return RequestRules(
        steps=frozenset(configs.funnel.steps),
        max_id_length=limits.max_id_length,
        future_tolerance_s=configs.events.future_tolerance_s,
        max_batch=limits.max_batch,
        max_events=limits.max_events,
        max_label_length=limits.max_label_length,
        max_ts_age_s=limits.max_ts_age_days * 86400.0,
    )


def open_state(layout: Layout) -> ServingState:
    """Load configs, model, reader and stores (slow: seconds). The bearer token comes from
    the variable `auth.token_env` (unset: no auth)."""
    from serving.assemble import Configs, build_engine

    configs = Configs.load(layout)
    cfg = configs.serving
    token = os.environ.get(cfg.auth.token_env) or None
    metrics = engine_metrics()
    engine = build_engine(layout, configs, on_decision=metrics.observe)
    drift = attach_drift(engine, cfg.drift)  # PSI gauges + /readyz `drift` warning
    rt = engine.runtime
    log.info(
        "model source=%s version=%s (%s); online store: %s, read %s",
        rt.source,
        rt.model_version,
        rt.detail,
        rt.reader_detail,
        rt.reader.mode if rt.reader is not None else "-",
    )
    return ServingState(
        layout=layout,
        configs=configs,
        engine=engine,
        metrics=metrics,
        rules=request_rules(configs),
        gateway=Gateway(token, cfg.auth.public_paths, cfg.limits.max_body_bytes),
        ready=Readiness(
            engine,
            budget_s=cfg.backends.budgets.probe_ms / 1000.0,
            threads=cfg.backends.budgets.threads,
            online_configured=cfg.features.online_store == "feast",
        ),
        drift=drift,
    )


def start_state(state: ServingState) -> None:
    """Start model polling and exempt the start-up heap from the cyclic GC (`gc.freeze`).

    Feast, MLflow, ONNX Runtime and pandas leave ~400k long-lived objects that every full
    collection walked: a ~250 ms stall of the event loop every few thousand requests.
    """
    if state.configs.serving.model.reload_interval_s > 0:
        state.poller = asyncio.get_running_loop().create_task(_poll_models(state))
    gc.collect()
    gc.freeze()


async def stop_state(state: ServingState) -> None:
    if state.poller is not None:
        state.poller.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await state.poller
    state.ready.close()
    if state.drift is not None:
        state.drift.close()
    state.engine.close()
    gc.unfreeze()  # in process (tests) the heap goes back to the collector


async def _poll_models(state: ServingState) -> None:
    interval = state.configs.serving.model.reload_interval_s
    while True:
        await asyncio.sleep(interval)
        try:
            await state.refresh()
        except Exception:
            log.exception("model check failed")


def user_hash(user_id: str) -> str:
    """What logs may say about a user: a short one-way hash."""
    import hashlib

    return hashlib.sha256(user_id.encode()).hexdigest()[:12]


# --- responses ----------------------------------------------------------------------------


def _json(model: BaseModel, status: int = 200) -> Response:
    return Response(
        type(model).__pydantic_serializer__.to_json(model), status_code=status, media_type=JSON
    )


def _invalid(path: str, exc: ValidationError) -> JSONResponse:
    """400 naming every bad field; inputs are never echoed (they may hold user ids)."""
    detail = exc.errors(include_url=False, include_input=False, include_context=False)
    fields = ", ".join(".".join(str(p) for p in d["loc"]) or "<body>" for d in detail)
    log.info("%s: rejected (400), invalid: %s", path, fields)
    return JSONResponse(error_body(f"invalid request: {fields}", detail), status_code=400)


def _error(status: int, field_name: str, message: str, kind: str) -> JSONResponse:
    detail = [{"loc": [field_name], "msg": message, "type": kind}]
    return JSONResponse(error_body(f"{field_name}: {message}", detail), status_code=status)


def _unavailable(message: str) -> JSONResponse:
    return JSONResponse(error_body(message, []), status_code=503, headers={"Retry-After": "1"})


# --- OpenAPI helpers ----------------------------------------------------------------------

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "invalid input; `detail` names each field"},
    401: {"model": ErrorBody, "description": "missing or wrong bearer token"},
    413: {"model": ErrorBody, "description": "body over `limits.max_body_bytes`"},
    415: {"model": ErrorBody, "description": "the body is not JSON (Content-Type)"},
    503: {"model": ErrorBody, "description": "not started yet, or a backend is unavailable"},
}


def _body(model: type[BaseModel], example: Any) -> dict[str, Any]:
    """`openapi_extra` declaring a JSON request body (read raw by the route)."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                JSON: {
                    "schema": {"$ref": f"#/components/schemas/{model.__name__}"},
                    "example": example,
                }
            },
        }
    }


REQUEST_MODELS: tuple[type[BaseModel], ...] = (
    ScoreRequest,
    ScoreBatchRequest,
    EventsRequest,
    OutcomeRequest,
)


# --- the app ------------------------------------------------------------------------------


def gated(api: Any, resolve: Callable[[], ServingState | None]) -> GatewayMiddleware:
    """`api` behind the gateway (content type, size, auth) of the resolved state."""

    def gateway() -> Gateway | None:
        state = resolve()
        return state.gateway if state is not None else None

    return GatewayMiddleware(api, gateway)


def build_app(
    resolve: Callable[[], ServingState | None], lifespan: Any = None, version: str = ""
) -> FastAPI:
    """The API over whatever state `resolve()` returns (see the module doc)."""
    from serving.openapi import install_openapi

    api = FastAPI(
        title="Micro-moment intent service",
        description=__doc__.split("\n\n")[0],
        version=version or _package_version(),
        docs_url="/docs",
        openapi_url="/docs.json",
        redoc_url=None,
        lifespan=lifespan,
        swagger_ui_parameters={"tryItOutEnabled": True},
    )

    @api.post(
        "/score",
        response_model=ScoreResponse,
        responses=_ERRORS,
        openapi_extra=_body(ScoreRequest, EXAMPLE_REQUEST),
        summary="Decide at one micro-moment",
    )
    async def score(request: Request) -> Response:
        """Score, band, action + content key, reasons, caps and experiment arm; logged
        durably before the answer."""
        state = resolve()
        if state is None:
            return _unavailable("starting")
        now = time.time()
        try:
            req = ScoreRequest.model_validate_json(await request.body())
            check_score_request(req, state.rules, now)
        except ValidationError as exc:
            return _invalid("/score", exc)
        try:
            decision = await state.engine.decide_async(req.to_engine(now))
        except DecisionLogError as exc:
            _LIMITED.error(
                "decision-log", "decision not logged, not answered: %s", type(exc).__name__
            )
            return _unavailable("decision log unavailable")
        if decision.action.value != "none" and log.isEnabledFor(logging.DEBUG):
            log.debug("trigger %s for user %s", decision.action, user_hash(req.user_id))
        return _json(ScoreResponse.of(decision))

    @api.post(
        "/score_batch",
        response_model=ScoreBatchResponse,
        responses=_ERRORS,
        openapi_extra=_body(ScoreBatchRequest, {"requests": [EXAMPLE_REQUEST]}),
        summary="Several decisions in one call",
    )
    async def score_batch(request: Request) -> Response:
        """At most `limits.max_batch` requests, answered in order."""
        state = resolve()
        if state is None:
            return _unavailable("starting")
        now = time.time()
        try:
            batch = ScoreBatchRequest.model_validate_json(await request.body())
            check_score_batch(batch.requests, state.rules, now)
        except ValidationError as exc:
            return _invalid("/score_batch", exc)
        out = []
        try:
            for req in batch.requests:
                out.append(ScoreResponse.of(await state.engine.decide_async(req.to_engine(now))))
        except DecisionLogError as exc:
            _LIMITED.error(
                "decision-log", "decision not logged, not answered: %s", type(exc).__name__
            )
            return _unavailable("decision log unavailable")
        return _json(ScoreBatchResponse(decisions=out))

    @api.post(
        "/echo",
        response_model=ScoreRequest,
        responses=_ERRORS,
        openapi_extra=_body(ScoreRequest, EXAMPLE_REQUEST),
        summary="Parse a score request and return it (benchmark floor)",
    )
    async def echo(request: Request) -> Response:
        """The same parsing as /score, no decision: the framework's floor for benchmarks."""
        try:
            req = ScoreRequest.model_validate_json(await request.body())
        except ValidationError as exc:
            return _invalid("/echo", exc)
        return _json(req)

    @api.post(
        "/events",
        response_model=EventsResponse,
        responses=_ERRORS,
        openapi_extra=_body(EventsRequest, EXAMPLE_EVENTS),
        summary="Canonical events: live session state",
    )
    async def events(request: Request) -> Response:
        """Deduplicated by event_id and folded into the live session state; an invalid event
        is rejected on its own (listed in `rejected`, quarantined), the others are applied."""
        state = resolve()
        if state is None:
            return _unavailable("starting")
        now = time.time()
        try:
            envelope = EventsEnvelope.model_validate_json(await request.body())
            if len(envelope.events) > state.rules.max_events:
                problems = FieldProblems("Events")
                problems.add(
                    ["events"], "too_long", f"at most {state.rules.max_events} events per request"
                )
                problems.raise_if_any()
        except ValidationError as exc:
            return _invalid("/events", exc)
        split = split_events(envelope.events, state.rules, now)
        result = await _apply_events(state, split.valid)
        if split.rejected:
            where = "; ".join(f"events[{r.index}]: {', '.join(r.fields)}" for r in split.rejected)
            log.info("/events: %d rejected, invalid: %s", len(split.rejected), where)
            state.metrics.events.labels(result="rejected").inc(len(split.rejected))
            await asyncio.to_thread(
                _quarantine_rejected, state.layout, split.rejected_items, split.rejected
            )
        return _json(result.model_copy(update={"rejected": split.rejected}))

    @api.post(
        "/outcome",
        response_model=OutcomeResponse,
        responses={
            **_ERRORS,
            404: {"model": ErrorBody, "description": "unknown decision id"},
        },
        openapi_extra=_body(OutcomeRequest, EXAMPLE_OUTCOME),
        summary="What happened after a decision",
    )
    async def outcome(request: Request) -> Response:
        """accepted, dismissed, step_completed or abandoned; 404 for an unknown decision."""
        state = resolve()
        if state is None:
            return _unavailable("starting")
        now = time.time()
        try:
            req = OutcomeRequest.model_validate_json(await request.body())
            problems = FieldProblems("Outcome")
            if len(req.decision_id) > state.rules.max_id_length:
                problems.add(
                    ["decision_id"],
                    "too_long",
                    f"longer than {state.rules.max_id_length} characters",
                )
            check_age(problems, ["ts"], req.ts, now, state.rules.max_ts_age_s)
            problems.raise_if_any()
        except ValidationError as exc:
            return _invalid("/outcome", exc)
        at = req.ts.timestamp() if req.ts is not None else now
        try:
            recorded = await state.engine.record_outcome_async(req.decision_id, req.outcome, at)
        except DecisionLogError as exc:
            _LIMITED.error("decision-log", "outcome not logged: %s", type(exc).__name__)
            return _unavailable("decision log unavailable")
        if not recorded:
            return _error(404, "decision_id", "unknown decision id", "not_found")
        return _json(
            OutcomeResponse(decision_id=req.decision_id, outcome=req.outcome, recorded=True)
        )

    @api.post(
        "/reload",
        response_model=ReloadResponse,
        responses={401: _ERRORS[401], 503: _ERRORS[503]},
        summary="Swap in a newly promoted champion now",
    )
    async def reload(request: Request) -> Response:
        """Check the registry and swap models without a restart."""
        state = resolve()
        if state is None:
            return _unavailable("starting")
        changed = await state.refresh()
        return _json(ReloadResponse(changed=changed, model=state.model_info()))

    @api.get(
        "/model",
        response_model=ModelInfo,
        responses={401: _ERRORS[401], 503: _ERRORS[503]},
        summary="The served model",
    )
    async def model(request: Request) -> Response:
        """Where the model comes from (registry / bundle / rules), its version, metrics,
        thresholds, training window and the online store it reads."""
        state = resolve()
        if state is None:
            return _unavailable("starting")
        return _json(state.model_info())

    @api.get(
        "/readyz",
        response_model=ReadyOut,
        responses={503: _ERRORS[503]},
        summary="Readiness, with the model source",
    )
    async def readyz(request: Request) -> Response:
        """200 once the model, reader and stores are loaded; `degraded` when serving a
        fallback (bundle or rules) or without an online store - it still answers."""
        state = resolve()
        if state is None:
            return _unavailable("starting")
        status, body = await state.readiness()
        return JSONResponse(body, status_code=status)

    @api.get("/livez", response_model=LiveOut, summary="Liveness")
    async def livez(request: Request) -> Response:
        """The process answers (no backend is asked)."""
        return JSONResponse({"status": "alive"})

    @api.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        return Response(metrics_text(""), media_type="text/plain; version=0.0.4")

    install_openapi(api, REQUEST_MODELS, resolve)
    direct_endpoints(api)
    return api


def direct_endpoints(api: FastAPI) -> None:
    """Let Starlette call each endpoint with the request, skipping FastAPI's per-request
    dependency solving, which the endpoints do not use (they read the raw body): ~40 % of
    an /echo's server time. FastAPI still builds the OpenAPI from the routes."""
    from fastapi.routing import APIRoute
    from starlette.routing import request_response

    for route in api.router.routes:
        if isinstance(route, APIRoute):
            route.app = request_response(route.endpoint)


async def _apply_events(state: ServingState, valid: list[Any]) -> EventsResponse:
    """Fold valid events into the live state; duplicates within the request count once."""
    seen: set[str] = set()
    unique, repeated = [], []
    for e in valid:
        (repeated if e.event_id in seen else unique).append(e)
        seen.add(e.event_id)
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
            bool(e.assistive),
            e.user_agent,
        )
        for e in unique
    ]
    sessions = state.engine.sessions
    result = await asyncio.to_thread(sessions.apply, live)
    if result.late:
        late_ids = {e.event_id for e in result.late}
        await asyncio.to_thread(
            _quarantine_late, state.layout, [e for e in unique if e.event_id in late_ids]
        )
    pushed = await _push(state, result.touched)
    duplicates = [*result.duplicates, *(e.event_id for e in repeated)]
    for name, n in (
        ("accepted", len(result.accepted)),
        ("duplicate", len(duplicates)),
        ("late", len(result.late)),
    ):
        if n:
            state.metrics.events.labels(result=name).inc(n)
    return EventsResponse(
        accepted=len(result.accepted),
        duplicates=duplicates,
        late=sorted({e.event_id for e in result.late}),
        sessions=sorted(result.touched),
        pushed=pushed,
        rejected=[],
    )


def _quarantine_late(layout: Layout, events: list[Any]) -> None:
    import numpy as np
    import pyarrow as pa

    from features.events import EVENT_SCHEMA, event_to_row
    from features.ingest.event_store import write_quarantine
    from features.ingest.validate import quarantine_rows

    table = pa.Table.from_pylist([event_to_row(e) for e in events], schema=EVENT_SCHEMA)
    n = table.num_rows
    rows = quarantine_rows(
        table, np.arange(n), pa.array(["late_event"] * n), pa.array(["api:/events"] * n)
    )
    write_quarantine(layout, rows, "api-events")


def _quarantine_rejected(layout: Layout, items: list[Any], rejected: list[Any]) -> None:
    """Rejected events as their original text, with the reason (`api-rejected-events-*`)."""
    import json

    import numpy as np
    import pyarrow as pa

    from features.events import COLUMN_NAMES
    from features.ingest.event_store import write_quarantine
    from features.ingest.validate import quarantine_rows

    def text(value: Any) -> str | None:
        if value is None:
            return None
        return value if isinstance(value, str) else json.dumps(value)

    columns = {
        name: pa.array(
            [text(item.get(name)) if isinstance(item, dict) else None for item in items],
            pa.string(),
        )
        for name in COLUMN_NAMES
    }
    table = pa.table(columns)
    n = table.num_rows
    rows = quarantine_rows(
        table,
        np.arange(n),
        pa.array([r.reason for r in rejected]),
        pa.array(["api:/events"] * n),
        records=pa.array([json.dumps(item, default=str) for item in items], pa.string()),
        positions=np.array([r.index for r in rejected]),
    )
    write_quarantine(layout, rows, "api-rejected-events")


async def _push(state: ServingState, touched: dict[str, tuple[dict[str, float], float]]):
    reader = state.engine.runtime.reader
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


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("micro-moment-intent")
    except PackageNotFoundError:
        return "0+unknown"
