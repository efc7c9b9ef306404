"""Thin commands over the Spark engine: `features build --engine spark`, `bench features --scale`.

They live apart from `features/pipeline/cli.py` so that module only gains the two options.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import typer

from core import cli_kit as kit

if TYPE_CHECKING:
    from core.layout import Layout
    from features.pipeline.build import BuildSummary

ENGINES = ("embedded", "spark")


def build_with_spark(layout: Layout, engine: str) -> BuildSummary:
    """Run the Spark build on the layout's event store; print where the tables went."""
    from core.settings import ConfigError
    from features.pipeline.build import BuildError, table_paths
    from features.pipeline.spark import SparkUnavailable, build_features_spark

    if engine not in ENGINES:
        raise kit.fail(f"unknown engine {engine!r}; use one of: {', '.join(ENGINES)}")
    try:
        with kit.err.status("building features on Spark (local mode, configs/spark.yaml)"):
            summary = build_features_spark(layout)
    except (BuildError, SparkUnavailable, ConfigError) as exc:
        raise kit.fail(str(exc)) from None
    for name, path in table_paths(layout).items():
        kit.err.print(f"  {name:<18} {summary.rows[name]:>9,} rows  {path}", highlight=False)
    return summary


def parse_ints(text: str, what: str) -> list[int]:
    """'1,4,16' -> [1, 4, 16]; a clear error for anything else."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise kit.fail(f"{what} must be comma-separated whole numbers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise kit.fail(f"{what} must be whole numbers >= 1, got {text!r}")
    return values


def bench_scale(scale: str, *, users: int, days: int, seed: int, workers: list[int] | None) -> None:
    """`intent bench features --scale 1,4,16`: JSON on stdout, a PNG under data/reports/."""
    from bench.scale import run_scale_bench, write_curve
    from core.layout import Layout
    from features.pipeline.build import BuildError

    layout = Layout.from_env()
    scales = parse_ints(scale, "--scale")
    try:
        result = run_scale_bench(
            layout,
            scales=scales,
            base_users=users,
            days=days,
            seed=seed,
            cores=workers or [1, 2],
            progress=lambda text: kit.err.print(text, highlight=False),
        )
    except BuildError as exc:
        raise kit.fail(str(exc)) from None
    result["png"] = str(write_curve(result, layout.reports / "features_scale.png"))
    typer.echo(json.dumps(result, indent=2))
