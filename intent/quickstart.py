"""`intent quickstart`: the whole product on embedded defaults, from nothing to a running server.

simulate -> validate -> features build / apply / materialize -> online vector -> train ->
register -> export -> promote -> `intent serve` with two example requests (a returning user
scored by the model, and the dispatcher's minimal request for an unknown user, answered by
the rules fallback). Each stage is the same command a user would run by hand.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.rule import Rule

from core import cli_kit
from core.layout import Layout

console = cli_kit.console(stderr=True)

# Folders the quickstart regenerates; models/ and mlruns/ are kept so versions accumulate and
# the promotion gate has a champion to compare with on the next run.
GENERATED = (
    "raw/sim",
    "oracle",
    "events",
    "quarantine",
    "sessions",
    "features",
    "feast",
    "serving",
)


def quickstart_command(
    port: Annotated[int, typer.Option("--port", "-p", help="Port of the scoring server.")] = 3000,
    users: Annotated[int, typer.Option("--users", min=50, help="Simulated users.")] = 20_000,
    days: Annotated[int, typer.Option("--days", min=2, help="Simulated days.")] = 30,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Simulation seed.")] = 7,
    keep_serving: Annotated[
        bool,
        typer.Option(
            "--keep-serving/--no-keep-serving",
            help="Leave the server running after the example requests (Ctrl-C stops it).",
        ),
    ] = True,
) -> None:
    """Simulate, build features, train, register, export, promote and serve, on defaults."""
    from features.ingest.cli import validate_command
    from features.pipeline.cli import build_command
    from features.simulator.cli import simulate_command
    from features.store.cli import apply_command, materialize_command, online_command
    from training.cli import promote_command, train_command

    layout = Layout.from_env().ensure()
    removed = reset_generated(layout)
    if removed:
        console.print(f"[dim]cleared generated data: {', '.join(removed)}[/dim]")
    stages: list[tuple[str, Callable[[], None]]] = [
        (
            "simulate",
            lambda: simulate_command(users=users, days=days, seed=seed, start=None, force=True),
        ),
        ("validate", lambda: validate_command(inputs=None)),
        ("features build", lambda: build_command(workers=2)),
        ("features apply", lambda: apply_command(backend=None)),
        ("features materialize", lambda: materialize_command(end=None, backend=None)),
        ("online feature vector", _online_vector(online_command)),
        ("train", lambda: train_command(seed=None, promote=False, backend=None)),
        ("promote", lambda: promote_command(version=None, force=False, backend=None)),
    ]
    began = time.perf_counter()
    for title, run in stages:
        console.print(Rule(f"[bold]{title}[/bold]"))
        run()
    console.print(Rule("[bold]serve[/bold]"))
    console.print(f"[dim]pipeline took {time.perf_counter() - began:.0f} s[/dim]")
    serve_with_examples(layout, port, keep_serving)


def reset_generated(layout: Layout) -> list[str]:
    """Remove the folders the quickstart regenerates; returns the ones that existed."""
    removed = []
    for name in GENERATED:
        path = layout.data / name
        if path.exists():
            shutil.rmtree(path)
            removed.append(f"data/{name}")
    return removed


def _online_vector(online_command: Callable[..., None]) -> Callable[[], None]:
    def run() -> None:
        online_command(user=None, session=None, step=None, at=None, as_json=False, backend=None)

    return run


def serve_with_examples(layout: Layout, port: int, keep_serving: bool) -> None:
    """Start `intent serve`, send the example requests, then keep serving or stop."""
    from serving.assemble import Configs
    from serving.schemas import EXAMPLE_REQUEST, example_curl

    configs = Configs.load(layout)
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "intent", "serve", "--port", str(port)])
    try:
        ready = wait_ready(url, configs.serving.server.startup_timeout_s, server)
        console.print(f"ready: {json.dumps(ready)}", highlight=False)
        returning = returning_user_request(layout)
        if returning is not None:
            console.print(Rule("a returning user at a micro-moment (model)"))
            _show(url, returning)
        console.print(Rule("the dispatcher's minimal request, an unknown user (rules fallback)"))
        _show(url, EXAMPLE_REQUEST)
        console.print(Rule())
        console.print("try it yourself:", highlight=False)
        print(example_curl(port), flush=True)
        if not keep_serving:
            return
        console.print(f"serving on {url} (docs at {url}/docs); Ctrl-C stops it")
        server.wait()
    except KeyboardInterrupt:
        pass
    finally:
        _stop(server)


def wait_ready(url: str, timeout_s: float, server: subprocess.Popen) -> dict[str, Any]:
    """Poll /readyz until the server answers; fail early if the process died."""
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise typer.Exit(code=server.returncode or 1)
        try:
            response = httpx.get(f"{url}/readyz", timeout=1.0)
            if response.status_code == 200:
                return response.json()
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    console.print(
        f"[red]error[/red] the server did not become ready within {timeout_s:.0f} s "
        "(serving.yaml server.startup_timeout_s; raise it on a slow or busy machine)"
    )
    raise typer.Exit(code=1)


def returning_user_request(layout: Layout) -> dict[str, Any] | None:
    """A /score request for a known user at a real decision point of the data, if any."""
    import pandas as pd

    path = layout.features / "decision_points.parquet"
    if not path.exists():
        return None
    points = pd.read_parquet(path)
    stats = pd.read_parquet(layout.features / "user_stats.parquet", columns=["user_id"])
    known = points[points["user_id"].isin(stats["user_id"]) & (points["moment"] == "pause")]
    if known.empty:
        return None
    row = known.sort_values("event_timestamp").iloc[-1]
    return {
        "user_id": str(row["user_id"]),
        "session_id": str(row["session_id"]),
        "step": str(row["step"]),
        "moment": str(row["moment"]),
        "ts": pd.Timestamp(row["event_timestamp"]).isoformat(),
        "device": None if pd.isna(row["device"]) else str(row["device"]),
        "channel": None if pd.isna(row["channel"]) else str(row["channel"]),
    }


def _show(url: str, body: dict[str, Any]) -> None:
    import httpx

    payload = {k: v for k, v in body.items() if v is not None}
    print(f"POST /score {json.dumps(payload)}", flush=True)
    response = httpx.post(f"{url}/score", json=payload, timeout=10.0)
    print(json.dumps(response.json(), indent=2), flush=True)


def _stop(server: subprocess.Popen) -> None:
    if server.poll() is None:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()


def register(app: typer.Typer) -> None:
    app.command("quickstart")(quickstart_command)
