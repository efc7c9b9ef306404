"""`intent serve`, `intent bench decide`, `intent bench serve`."""

from __future__ import annotations

import json
import os
import socket
from typing import Annotated

import typer

from features import cli_kit as kit
from features.layout import Layout

console = kit.console(stderr=True)


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
) -> None:
    """Start the scoring server (BentoML) with the champion model, or the rules fallback."""
    from serving.assemble import Configs
    from serving.bench import server_argv
    from serving.schemas import example_curl

    layout = Layout.from_env()
    configs = Configs.load(layout)  # config errors: one message, before BentoML starts
    port = port if port is not None else configs.serving.server.port
    host = host or configs.serving.server.host
    if not 1 <= port <= 65535:
        raise typer.BadParameter("must be within 1..65535", param_hint="--port")
    if not _port_free(host, port):
        raise kit.fail(f"port {port} on {host} is already in use (pick another with --port)")
    argv = server_argv(port, host, layout.repo_root)
    token_env = (
        configs.serving.auth.token_env if os.environ.get(configs.serving.auth.token_env) else None
    )
    console.print(f"serving on http://{host}:{port}  (docs at /, readiness at /readyz); try:")
    console.print(example_curl(port, token_env=token_env), soft_wrap=True, markup=False)
    os.execv(argv[0], argv)


def bench_decide_command(
    iterations: Annotated[
        int | None,
        typer.Option("--iterations", "-n", min=100, help="Decisions to time per variant."),
    ] = None,
) -> None:
    """In-process decision latency: rules, model, model + durable log (JSON on stdout)."""
    from serving.assemble import Configs
    from serving.bench import bench_decide

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
) -> None:
    """Start the real server and compare /score with /echo under load (JSON on stdout)."""
    from serving.assemble import Configs
    from serving.bench import bench_serve

    layout = Layout.from_env()
    cfg = Configs.load(layout).serving
    clients = clients or cfg.bench.clients
    requests = requests or cfg.bench.requests
    with kit.progress(counts=False) as progress:
        task = progress.add_task("requests", total=cfg.bench.warmup + requests)
        try:
            result = bench_serve(
                layout,
                clients,
                requests,
                cfg.bench.warmup,
                cfg.server.startup_timeout_s,
                lambda k: progress.advance(task, k),
            )
        except (RuntimeError, TimeoutError) as exc:
            raise kit.fail(str(exc).splitlines()[0]) from exc
    typer.echo(json.dumps(result, indent=2))


def register(app: typer.Typer) -> None:
    """Add `serve` and `bench decide` / `bench serve` to the `intent` app."""
    app.command("serve")(serve_command)
    bench = kit.group(app, "bench", kit.BENCH_HELP)
    bench.command("decide")(bench_decide_command)
    bench.command("serve")(bench_serve_command)
