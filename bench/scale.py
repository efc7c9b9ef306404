"""`intent bench features --scale 1,4,16`: the cost-vs-work curve of both feature engines.

Each scale simulates `base_users x scale` users over the same days (so events grow with the
scale), then times a whole build (replay, labels, aggregates, the four files written) with
the embedded engine (`--workers` processes) and the Spark engine (local[N]) for every core
count. Every build runs in its own child process so its peak memory is its own: the parent
samples the resident memory of the child's whole process tree (Python, JVM, Spark's Python
workers) and keeps the maximum. Spark's JVM start is timed apart from the build: it is paid
once per job, not per event.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from core.layout import Layout

ENGINES: tuple[str, ...] = ("embedded", "spark")
RESULT_PREFIX = "SCALE-BENCH-RESULT "
# How often the parent samples the child's memory; a build lasts seconds to minutes.
SAMPLE_EVERY_S = 0.1
# A child may take long on a busy machine (JVM start, 16x data); this only stops a hang.
CHILD_LIMIT_S = 3 * 3600


def run_scale_bench(
    layout: Layout,
    *,
    scales: Sequence[int],
    base_users: int,
    days: int,
    seed: int,
    cores: Sequence[int],
    engines: Sequence[str] = ENGINES,
    progress: Callable[[str], None] = lambda _text: None,
) -> dict:
    """Time every engine x core count at every scale; returns the JSON-able result."""
    from bench.pipeline import simulated_events
    from features.pipeline.spark import write_inputs

    runs = []
    with tempfile.TemporaryDirectory(prefix="scale-bench-") as tmp:
        for scale in scales:
            users = base_users * scale
            progress(f"scale {scale}: simulating {users:,} users x {days} days")
            events, bots, _ = simulated_events(layout, users, days, seed)
            inputs = write_inputs(Path(tmp) / f"in-{scale}", events, bots)
            for engine in engines:
                for n in cores:
                    progress(f"scale {scale}: {engine} on {n} core(s), {events.num_rows:,} events")
                    out = Path(tmp) / f"out-{scale}-{engine}-{n}"
                    measured = measure_child(engine, n, inputs.events.parent, out)
                    run = {"scale": scale, "users": users, "engine": engine, "cores": n}
                    runs.append(run | measured)
                    progress(json.dumps(runs[-1]))  # partial results survive an interruption
    return {
        "simulated": f"{base_users} users x scale, {days} days, seed {seed}",
        "runs": runs,
        "growth": growth(runs),
    }


def growth(runs: list[dict]) -> list[dict]:
    """Per engine and cores: time and work at each scale relative to the smallest scale
    (linear cost means time_ratio <= work_ratio)."""
    out = []
    for key in sorted({(r["engine"], r["cores"]) for r in runs}):
        mine = sorted(
            (r for r in runs if (r["engine"], r["cores"]) == key), key=lambda r: r["scale"]
        )
        base = mine[0]
        for r in mine[1:]:
            out.append(
                {
                    "engine": key[0],
                    "cores": key[1],
                    "scale": r["scale"],
                    "work_ratio": round(r["events"] / base["events"], 2),
                    "time_ratio": round(r["build_s"] / base["build_s"], 2),
                }
            )
    return out


def measure_child(engine: str, cores: int, inputs: Path, out: Path) -> dict:
    """Run one build in a child process; its timings plus the tree's peak RSS (MB)."""
    import psutil

    log = out.with_suffix(".log")
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "bench.scale", engine, str(cores), str(inputs), str(out)]
    peak = 0
    start = time.perf_counter()
    with log.open("w") as err:
        child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True)
        root = psutil.Process(child.pid)
        while child.poll() is None:
            peak = max(peak, _tree_rss(root))
            if time.perf_counter() - start > CHILD_LIMIT_S:
                child.kill()
                raise RuntimeError(f"{engine} build exceeded {CHILD_LIMIT_S} s; see {log}")
            time.sleep(SAMPLE_EVERY_S)
        stdout = child.stdout.read() if child.stdout else ""
    lines = [x for x in stdout.splitlines() if x.startswith(RESULT_PREFIX)]
    if child.returncode != 0 or not lines:
        tail = log.read_text()[-2000:]
        raise RuntimeError(f"{engine} build failed (exit {child.returncode}): {tail}")
    result = json.loads(lines[-1].removeprefix(RESULT_PREFIX))
    result["peak_rss_mb"] = round(peak / 2**20)
    result["events_per_s"] = round(result["events"] / result["build_s"])
    return result


def _tree_rss(root) -> int:
    import psutil

    total = 0
    try:
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total


def write_curve(result: dict, path: Path) -> Path:
    """Build time and throughput against events, one line per engine and core count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = result["runs"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for key in sorted({(r["engine"], r["cores"]) for r in runs}):
        mine = sorted(
            (r for r in runs if (r["engine"], r["cores"]) == key), key=lambda r: r["events"]
        )
        x = [r["events"] for r in mine]
        label = f"{key[0]}, {key[1]} core{'s' if key[1] > 1 else ''}"
        left.plot(x, [r["build_s"] for r in mine], marker="o", label=label)
        right.plot(x, [r["events_per_s"] for r in mine], marker="o", label=label)
    if runs:
        lo = min(r["events"] for r in runs)
        hi = max(r["events"] for r in runs)
        first = min(runs, key=lambda r: r["events"])
        left.plot([lo, hi], [first["build_s"], first["build_s"] * hi / lo], "k:", label="linear")
    left.set(xscale="log", yscale="log", xlabel="events", ylabel="build wall time (s)")
    right.set(xscale="log", xlabel="events", ylabel="events / s (build)")
    left.set_title("cost vs work")
    right.set_title("throughput")
    left.legend(fontsize=8)
    right.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# --- the child: one build, timings on stdout ---------------------------------------------


def child_build(engine: str, cores: int, inputs: Path, out: Path) -> dict:
    """One whole build of `inputs` (write_inputs layout) into `out`, timed."""
    import pyarrow.parquet as pq

    from core.settings import load_config
    from features.pipeline.build import PipelineConfigs, build_tables
    from features.pipeline.spark import Inputs, build_on_spark, spark_session
    from features.pipeline.spark_config import SparkConfig

    layout = Layout.from_env()
    configs = PipelineConfigs.load(layout)
    if engine == "embedded":
        start = time.perf_counter()
        events = pq.read_table(inputs / "events.parquet")
        bots = pq.read_table(inputs / "bot_scores.parquet")
        tables = build_tables(events, bots, configs, workers=cores)
        out.mkdir(parents=True, exist_ok=True)
        for name, table in tables.as_dict().items():
            pq.write_table(table, out / f"{name}.parquet")
        build_s = time.perf_counter() - start
        summary, startup_s = tables.summary, 0.0
    elif engine == "spark":
        cfg = load_config(SparkConfig, layout=layout)
        start = time.perf_counter()
        with spark_session(cfg, cores=cores) as spark:
            startup_s = time.perf_counter() - start
            start = time.perf_counter()
            summary = build_on_spark(
                spark,
                Inputs(inputs / "events.parquet", inputs / "bot_scores.parquet"),
                configs,
                cfg,
                out,
            )
            build_s = time.perf_counter() - start
    else:
        raise ValueError(f"unknown engine {engine!r}; use one of {ENGINES}")
    return {
        "events": summary.events,
        "training_rows": summary.decision_points,
        "startup_s": round(startup_s, 2),
        "build_s": round(build_s, 2),
        "stages_s": {k: round(v, 2) for k, v in summary.seconds.items()},
    }


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.scale")
    parser.add_argument("engine", choices=ENGINES)
    parser.add_argument("cores", type=int)
    parser.add_argument("inputs", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    result = child_build(args.engine, args.cores, args.inputs, args.out)
    print(RESULT_PREFIX + json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
