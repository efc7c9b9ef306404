"""Benchmarks of the decision path: in process (`intent bench decide`) and over HTTP
(`intent bench serve`). Both print JSON; neither writes into the real decision log.

- decide: the engine with the configured backends in a scratch data folder, the served
  model (champion / newest bundle) or, when there is none, a synthetic 300-tree bundle, and
  the Feast reader when the store is built (else a fixed feature row, labelled as such).
  Timed per call: the engine without the log (features + model + policy + caps) and the
  whole `decide` (plus the durable log append).
- serve: starts each real server in turn on a free port - `bentoml serve` (the design's
  server), the same app on bare uvicorn (`intent serve --server uvicorn`) and a bare
  Starlette echo (`bench.floor`, the HTTP stack's floor on this machine) - with the
  decision log, caps and session files redirected to a scratch folder, times how long each
  takes to answer /readyz, and drives `/score` and `/echo` (same request parsing, no
  decision) with N concurrent client processes on keep-alive connections, alternating
  rounds so drift hits both alike.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import multiprocessing
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from core.layout import Layout
from core.vocabulary import MomentType

SERVICE = "serving.service:IntentService"


def latency_ms(samples_s: Sequence[float]) -> dict[str, float]:
    ms = np.asarray(samples_s, dtype=np.float64) * 1000.0
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
        "max_ms": round(float(ms.max()), 3),
    }


def sample_requests(n: int, steps: Sequence[str], seed: int) -> list[dict[str, Any]]:
    """Varied score requests: many users (so caps rarely bind), all moment kinds."""
    rng = random.Random(seed)
    moments = [m.value for m in MomentType]
    out = []
    for _ in range(n):
        user = f"bench-u{rng.randrange(max(n // 3, 1))}"
        out.append(
            {
                "user_id": user,
                "session_id": f"{user}-s{rng.randrange(3)}",
                "step": rng.choice(list(steps)),
                "moment": rng.choice(moments),
                "signals": {
                    "pause_s": round(rng.expovariate(1 / 12), 2),
                    "scroll_depth": round(rng.uniform(0, 100), 1),
                    "cta_fails": float(rng.randrange(5)),
                    "secondary_clicks": float(rng.randrange(6)),
                    "click_rate": round(rng.random(), 3),
                },
                "device": rng.choice(["desktop", "mobile", "tablet"]),
                "tz": rng.choice(["UTC", "Europe/Paris", "America/New_York"]),
            }
        )
    return out


# --- scratch configs -----------------------------------------------------------------------


def scratch_configs(layout: Layout, scratch: Path, **serving_patch: Any) -> Path:
    """A copy of the config folders (merged) whose SQLite stores write under `scratch`."""
    configs = scratch / "configs"
    for folder in reversed(layout.config_dirs):  # the first folder's files win, as in Layout
        shutil.copytree(folder, configs, dirs_exist_ok=True)
    path = configs / "serving.yaml"
    raw = yaml.safe_load(path.read_text())
    for name in ("caps", "decision_log", "sessions"):
        backend = raw["backends"][name]
        if backend.get("kind") == "sqlite":
            backend["file"] = str(scratch / "serving" / Path(backend["file"]).name)
    for key, value in serving_patch.items():
        section, _, field = key.partition("__")
        raw[section][field] = value
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return configs


# --- in process ----------------------------------------------------------------------------


class FixedReader:
    """A stand-in online store for the benchmark only: one fixed row, user known."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values

    def read(self, user_id: str, session_id: str, step: str, now_epoch: float):
        return self.values, True


def bench_decide(layout: Layout, iterations: int, progress: Callable[[int], None]) -> dict:
    """In-process decision latency (see the module doc)."""
    from bench.synthetic import make_bundle
    from core.bundle import load_bundle
    from core.registry import choose_model
    from serving.assemble import Configs, build_engine, make_runtime
    from serving.decision import DecisionRequest
    from serving.feature_read import BudgetedReader

    with tempfile.TemporaryDirectory(prefix="intent-bench-") as tmp:
        scratch = Path(tmp)
        configs_dir = scratch_configs(layout, scratch)
        bench_layout = Layout.under(
            layout.root,
            data=layout.data,
            configs=configs_dir,
            models=layout.models,
            mlruns=layout.mlruns,
        )
        configs = Configs.load(bench_layout)
        choice = choose_model(configs.serving.model, bench_layout)
        bundle, model_note = choice.bundle, f"{choice.source} v{choice.version}"
        if bundle is None:
            make_bundle(scratch / "models" / "synthetic", n_trees=300, n_numeric=40)
            bundle = load_bundle(scratch / "models" / "synthetic")
            model_note = "synthetic 300-tree bundle (no trained model yet)"
        runtime = make_runtime(bundle, "bundle", model_note, configs.serving, bench_layout)
        reader_note = runtime.reader_detail
        if runtime.reader is None:
            fixed = {f.name: f.baseline for f in bundle.manifest.features if f.baseline is not None}
            reader = BudgetedReader(FixedReader(fixed), configs.serving.features.budget_ms, 1)
            runtime = dataclasses.replace(runtime, reader=reader)
            reader_note = f"fixed feature row ({reader_note})"
        rules_runtime = make_runtime(None, "rules", "bench", configs.serving, bench_layout)
        engine = build_engine(bench_layout, configs, runtime=runtime)
        try:
            reqs = sample_requests(iterations, configs.funnel.steps, seed=1)
            base = time.time()
            keys = [
                (r["user_id"], r["session_id"], r["step"], base + i * 0.5)
                for i, r in enumerate(reqs)
            ]
            if reader_note.startswith("feast"):  # users the store knows, at their own time
                keys = stored_decision_keys(layout, iterations) or keys
            dreqs = [
                DecisionRequest(
                    user_id=user_id,
                    session_id=session_id,
                    step=step,
                    now=now,
                    moment=MomentType(r["moment"]),
                    signals=r["signals"],
                    tz=r["tz"],
                    device=r["device"],
                )
                for r, (user_id, session_id, step, now) in zip(reqs, keys, strict=False)
            ]
            results = {}
            for name, rt, log in (
                ("rules_no_log", rules_runtime, False),
                ("model_no_log", runtime, False),
                ("model_with_durable_log", runtime, True),
            ):
                engine.swap(rt)
                for req in dreqs[: min(200, len(dreqs))]:  # warm-up
                    _one(engine, rt, req, log)
                samples = []
                sources: dict[str, int] = {}
                wall0, cpu0 = time.perf_counter(), time.process_time()
                for i, req in enumerate(dreqs):
                    t0 = time.perf_counter()
                    decision = _one(engine, rt, req, log)
                    samples.append(time.perf_counter() - t0)
                    key = decision.fallback_reason.value if decision.fallback_reason else "model"
                    sources[key] = sources.get(key, 0) + 1
                    if i % 500 == 0:
                        progress(500)
                wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
                results[name] = {
                    **latency_ms(samples),
                    # one caller, back to back; CPU of every thread (the log writer's too)
                    "decisions_per_s": round(len(dreqs) / wall, 1),
                    "cpu_ms_per_decision": round(cpu * 1000.0 / len(dreqs), 3),
                    "sources": sources,
                }
        finally:
            engine.close()
        return {
            "iterations": iterations,
            "model": model_note,
            "features": reader_note,
            "decision_log": configs.serving.backends.decision_log.kind,
            "caps": configs.serving.backends.caps.kind,
            **results,
            "target_p99_ms": 1.0,
            "meets_target": results["model_no_log"]["p99_ms"] < 1.0,
        }


def stored_decision_keys(layout: Layout, n: int) -> list[tuple[str, str, str, float]]:
    """(user, session, step, time) of up to `n` built decision points, cycled to `n`."""
    import pandas as pd

    path = layout.features / "decision_points.parquet"
    if not path.exists():
        return []
    cols = ["user_id", "session_id", "step", "request_ts"]
    frame = pd.read_parquet(path, columns=cols).dropna()
    if frame.empty:
        return []
    rows = list(frame.sample(n=min(n, len(frame)), random_state=0).itertuples(index=False))
    return [
        (str(u), str(s), str(st), float(t))
        for u, s, st, t in (rows[i % len(rows)] for i in range(n))
    ]


def _one(engine, rt, req, log: bool):
    if log:
        return engine.decide(req)
    started = time.perf_counter()
    read = rt.reader.read(req.user_id, req.session_id, req.step, req.now) if rt.reader else None
    return engine.compute(req, rt, read, started)


# --- over HTTP -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_argv(port: int, host: str, working_dir: Path) -> list[str]:
    """`bentoml serve` of the service (what `intent serve` runs)."""
    return [
        sys.executable,
        "-m",
        "bentoml",
        "serve",
        SERVICE,
        "--port",
        str(port),
        "--host",
        host,
        "--working-dir",
        str(working_dir),
    ]


def wait_ready(
    port: int,
    timeout_s: float,
    proc: subprocess.Popen | None = None,
    setting: str = "serving.yaml server.startup_timeout_s",
) -> dict:
    """Poll /readyz until it answers 200; the error names the setting that bounds the wait."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server exited with code {proc.returncode} while starting")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/readyz")
            resp = conn.getresponse()
            body = resp.read()
            if resp.status == 200:
                return json.loads(body)
        except (OSError, http.client.HTTPException, ValueError):
            pass
        time.sleep(0.2)
    raise TimeoutError(
        f"the server did not become ready within {timeout_s:g} s ({setting}); on a slow or "
        "busy machine raise it"
    )


def stop_server(proc: subprocess.Popen) -> None:
    """SIGTERM the server's own process group (it was started in a new session)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _client(args: tuple[int, str, list[bytes], dict[str, str]]) -> tuple[list[float], int, float]:
    """One client process: sequential requests on one keep-alive connection."""
    port, path, bodies, headers = args
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    samples, errors = [], 0
    started = time.perf_counter()
    for body in bodies:
        t0 = time.perf_counter()
        conn.request("POST", path, body=body, headers=headers)
        resp = conn.getresponse()
        resp.read()
        samples.append(time.perf_counter() - t0)
        errors += resp.status != 200
    elapsed = time.perf_counter() - started
    conn.close()
    return samples, errors, elapsed


def drive(
    pool: Any, port: int, path: str, bodies: list[bytes], clients: int, headers: dict[str, str]
) -> dict[str, Any]:
    chunks = [bodies[i::clients] for i in range(clients)]
    started = time.perf_counter()
    results = pool.map(_client, [(port, path, c, headers) for c in chunks])
    wall = time.perf_counter() - started
    samples = [s for r in results for s in r[0]]
    return {"samples": samples, "errors": sum(r[1] for r in results), "wall_s": wall}


# The targets (2 cores, 8 clients): BentoML and bare uvicorn throughput / p99, and
# the time from start to the first 200 from /readyz.
TARGETS = {
    "bentoml": {"min_rps": 1000, "max_p99_ms": 30.0},
    "uvicorn": {"min_rps": 3000, "max_p99_ms": 10.0},
    "max_ready_s": 8.0,
}


@dataclasses.dataclass(frozen=True)
class ServerRun:
    """One server to benchmark: its command line and the paths to drive."""

    name: str
    argv: list[str]
    paths: tuple[str, ...]


def bench_serve(
    layout: Layout,
    clients: int,
    requests: int,
    warmup: int,
    startup_timeout_s: float,
    progress: Callable[[int], None],
    workers: int = 1,
    servers: Sequence[str] = ("bentoml", "uvicorn", "floor"),
    baseline: Path | None = None,
) -> dict:
    """HTTP latency and throughput of each server (see the module doc), JSON-ready.

    `baseline`: another checkout of the code (e.g. `git worktree add <dir> main`); each
    server but the floor also starts from it, right after its own run, under
    `<server>@baseline`, and `vs_baseline` gives the ratios - before/after on one machine
    at one moment, the only comparison a shared machine allows."""
    from bench.floor import floor_argv
    from serving.app_bare import server_env, uvicorn_argv
    from serving.assemble import Configs

    configs = Configs.load(layout)
    token = os.environ.get(configs.serving.auth.token_env)
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    payloads = [
        json.dumps(r).encode()
        for r in sample_requests(requests + warmup, configs.funnel.steps, seed=2)
    ]
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="intent-bench-serve-") as tmp:
        scratch = Path(tmp)
        env = server_env(dict(os.environ))
        env["INTENT_CONFIGS"] = str(scratch_configs(layout, scratch))
        env["INTENT_MODELS_DIR"] = str(layout.models)
        env["INTENT_MLRUNS_DIR"] = str(layout.mlruns)
        env["INTENT_DATA_DIR"] = str(layout.data)
        for name in servers:
            port = free_port()
            run = {
                "bentoml": ServerRun(
                    "bentoml", server_argv(port, "127.0.0.1", layout.repo_root), ("/echo", "/score")
                ),
                "uvicorn": ServerRun(
                    "uvicorn", uvicorn_argv(port, "127.0.0.1", workers), ("/echo", "/score")
                ),
                "floor": ServerRun("floor", floor_argv(port, "127.0.0.1"), ("/echo",)),
            }[name]
            run_env = server_env(env, workers) if name == "bentoml" else env
            results[name] = _bench_one(
                run, port, run_env, scratch, layout.repo_root, startup_timeout_s,
                payloads, clients, warmup, headers, progress,
            )  # fmt: skip
            if baseline is not None and name != "floor":
                port = free_port()
                argv = run.argv if name != "bentoml" else server_argv(port, "127.0.0.1", baseline)
                if name == "uvicorn":
                    argv = uvicorn_argv(port, "127.0.0.1", workers)
                base_run = ServerRun(f"{name}@baseline", argv, run.paths)
                results[base_run.name] = _bench_one(
                    base_run, port, {**run_env, "PYTHONPATH": str(baseline)}, scratch,
                    baseline, startup_timeout_s, payloads, clients, warmup, headers, progress,
                )  # fmt: skip
    meets = {
        name: results[name]["score"]["throughput_rps"] >= t["min_rps"]
        and results[name]["score"]["p99_ms"] <= t["max_p99_ms"]
        for name, t in TARGETS.items()
        if isinstance(t, dict) and name in results
    }
    ready = [r["ready_s"] for n, r in results.items() if n in ("bentoml", "uvicorn")]
    if ready:
        meets["ready"] = max(ready) <= TARGETS["max_ready_s"]
    compared = {n: vs_baseline(results[n], results[f"{n}@baseline"]) for n in servers
                if f"{n}@baseline" in results}  # fmt: skip
    return {
        "clients": clients,
        "requests_per_endpoint": requests,
        "workers": workers,
        **results,
        "targets": TARGETS,
        "meets_targets": meets,
        **({"vs_baseline": compared} if compared else {}),
        "cpu_count": os.cpu_count(),
        "note": "clients run on the same cores as the servers; compare each server with the "
        "floor measured in the same run",
    }


def vs_baseline(now: dict[str, Any], base: dict[str, Any]) -> dict[str, float]:
    """This code's figures over the baseline's (ready: < 1 is faster; req/s: > 1 is more)."""
    return {
        "ready_s_ratio": round(now["ready_s"] / base["ready_s"], 3),
        "ready_cpu_s_ratio": round(now["ready_cpu_s"] / base["ready_cpu_s"], 3),
        "score_rps_ratio": round(
            now["score"]["throughput_rps"] / base["score"]["throughput_rps"], 3
        ),
        "score_p99_ratio": round(now["score"]["p99_ms"] / base["score"]["p99_ms"], 3),
    }


def _bench_one(
    run: ServerRun,
    port: int,
    env: dict[str, str],
    scratch: Path,
    cwd: Path,
    startup_timeout_s: float,
    payloads: list[bytes],
    clients: int,
    warmup: int,
    headers: dict[str, str],
    progress: Callable[[int], None],
) -> dict[str, Any]:
    log_path = scratch / f"{run.name}.log"
    started = time.perf_counter()
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            run.argv,
            env=env,
            cwd=cwd,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        try:
            ready = wait_ready(port, startup_timeout_s, proc)
        except (RuntimeError, TimeoutError) as exc:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{run.name}: {exc}\n--- server log ---\n{tail}") from exc
        ready_s = time.perf_counter() - started
        ready_cpu_s = tree_cpu_s(proc.pid)
        load = load_test(port, payloads, clients, warmup, headers, progress, paths=run.paths)
    finally:
        stop_server(proc)
    online = (ready.get("dependencies") or {}).get("online_store") or {}
    server = {k: ready.get(k) for k in ("model_source", "model_version")}
    server["online_store"] = online.get("reason") or online.get("status")
    return {
        "ready_s": round(ready_s, 2),
        "ready_cpu_s": round(ready_cpu_s, 2),
        "server": server,
        **load,
    }


def tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a server's live process tree has used so far: unlike the
    wall time to ready, it hardly depends on what else the machine is doing."""
    import psutil

    root = psutil.Process(pid)
    total = 0.0
    for p in [root, *root.children(recursive=True)]:
        try:
            t = p.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system
    return total


def load_test(
    port: int,
    payloads: list[bytes],
    clients: int,
    warmup: int,
    headers: dict[str, str],
    progress: Callable[[int], None],
    rounds: int = 4,
    paths: Sequence[str] = ("/echo", "/score"),
) -> dict[str, Any]:
    """Drive `paths` of a running server; the first `warmup` payloads warm each."""
    ctx = multiprocessing.get_context("spawn")
    measured: dict[str, list] = {p: [] for p in paths}
    walls = dict.fromkeys(paths, 0.0)
    errors = 0
    with ctx.Pool(clients) as pool:
        for path in paths:
            drive(pool, port, path, payloads[:warmup], clients, headers)
        progress(warmup)
        body = payloads[warmup:]
        for r in range(rounds):
            part = body[r::rounds]
            for path in paths:
                out = drive(pool, port, path, part, clients, headers)
                measured[path] += out["samples"]
                walls[path] += out["wall_s"]
                errors += out["errors"]
            progress(len(part))
    stats = {
        p.strip("/"): {
            **latency_ms(measured[p]),
            "throughput_rps": round(len(measured[p]) / walls[p]),
        }
        for p in measured
    }
    if "score" not in stats:
        return {**stats, "errors": errors}
    score, echo = stats["score"], stats["echo"]
    return {
        "score": score,
        "echo": echo,
        "overhead": {
            "p50_ratio": round(score["p50_ms"] / echo["p50_ms"], 3),
            "p99_ratio": round(score["p99_ms"] / echo["p99_ms"], 3),
            "p50_added_ms": round(score["p50_ms"] - echo["p50_ms"], 3),
        },
        "errors": errors,
    }
