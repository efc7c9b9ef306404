"""The API on plain uvicorn, without BentoML: `intent serve --server uvicorn [--workers N]`.

For deployments that need the headroom (BentoML's own layers cost about half the
throughput, see the README's benchmark): the same app, routes and OpenAPI, with the state
built in the app's lifespan. Every worker is a process with its own engine; the backends
(SQLite files with WAL, Redis, PostgreSQL) are shared between them.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from core.layout import Layout


def create_app() -> Any:
    """A uvicorn factory (`uvicorn serving.app_bare:create_app --factory`)."""
    from serving.app import ServingState, build_app, gated, open_state, start_state, stop_state

    holder: dict[str, ServingState] = {}

    @contextlib.asynccontextmanager
    async def lifespan(_: Any) -> AsyncIterator[None]:
        state = open_state(Layout.from_env())
        holder["state"] = state
        start_state(state)
        try:
            yield
        finally:
            holder.pop("state", None)
            await stop_state(state)

    def resolve() -> ServingState | None:
        return holder.get("state")

    # non-HTTP scopes (lifespan) pass through the gateway to FastAPI
    return gated(build_app(resolve, lifespan=lifespan), resolve)


def uvicorn_argv(port: int, host: str, workers: int) -> list[str]:
    """`python -m uvicorn` of the app (what `intent serve --server uvicorn` runs)."""
    import sys

    return [
        sys.executable,
        "-m",
        "uvicorn",
        "serving.app_bare:create_app",
        "--factory",
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--no-access-log",
        "--log-level",
        "warning",
    ]


def server_env(base: dict[str, str], bentoml_workers: int = 1) -> dict[str, str]:
    """The environment of a server process: Python's optimized mode (`PYTHONOPTIMIZE=1`),
    and for BentoML its worker count (`services.intent_service.workers`).

    Feast decorates its classes with typeguard's `@typechecked`, which re-parses and
    recompiles each module at import (~4 s of CPU at every start); under -O it is a no-op,
    as typeguard intends for production. Our `assert`s only narrow types. `make install`
    compiles the -O bytecode too. An explicit PYTHONOPTIMIZE in `base` wins.
    """
    env = {"PYTHONOPTIMIZE": "1", **base}
    if bentoml_workers > 1:
        option = f"services.intent_service.workers={bentoml_workers}"
        env["BENTOML_CONFIG_OPTIONS"] = " ".join(
            o for o in (base.get("BENTOML_CONFIG_OPTIONS", ""), option) if o
        )
    return env
