"""GET /dashboard (HTML) and /dashboard.json: the live efficacy figures of a recent window.

Behind the API's bearer token (not a public path). The decision-log read blocks (SQLite or
PostgreSQL), so it runs on one thread of its own within `dashboard.read_budget_ms`: a slow
or unreachable log answers 503, never a stalled event loop, and a hung read keeps one
thread busy, not one per reload.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from functools import cache
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from serving.http import error_body
from serving.offloop import BudgetExceeded, OffLoop


@cache
def _reader() -> OffLoop:
    """The dashboard's read thread (created on the first request, never at import)."""
    return OffLoop(1, "dashboard")


def read_window(state: Any, window: str, now: float) -> Any:
    """The window's decisions and outcomes (`serving.decision_log.LogWindow`); blocking."""
    from serving.dashboard import log_columns

    dash = state.configs.serving.dashboard
    since = now - dash.windows_h[window] * 3600.0
    return state.engine.log.recent(since, log_columns(), dash.max_rows)


def summary_of(state: Any, recent: Any, window: str, now: float) -> dict[str, Any]:
    """Aggregate a read window with the drift monitor's last report (CPU work, no I/O)."""
    from serving.dashboard import drift_figures, summarize

    cfg = state.configs.serving
    dash = cfg.dashboard
    monitor = state.drift
    drift = drift_figures(
        monitor.last if monitor is not None else None, cfg.drift.threshold, cfg.drift.min_rows
    )
    return summarize(
        recent,
        name=window,
        since=now - dash.windows_h[window] * 3600.0,
        until=now,
        confidence=dash.confidence,
        shadow_tolerance=dash.shadow_tolerance,
        drift=drift,
    )


def _refuse(status: int, message: str, kind: str, loc: str = "window") -> JSONResponse:
    detail = [{"loc": ["query", loc], "msg": message, "type": kind}]
    headers = {"Retry-After": "5"} if status == 503 else None
    return JSONResponse(error_body(message, detail), status_code=status, headers=headers)


async def _summary(state: Any, request: Request) -> dict[str, Any] | JSONResponse:
    dash = state.configs.serving.dashboard
    window = request.query_params.get("window", dash.default_window)
    if window not in dash.windows_h:
        return _refuse(400, f"window must be one of {', '.join(dash.windows_h)}", "value_error")
    now = time.time()
    try:
        recent = await _reader().run(
            read_window,
            state,
            window,
            now,
            budget_s=dash.read_budget_ms / 1000.0,
            what="the dashboard's decision-log read",
        )
    except BudgetExceeded as exc:
        return _refuse(503, f"{exc}; try again later", "unavailable", "decision_log")
    except Exception as exc:  # the log backend is down: a 503 naming it, not a 500
        return _refuse(
            503, f"decision log unreadable: {type(exc).__name__}", "unavailable", "decision_log"
        )
    return await asyncio.to_thread(summary_of, state, recent, window, now)


def install_dashboard(api: FastAPI, resolve: Callable[[], Any]) -> None:
    """Add the two dashboard routes to `api` (whose gateway does auth)."""

    async def figures(request: Request) -> tuple[Any, dict[str, Any] | JSONResponse]:
        state = resolve()
        if state is None:
            return None, _refuse(503, "starting", "unavailable", "service")
        return state, await _summary(state, request)

    @api.get("/dashboard.json", include_in_schema=False)
    async def dashboard_json(request: Request) -> Response:
        _, summary = await figures(request)
        return summary if isinstance(summary, Response) else JSONResponse(summary)

    @api.get("/dashboard", include_in_schema=False)
    async def dashboard(request: Request) -> Response:
        from serving.dashboard_html import render

        state, summary = await figures(request)
        if isinstance(summary, Response):
            return summary
        dash = state.configs.serving.dashboard
        return HTMLResponse(render(summary, list(dash.windows_h), dash.refresh_s))
