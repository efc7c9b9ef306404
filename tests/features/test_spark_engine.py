"""The Spark engine builds exactly the tables the embedded engine builds.

Fast tests cover the wire form that carries tables through Spark (NaN stays apart from
null, timestamps keep their microseconds); the slow ones start Spark in local mode (Java
17+ needed: they skip, saying so, only when no Java runtime is found) and compare both
engines on a simulated month written to a real event store.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import typer
from hypothesis import given
from hypothesis import strategies as st
from pipeline_factory import REPO_CONFIGS

from core.layout import Layout
from core.settings import ConfigError, load_config, parse_config
from core.vocabulary import ActionType, Outcome
from features.config import EventsConfig
from features.ingest.event_store import ingest
from features.pipeline import cli as pipeline_cli
from features.pipeline.build import (
    UNIQUE_KEYS,
    BuildError,
    PipelineConfigs,
    build_features,
    oracle_path,
)
from features.pipeline.spark import (
    Inputs,
    SparkUnavailable,
    build_on_spark,
    check_java,
    from_wire,
    layout_inputs,
    pack,
    read_tables,
    spark_session,
    to_wire,
    union_schema,
    unpack,
    write_inputs,
)
from features.pipeline.spark_config import SparkConfig
from features.simulator.hook import Intervention, MomentContext

TS = pa.timestamp("us", tz="UTC")
# Sized for a test on a shared 2-core machine: few buckets, few shuffle partitions.
TEST_SPARK = {
    "local_cores": 2,
    "driver_memory": "1g",
    "session_buckets": 2,
    "user_buckets": 2,
    "shuffle_partitions": 2,
    "network_timeout_s": 600,
    "heartbeat_interval_s": 60,
}


def same(a: object, b: object) -> bool:
    """Equal values, NaN equal to NaN but never to null."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b and (a is None) == (b is None)


def differences(expected: pa.Table, got: pa.Table, keys: list[str]) -> list[str]:
    """Human-readable differences between two tables compared row by row in key order."""
    if expected.schema != got.schema:
        return [f"schema differs:\n{expected.schema}\nvs\n{got.schema}"]
    if expected.num_rows != got.num_rows:
        return [f"{expected.num_rows} rows expected, got {got.num_rows}"]
    if keys:
        order = [(k, "ascending") for k in keys]
        expected, got = expected.sort_by(order), got.sort_by(order)
    out = []
    for name in expected.column_names:
        a, b = expected.column(name).to_pylist(), got.column(name).to_pylist()
        bad = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if not same(x, y)]
        if bad:
            i = bad[0]
            out.append(f"{name}: {len(bad)} rows differ, e.g. row {i}: {a[i]!r} vs {b[i]!r}")
    return out


# --- the wire form (no Spark) ---------------------------------------------------------------

floats = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True))
micros = st.one_of(st.none(), st.integers(min_value=0, max_value=4_102_444_800_000_000))


@given(st.lists(st.tuples(floats, micros, st.one_of(st.none(), st.text(max_size=5)))))
def test_wire_round_trip_keeps_nan_null_and_microseconds(rows) -> None:
    schema = pa.schema([("x", pa.float64()), ("at", TS), ("s", pa.string())])
    table = pa.table(
        {
            "x": pa.array([r[0] for r in rows], pa.float64()),
            "at": pa.array([r[1] for r in rows], pa.int64()).cast(TS),
            "s": pa.array([r[2] for r in rows], pa.string()),
        },
        schema=schema,
    )
    wire = to_wire(table)
    assert wire.schema.field("at").type == pa.int64()
    back = from_wire(wire, schema)
    assert differences(table, back, []) == []
    # NaN and null are still told apart after the round trip
    x = back.column("x")
    assert x.null_count == sum(r[0] is None for r in rows)
    nan = sum(r[0] is not None and math.isnan(r[0]) for r in rows)
    assert (pc.sum(pc.is_nan(x)).as_py() or 0) == nan


def test_pack_keeps_kinds_apart_even_when_names_clash() -> None:
    """A snapshot's float `help_opens` and a summary's integer one travel in one table."""
    floats_ = pa.table({"session_id": ["a", "b"], "help_opens": [1.5, float("nan")]})
    ints = pa.table({"session_id": ["c"], "help_opens": pa.array([None], pa.int64())})
    kinds = {"snap": floats_.schema, "summary": ints.schema}
    union = union_schema(kinds)
    packed = pack({"snap": floats_, "summary": ints}, union)
    assert packed.num_rows == 3
    assert union.field("snap__help_opens").type == pa.float64()
    assert union.field("summary__help_opens").type == pa.int64()
    assert differences(floats_, unpack_prefixed(packed, "snap", floats_.schema), []) == []
    assert differences(ints, unpack_prefixed(packed, "summary", ints.schema), []) == []


def unpack_prefixed(packed: pa.Table, kind: str, schema: pa.Schema) -> pa.Table:
    """What the driver does with a packed UDF output: select one kind, strip the prefix."""
    rows = packed.filter(pc.equal(packed.column("kind"), kind))
    plain = pa.table({f.name: rows.column(f"{kind}__{f.name}") for f in schema})
    return unpack(plain.append_column("kind", rows.column("kind")), kind, schema)


def test_spark_config_rejects_a_heartbeat_longer_than_the_timeout() -> None:
    bad = TEST_SPARK | {"heartbeat_interval_s": 900}
    with pytest.raises(ConfigError, match="heartbeat_interval_s must be below"):
        parse_config(SparkConfig, bad, source="spark.yaml")
    with pytest.raises(ConfigError, match="driver_memory"):
        parse_config(SparkConfig, TEST_SPARK | {"driver_memory": "lots"}, source="spark.yaml")


def test_repo_spark_config_loads() -> None:
    cfg = load_config(SparkConfig, REPO_CONFIGS / SparkConfig.file_name)
    assert cfg.local_cores >= 1


# --- both engines on a simulated month (Spark local mode) ----------------------------------


class EveryThirdTip:
    """A dispatcher showing a contextual tip at every third micro-moment, so trigger events
    (and the user_triggers_* aggregates) are in the data."""

    def __init__(self) -> None:
        self.calls = 0

    def decide(self, ctx: MomentContext) -> Intervention:
        self.calls += 1
        action = ActionType.CONTEXTUAL_TIP if self.calls % 3 == 0 else ActionType.NONE
        return Intervention(action, f"{ctx.session_id}:{ctx.now:.6f}")

    def observe(self, decision_id: str, outcome: Outcome, now: float) -> None:
        return None


@pytest.fixture(scope="module")
def spark():
    try:
        check_java()
    except SparkUnavailable as exc:
        pytest.skip(f"Spark engine not testable here: {exc}")
    with spark_session(parse_config(SparkConfig, TEST_SPARK)) as session:
        yield session


@pytest.fixture(scope="module")
def stored_month(tmp_path_factory) -> Layout:
    """A validated event store (and oracle) of 60 simulated users over 30 days."""
    from features.simulator import SimulatorConfig, simulate

    layout = Layout.under(tmp_path_factory.mktemp("month"), configs=REPO_CONFIGS)
    configs = PipelineConfigs.load(layout)
    sim = simulate(
        load_config(SimulatorConfig, layout=layout),
        configs.signals,
        configs.funnel,
        users=60,
        days=30,
        seed=5,
        policy=EveryThirdTip(),
    )
    now = pc.max(sim.events.column("ts")).as_py() + timedelta(days=1)
    report = ingest(layout, sim.events, load_config(EventsConfig, layout=layout), now)
    assert report.written > 1000
    oracle_path(layout).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(sim.oracle, oracle_path(layout))
    return layout


def with_label_kind(layout: Layout, kind: str, folder: Path) -> Layout:
    """`layout` with signals.yaml's label_kind set to `kind` (an overlay config folder)."""
    folder.mkdir()
    text = (REPO_CONFIGS / "signals.yaml").read_text()
    assert "label_kind: horizon" in text
    (folder / "signals.yaml").write_text(text.replace("label_kind: horizon", f"label_kind: {kind}"))
    return Layout.under(layout.root, configs=[folder, REPO_CONFIGS])


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("label_kind", ["horizon", "session_end"])
def test_spark_and_embedded_engines_write_identical_tables(
    spark, stored_month, tmp_path, label_kind
):
    layout = with_label_kind(stored_month, label_kind, tmp_path / "configs")
    configs = PipelineConfigs.load(layout)
    assert configs.signals.label_kind == label_kind
    embedded = build_features(layout)
    expected = read_tables(layout.features)

    out = tmp_path / "spark"
    summary = build_on_spark(
        spark, layout_inputs(layout), configs, parse_config(SparkConfig, TEST_SPARK), out
    )
    got = read_tables(out)

    for name, keys in UNIQUE_KEYS.items():
        assert expected[name].num_rows > 0, name
        assert differences(expected[name], got[name], keys) == [], name
    # the data exercises what could go wrong: bots, censoring, the oracle, triggers
    assert embedded.bot_sessions > 0
    assert embedded.censored > 0
    assert expected["decision_points"].column("oracle_p").null_count < embedded.decision_points
    assert pc.max(expected["user_stats"].column("user_triggers_shown_30d")).as_py() > 0
    skip = {"seconds"}
    assert {k: v for k, v in vars(summary).items() if k not in skip} == {
        k: v for k, v in vars(embedded).items() if k not in skip
    }


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_spark_refuses_sessions_without_a_bot_score(spark, tmp_path) -> None:
    configs = PipelineConfigs.load(Layout.under(tmp_path, configs=REPO_CONFIGS))
    t0 = datetime(2025, 3, 3, 9, tzinfo=UTC)
    events = pa.table(
        {
            "event_id": ["e1", "e2"],
            "session_id": ["s1", "s2"],
            "user_id": ["u1", "u2"],
            "anonymous_id": pa.nulls(2, pa.string()),
            "ts": pa.array([t0, t0 + timedelta(seconds=5)], TS),
            "type": ["step_view", "step_view"],
            "step": ["welcome", "welcome"],
            "target": pa.nulls(2, pa.string()),
            "value": pa.nulls(2, pa.float64()),
            "device": ["desktop", "desktop"],
            "channel": ["organic", "organic"],
        }
    )
    scores = pa.table({"session_id": ["s1"], "bot_score": [0.0], "is_bot": [False]})
    inputs: Inputs = write_inputs(tmp_path / "in", events, scores)
    with pytest.raises(BuildError, match="1 of 2 sessions have no bot score; run `intent valid"):
        build_on_spark(spark, inputs, configs, parse_config(SparkConfig, TEST_SPARK), tmp_path)


# --- commands -------------------------------------------------------------------------------


def test_build_command_names_the_engines_when_given_an_unknown_one() -> None:
    from typer.testing import CliRunner

    app = typer.Typer()
    pipeline_cli.register(app)
    result = CliRunner().invoke(app, ["features", "build", "--engine", "flink"])
    assert result.exit_code == 1
    assert "unknown engine 'flink'; use one of: embedded, spark" in result.output


def test_bench_scale_rejects_a_malformed_scale_list() -> None:
    from typer.testing import CliRunner

    app = typer.Typer()
    pipeline_cli.register(app)
    result = CliRunner().invoke(app, ["bench", "features", "--scale", "1,x"])
    assert result.exit_code == 1
    assert "--scale must be comma-separated whole numbers" in result.output


def test_growth_compares_each_scale_with_the_smallest() -> None:
    from bench.scale import growth

    runs = [
        {"engine": "spark", "cores": 2, "scale": s, "events": e, "build_s": t}
        for s, e, t in ((1, 1000, 10.0), (4, 4100, 30.0), (16, 15000, 200.0))
    ]
    got = growth(runs)
    assert [(g["scale"], g["work_ratio"], g["time_ratio"]) for g in got] == [
        (4, 4.1, 3.0),
        (16, 15.0, 20.0),
    ]
