"""The framework floor of `intent bench serve`: a bare Starlette echo on uvicorn.

No BentoML, no FastAPI, no pydantic, no decision: POST /echo returns its body and GET /readyz
answers. Measured in the same run as the real servers, it tells how much of their latency is
the HTTP stack itself on this machine (`uvicorn bench.floor:create_app --factory`).
"""

from __future__ import annotations

from typing import Any


def create_app() -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    async def echo(request: Request) -> Response:
        return Response(await request.body(), media_type="application/json")

    async def ready(_: Request) -> Response:
        return JSONResponse({"status": "ready", "model_source": "none"})

    return Starlette(
        routes=[Route("/echo", echo, methods=["POST"]), Route("/readyz", ready, methods=["GET"])]
    )


def floor_argv(port: int, host: str) -> list[str]:
    import sys

    return [
        sys.executable,
        "-m",
        "uvicorn",
        "bench.floor:create_app",
        "--factory",
        "--host",
        host,
        "--port",
        str(port),
        "--no-access-log",
        "--log-level",
        "warning",
    ]
