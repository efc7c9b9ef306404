"""`intent serve`, `intent bench decide`, `intent bench serve`."""

from __future__ import annotations

import json
import os
import socket
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from core import cli_kit as kit
from core.layout import Layout

console = kit.console(stderr=True)


class Server(StrEnum):
    BENTOML = "bentoml"
    UVICORN = "uvicorn"


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host if host != "0.0.0.0" else "", port))
        except OSError:
            return False
    return True


def serve_command(
    port: Annotated[
        int | None, typer.Option("--port", "-p", help="Port (default: serving.yaml server.port).")
    ] = None,
    host: Annotated[
        str | None, typer.Option("--host", help="Interface (default: serving.yaml server.host).")
    ] = None,
    server: Annotated[
        Server,
        typer.Option(
            "--server",
            help="bentoml (the design's server) or uvicorn (the same app bare, more headroom).",
        ),
    ] = Server.BENTOML,
    workers: Annotated[
        int,
        typer.Option("--workers", "-w", min=1, help="Worker processes (backends are shared)."),
    ] = 1,
) -> None:
    """Start the scoring server with the champion model, or the rules fallback."""
    from bench.serving import server_argv
    from serving.app_bare import server_env, uvicorn_argv
    from serving.assemble import Configs
    from serving.schemas import example_curl

    layout = Layout.from_env()
    configs = Configs.load(layout)  # config errors: one message, before BentoML starts
    port = port if port is not None else configs.serving.server.port
    host = host or configs.serving.server.host
    if not 1 <= port <= 65535:
        raise typer.BadParameter("must be within 1..65535", param_hint="--port")
    if not _port_free(host, port):
        raise kit.fail(f"port {port} on {host} is already in use (pick another with --port)")
    if server == Server.BENTOML:
        argv = server_argv(port, host, layout.repo_root)
    else:
        argv = uvicorn_argv(port, host, workers)
        os.chdir(layout.repo_root)  # `serving.app_bare` is imported from the project
    token_env = (
        configs.serving.auth.token_env if os.environ.get(configs.serving.auth.token_env) else None
    )
    console.print(
        f"serving ({server.value}) on http://{host}:{port}  (docs at /docs, readiness at "
        "/readyz); try:"
    )
    console.print(example_curl(port, token_env=token_env), soft_wrap=True, markup=False)
    bentoml_workers = workers if server == Server.BENTOML else 1
    env = server_env(dict(os.environ), bentoml_workers)
    if server == Server.BENTOML:
        env.setdefault("BENTOML_HOME", str(own_bentoml_home(layout, port)))
    os.execve(argv[0], argv, env)


def own_bentoml_home(layout: Layout, port: int) -> Path:
    """A BentoML home for the server on `port` (when BENTOML_HOME is not set). Every
    `bentoml serve` start empties `$BENTOML_HOME/prometheus_multiproc_dir`, and its /metrics
    reads every file there: servers sharing a home wipe and mix each other's metrics. Serving
    from the sources uses nothing else of the home (the champion comes from the registry)."""
    return layout.serving / "bentoml" / f"port-{port}"


def bench_decide_command(
    iterations: Annotated[
        int | None,
        typer.Option("--iterations", "-n", min=100, help="Decisions to time per variant."),
    ] = None,
) -> None:
    """In-process decision latency: rules, model, model + durable log (JSON on stdout)."""
    from bench.serving import bench_decide
    from serving.assemble import Configs

    layout = Layout.from_env()
    n = iterations or Configs.load(layout).serving.bench.decide_iterations
    with kit.progress(counts=False) as progress:
        task = progress.add_task("deciding", total=3 * n)
        result = bench_decide(layout, n, lambda k: progress.advance(task, k))
    typer.echo(json.dumps(result, indent=2))


def bench_serve_command(
    clients: Annotated[
        int | None, typer.Option("--clients", "-c", min=1, help="Concurrent client processes.")
    ] = None,
    requests: Annotated[
        int | None, typer.Option("--requests", "-n", min=10, help="Requests per endpoint.")
    ] = None,
    workers: Annotated[
        int, typer.Option("--workers", "-w", min=1, help="Worker processes of each server.")
    ] = 1,
    servers: Annotated[
        list[str] | None,
        typer.Option("--server", help="Only these: bentoml, uvicorn, floor (repeatable)."),
    ] = None,
    baseline: Annotated[
        Path | None,
        typer.Option(
            "--baseline",
            exists=True,
            file_okay=False,
            help="Another checkout (e.g. `git worktree add DIR main`): its servers run too, "
            "same run; `vs_baseline` gives the ratios.",
        ),
    ] = None,
) -> None:
    """Start each real server (BentoML, bare uvicorn, a bare Starlette echo floor), time its
    start-up and drive /score and /echo under load (JSON on stdout)."""
    from bench.serving import bench_serve
    from serving.assemble import Configs

    layout = Layout.from_env()
    cfg = Configs.load(layout).serving
    clients = clients or cfg.bench.clients
    requests = requests or cfg.bench.requests
    chosen = servers or ["bentoml", "uvicorn", "floor"]
    unknown = sorted(set(chosen) - {"bentoml", "uvicorn", "floor"})
    if unknown:
        raise typer.BadParameter(f"unknown {', '.join(unknown)}", param_hint="--server")
    paths = sum(1 if s == "floor" else 2 * (1 + (baseline is not None)) for s in chosen)
    with kit.progress(counts=False) as progress:
        task = progress.add_task("requests", total=paths * (cfg.bench.warmup + requests))
        try:
            result = bench_serve(
                layout,
                clients,
                requests,
                cfg.bench.warmup,
                cfg.server.startup_timeout_s,
                lambda k: progress.advance(task, k),
                workers=workers,
                servers=chosen,
                baseline=baseline.resolve() if baseline is not None else None,
            )
        except (RuntimeError, TimeoutError) as exc:
            raise kit.fail(str(exc).splitlines()[0]) from exc
    for name in [n for n in result if n.partition("@")[0] in chosen]:
        r = result[name]
        console.print(
            f"{name}: ready {r['ready_s']:.1f} s after start ({r['ready_cpu_s']:.1f} s of CPU)"
        )
    typer.echo(json.dumps(result, indent=2))


def register(app: typer.Typer) -> None:
    """Add `serve` and `bench decide` / `bench serve` to the `intent` app."""
    app.command("serve")(serve_command)
    bench = kit.group(app, "bench", kit.BENCH_HELP)
    bench.command("decide")(bench_decide_command)
    bench.command("serve")(bench_serve_command)
