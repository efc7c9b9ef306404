"""`intent features build --engine spark`: the offline feature build on PySpark.

Why: one Python process replays ~100 k events/s and holds the whole month in memory; Spark
spreads the same work over cores (local mode) or executors (a cluster) with memory bounded
by a partition. There is still one definition of every signal, label and aggregate: each
stage is a `groupBy(...).applyInArrow` whose function calls the embedded engine's own
functions (`replay_events`, `session_summaries`, `completion_events`, `label_points`,
`attach_oracle`, `user_stats`, `step_stats`) on one partition. Spark only moves rows.

Stages (each a shuffle):

1. events by hash bucket of `session_id`: replay the human sessions (decisions, snapshots,
   step visits, gaps), summarise them, and list every session's completions (bots too: a
   completion is a fact about the user);
2. by hash bucket of the session's user: label decisions, attach the oracle, user_stats;
3. by step: step_stats over the sessions that reached the step, plus the data's earliest
   session (the step grid starts the day after it, as in the embedded SQL).

Timestamps cross Spark as int64 epoch microseconds ("wire" form), so Spark's session time
zone never touches them; arrow batches keep NaN apart from null. Output files are the same
four parquet tables (`features.pipeline.build.TABLES`) with the same schemas and rows (row order may
differ: every table is unique on `features.pipeline.build.UNIQUE_KEYS`, which is checked).
"""

from __future__ import annotations

import functools
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from core.layout import Layout
from features.pipeline.aggregates import (
    STEP_STATS_SCHEMA,
    SUMMARY_SCHEMA,
    session_summaries,
    step_stats,
    user_stats,
    user_stats_schema,
)
from features.pipeline.build import (
    DECISION_POINTS_SCHEMA,
    SESSION_SNAPSHOTS_SCHEMA,
    TABLES,
    UNIQUE_KEYS,
    BuildError,
    BuildSummary,
    PipelineConfigs,
    _check_unique,
    _decision_rows,
    _snapshot_rows,
    label_points,
    oracle_path,
    table_paths,
)
from features.pipeline.labels import (
    COMPLETION_SCHEMA,
    attach_oracle,
    completion_events,
)
from features.pipeline.replay import (
    DECISION_SCHEMA,
    GAP_SCHEMA,
    SNAPSHOT_SCHEMA,
    VISIT_SCHEMA,
    ReplayTables,
    replay_events,
)
from features.pipeline.spark_config import SparkConfig

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

KIND = "kind"
BUCKET = "bucket"
# Event columns the build reads; `ts` travels as `ts_us` (epoch microseconds).
EVENT_COLUMNS: tuple[str, ...] = (
    "event_id",
    "session_id",
    "user_id",
    "anonymous_id",
    "type",
    "step",
    "target",
    "value",
    "device",
    "channel",
)
ORACLE_WIRE = pa.schema(
    [
        ("session_id", pa.string()),
        ("step", pa.string()),
        ("ts_from", pa.float64()),
        ("p_abandon", pa.float64()),
    ]
)


class SparkUnavailable(RuntimeError):
    """Spark cannot start here (no Java, no pyspark): the message says what to install."""


# --- wire form: tables as Spark carries them -----------------------------------------------


def wire_schema(schema: pa.Schema) -> pa.Schema:
    """`schema` with timestamps as int64 epoch microseconds and every field nullable."""
    return pa.schema(
        pa.field(f.name, pa.int64() if pa.types.is_timestamp(f.type) else f.type) for f in schema
    )


def to_wire(table: pa.Table) -> pa.Table:
    """Timestamps -> int64 epoch microseconds (UTC), other columns as they are."""
    for i, f in enumerate(table.schema):
        if pa.types.is_timestamp(f.type):
            us = table.column(i).cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
            table = table.set_column(i, pa.field(f.name, pa.int64()), us)
    return table


def from_wire(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """The inverse of `to_wire`: `schema`'s columns, in its order and types."""
    columns = []
    for f in schema:
        column = table.column(f.name)
        if pa.types.is_timestamp(f.type):
            column = column.cast(pa.int64()).cast(f.type)
        columns.append(column.cast(f.type))
    return pa.Table.from_arrays(columns, schema=schema)


def union_schema(kinds: Mapping[str, pa.Schema]) -> pa.Schema:
    """One wire schema holding every kind's columns as `<kind>__<column>` (plus `kind`):
    kinds may share a name with different types (a snapshot's float `help_opens`, a
    summary's integer one), so one UDF can still return them all."""
    fields = [pa.field(KIND, pa.string())]
    for kind, schema in kinds.items():
        fields += [pa.field(f"{kind}__{f.name}", f.type) for f in wire_schema(schema)]
    return pa.schema(fields)


def pack(parts: Mapping[str, pa.Table], union: pa.Schema) -> pa.Table:
    """Tables of different kinds as one table of `union` (other kinds' columns null)."""
    tables = []
    for kind, table in parts.items():
        table = to_wire(table)
        n = table.num_rows
        arrays = []
        for f in union:
            own = f.name.removeprefix(f"{kind}__")
            if f.name == KIND:
                arrays.append(pa.array([kind] * n, pa.string()))
            elif own != f.name:
                arrays.append(table.column(own).cast(f.type))
            else:
                arrays.append(pa.nulls(n, f.type))
        tables.append(pa.Table.from_arrays(arrays, schema=union))
    return pa.concat_tables(tables) if tables else union.empty_table()


def unpack(table: pa.Table, kind: str, schema: pa.Schema) -> pa.Table:
    """The rows of one kind in a packed input table, as `schema`."""
    if table.num_rows == 0 or KIND not in table.column_names:
        return schema.empty_table()
    rows = table.filter(pc.equal(table.column(KIND), kind))
    return from_wire(rows, schema) if rows.num_rows else schema.empty_table()


# --- the per-partition functions (run in Spark's Python workers) --------------------------

SESSION_OUT = {
    "decisions": DECISION_SCHEMA,
    "snapshots": SESSION_SNAPSHOTS_SCHEMA,
    "visits": VISIT_SCHEMA,
    "gaps": GAP_SCHEMA,
    "summaries": SUMMARY_SCHEMA,
    "completions": COMPLETION_SCHEMA,
}
USER_IN = {
    "decisions": DECISION_SCHEMA,
    "summaries": SUMMARY_SCHEMA,
    "gaps": GAP_SCHEMA,
    "completions": COMPLETION_SCHEMA,
    "oracle": ORACLE_WIRE,
}


def user_out(configs: PipelineConfigs) -> dict[str, pa.Schema]:
    # labelled decision points keep null labels (censored): the driver counts then drops them
    points = DECISION_POINTS_SCHEMA.set(
        DECISION_POINTS_SCHEMA.get_field_index("label"), pa.field("label", pa.int64())
    )
    return {"points": points, "user_stats": user_stats_schema(configs.aggregates)}


STEP_IN = {"summaries": SUMMARY_SCHEMA, "visits": VISIT_SCHEMA, "gaps": GAP_SCHEMA}
STEP_OUT = {"step_stats": STEP_STATS_SCHEMA}


def events_from_wire(table: pa.Table) -> pa.Table:
    """Canonical event columns (with `ts`) from the wire columns of a partition."""
    ts = table.column("ts_us").cast(pa.int64()).cast(pa.timestamp("us", tz="UTC"))
    cols = {n: table.column(n) for n in EVENT_COLUMNS}
    return pa.table(cols | {"ts": ts})


def session_partition(table: pa.Table, configs: PipelineConfigs) -> pa.Table:
    """Stage 1 on one bucket of sessions: replay + summaries of the human ones, completions
    of all. `table` holds the bucket's events (wire form) with a boolean `is_bot`."""
    union = union_schema(SESSION_OUT)
    if table.num_rows == 0:
        return union.empty_table()
    events = events_from_wire(table)
    is_bot = pc.fill_null(table.column("is_bot"), False)
    human = events.filter(pc.invert(is_bot))
    parts = {"completions": completion_events(events)}
    if human.num_rows:
        replayed = replay_events(human, configs.signals, workers=1)
        gap_s = configs.events.session_gap_minutes * 60
        parts |= {
            "decisions": replayed.decisions,
            "snapshots": _snapshot_rows(replayed.snapshots),
            "visits": replayed.visits,
            "gaps": replayed.gaps,
            "summaries": session_summaries(human, replayed.visits, configs.funnel, gap_s),
        }
    return pack(parts, union)


def user_partition(
    table: pa.Table, configs: PipelineConfigs, data_end: float, with_oracle: bool
) -> pa.Table:
    """Stage 2 on one bucket of users: labelled decision points and user_stats."""
    out = user_out(configs)
    union = union_schema(out)
    parts = {k: unpack(table, k, schema) for k, schema in USER_IN.items()}
    summaries = parts["summaries"]
    if summaries.num_rows == 0:
        return union.empty_table()
    empty = ReplayTables(
        parts["decisions"],
        SNAPSHOT_SCHEMA.empty_table(),
        VISIT_SCHEMA.empty_table(),
        GAP_SCHEMA.empty_table(),
        0,
        0,
    )
    labelled = label_points(
        _decision_rows(empty, summaries), parts["completions"], summaries, configs, data_end
    )
    if with_oracle:
        labelled = attach_oracle(labelled, parts["oracle"])
    else:
        labelled = labelled.append_column("oracle_p", pa.nulls(labelled.num_rows, pa.float64()))
    points = labelled.select(out["points"].names).cast(out["points"])
    users = user_stats(summaries, parts["gaps"], configs.aggregates, data_end)
    return pack({"points": points, "user_stats": users}, union)


def step_partition(table: pa.Table, configs: PipelineConfigs, data_end: float) -> pa.Table:
    """Stage 3 on one step: its daily statistics."""
    union = union_schema(STEP_OUT)
    parts = {k: unpack(table, k, schema) for k, schema in STEP_IN.items()}
    if parts["visits"].num_rows == 0:
        return union.empty_table()
    stats = step_stats(
        parts["summaries"], parts["visits"], parts["gaps"], configs.aggregates, data_end
    )
    return pack({"step_stats": stats}, union)


# --- the Spark session --------------------------------------------------------------------


def check_java() -> None:
    """Raise SparkUnavailable when no Java runtime is reachable (Spark needs Java 17+)."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home and Path(java_home, "bin", "java").exists():
        return
    if shutil.which("java") is None:
        raise SparkUnavailable(
            "the Spark engine needs a Java 17+ runtime and none was found (no JAVA_HOME, no "
            "`java` on PATH); install one (e.g. `apt-get install openjdk-17-jre-headless`) "
            "or use `--engine embedded`"
        )


@contextmanager
def spark_session(cfg: SparkConfig, *, cores: int | None = None) -> Iterator[SparkSession]:
    """A local-mode SparkSession sized by configs/spark.yaml, stopped on exit.

    Workers run this interpreter (the project's venv), so they import the same modules.
    """
    check_java()
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:  # pragma: no cover - pyspark is a project dependency
        raise SparkUnavailable(f"pyspark is not installed ({exc}); run `make install`") from exc
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    n = cores or cfg.local_cores
    builder = (
        SparkSession.builder.master(f"local[{n}]")
        .appName("intent-features")
        .config("spark.driver.memory", cfg.driver_memory)
        .config("spark.sql.shuffle.partitions", str(cfg.shuffle_partitions))
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.sources.partitionColumnTypeInference.enabled", "false")
        .config("spark.network.timeout", f"{cfg.network_timeout_s}s")
        .config("spark.executor.heartbeatInterval", f"{cfg.heartbeat_interval_s}s")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.pyspark.python", sys.executable)
    )
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    try:
        yield spark
    finally:
        spark.stop()


# --- the build ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Inputs:
    """Parquet locations of a build's inputs (a file or a directory each)."""

    events: Path
    bot_scores: Path
    oracle: Path | None = None


def _spark_schema(schema: pa.Schema):
    from pyspark.sql.pandas.types import from_arrow_schema

    return from_arrow_schema(schema)


def _apply(df: DataFrame, key, fn: Callable[[pa.Table], pa.Table], out: pa.Schema) -> DataFrame:
    def run(table: pa.Table) -> pa.Table:  # typed: pyspark infers the UDF kind from hints
        return fn(table)

    return df.groupBy(key).applyInArrow(run, _spark_schema(out))


def _kind(df: DataFrame, kind: str, schema: pa.Schema) -> DataFrame:
    from pyspark.sql import functions as F

    return df.where(F.col(KIND) == kind).select(
        *[F.col(f"{kind}__{name}").alias(name) for name in schema.names]
    )


def _tagged(df: DataFrame, kind: str) -> DataFrame:
    from pyspark.sql import functions as F

    return df.withColumn(KIND, F.lit(kind))


def _read_events(spark: SparkSession, path: Path) -> DataFrame:
    from pyspark.sql import functions as F

    df = spark.read.parquet(str(path))
    return df.select(*EVENT_COLUMNS, F.unix_micros(F.col("ts")).alias("ts_us"))


def _read_oracle(spark: SparkSession, path: Path) -> DataFrame:
    """The oracle with ts_from as epoch seconds (the same arithmetic as the embedded build)."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import TimestampNTZType, TimestampType

    df = spark.read.parquet(str(path))
    missing = {"session_id", "step", "ts_from", "p_abandon"} - set(df.columns)
    if missing:
        raise BuildError(f"oracle table lacks columns: {', '.join(sorted(missing))}")
    kind = df.schema["ts_from"].dataType
    if isinstance(kind, TimestampType | TimestampNTZType):
        ts = F.unix_micros(F.col("ts_from").cast("timestamp")) / F.lit(1e6)
    else:
        ts = F.col("ts_from").cast("double")
    return df.select("session_id", "step", ts.alias("ts_from"), F.col("p_abandon").cast("double"))


def build_on_spark(
    spark: SparkSession,
    inputs: Inputs,
    configs: PipelineConfigs,
    spark_cfg: SparkConfig,
    out_dir: Path,
) -> BuildSummary:
    """Build the four feature tables with Spark and write them as single parquet files under
    `out_dir` (`<table>.parquet`, atomically replaced); returns the build summary."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    seconds: dict[str, float] = {}
    clock = time.perf_counter()
    bots = spark.read.parquet(str(inputs.bot_scores))
    missing = {"session_id", "is_bot"} - set(bots.columns)
    if missing:
        raise BuildError(f"bot scores lack columns: {', '.join(sorted(missing))}")
    scored = bots.select("session_id", F.coalesce("is_bot", F.lit(False)).alias("is_bot"))
    scored = scored.groupBy("session_id").agg(F.max("is_bot").alias("is_bot")).persist()
    flagged = _read_events(spark, inputs.events).join(scored, "session_id", "left")
    flagged = flagged.persist(StorageLevel.MEMORY_AND_DISK)
    unscored_session = F.when(F.col("is_bot").isNull(), F.col("session_id"))
    nulls = {"session_id": "session_id", "ts_us": "ts", "type": "type", "event_id": "event_id"}
    counts = flagged.agg(
        F.count(F.lit(1)).alias("n"),
        F.max("ts_us").alias("end"),
        F.count_if(F.col("is_bot")).alias("bot_events"),
        F.count_distinct(unscored_session).alias("unscored"),
        F.count_distinct("session_id").alias("sessions"),
        *[F.count_if(F.col(c).isNull()).alias(f"null_{c}") for c in nulls],
    ).first()
    n_events = counts["n"]
    if n_events == 0:
        raise BuildError("no events to build features from; run `intent validate` first")
    for column, name in nulls.items():
        if counts[f"null_{column}"]:
            raise BuildError(
                f"{counts[f'null_{column}']} events have no {name}; "
                "only validated events can be replayed"
            )
    if counts["unscored"]:
        raise BuildError(
            f"{counts['unscored']} of {counts['sessions']} sessions have no bot score; "
            "run `intent validate` (it scores every session it stores)"
        )
    if counts["bot_events"] == n_events:
        raise BuildError(f"all {n_events} events belong to sessions flagged as bots")
    data_end = counts["end"] / 1e6
    bot_events = counts["bot_events"]
    bot_sessions = scored.where("is_bot").count()
    scored.unpersist()
    clock = _lap(seconds, "prepare", clock)

    # stage 1: sessions
    bucket = F.pmod(F.xxhash64("session_id"), F.lit(spark_cfg.session_buckets))
    stage1 = _apply(
        flagged.withColumn(BUCKET, bucket),
        BUCKET,
        functools.partial(session_partition, configs=configs),
        union_schema(SESSION_OUT),
    ).persist(StorageLevel.MEMORY_AND_DISK)
    stage1.count()
    flagged.unpersist()
    clock = _lap(seconds, "replay", clock)
    s1 = {k: _kind(stage1, k, schema) for k, schema in SESSION_OUT.items()}

    # stage 2: users
    owners = s1["summaries"].select("session_id", "user_id")
    with_oracle = inputs.oracle is not None
    frames = [
        _tagged(s1["summaries"], "summaries"),
        _tagged(s1["decisions"].join(owners, "session_id"), "decisions"),
        _tagged(s1["gaps"].join(owners, "session_id"), "gaps"),
        _tagged(s1["completions"], "completions"),
    ]
    if with_oracle:
        oracle = _read_oracle(spark, inputs.oracle)
        frames.append(_tagged(oracle.join(owners, "session_id"), "oracle"))
    user_in = functools.reduce(lambda a, b: a.unionByName(b, allowMissingColumns=True), frames)
    user_bucket = F.pmod(F.xxhash64("user_id"), F.lit(spark_cfg.user_buckets))
    out2 = user_out(configs)
    stage2 = _apply(
        user_in.withColumn(BUCKET, user_bucket),
        BUCKET,
        functools.partial(
            user_partition, configs=configs, data_end=data_end, with_oracle=with_oracle
        ),
        union_schema(out2),
    ).persist(StorageLevel.MEMORY_AND_DISK)
    labelled = _kind(stage2, "points", out2["points"])
    points = labelled.where(F.col("label").isNotNull())

    # stage 3: steps (each step's sessions, plus the earliest known session for the grid)
    end_us = round(data_end * 1_000_000)
    known = s1["summaries"].where(F.col("ended_us") <= end_us)
    anchor = known.orderBy("ended_us", "session_id").limit(1)
    step_gaps = s1["gaps"].where(F.col("step").isNotNull())
    at_step = (
        s1["visits"]
        .select("session_id", "step")
        .unionByName(step_gaps.select("session_id", "step"))
        .distinct()
    )
    steps = s1["visits"].select("step").distinct()
    step_summaries = (
        at_step.join(known, "session_id")
        .unionByName(steps.crossJoin(anchor))
        .dropDuplicates(["step", "session_id"])
    )
    step_in = functools.reduce(
        lambda a, b: a.unionByName(b, allowMissingColumns=True),
        [
            _tagged(step_summaries, "summaries"),
            _tagged(s1["visits"], "visits"),
            _tagged(step_gaps, "gaps"),
        ],
    )
    stage3 = _apply(
        step_in,
        "step",
        functools.partial(step_partition, configs=configs, data_end=data_end),
        union_schema(STEP_OUT),
    ).persist(StorageLevel.MEMORY_AND_DISK)

    finals = {
        "decision_points": (points, DECISION_POINTS_SCHEMA),
        "session_snapshots": (
            _kind(stage1, "snapshots", SESSION_SNAPSHOTS_SCHEMA),
            SESSION_SNAPSHOTS_SCHEMA,
        ),
        "user_stats": (
            _kind(stage2, "user_stats", out2["user_stats"]),
            out2["user_stats"],
        ),
        "step_stats": (_kind(stage3, "step_stats", STEP_STATS_SCHEMA), STEP_STATS_SCHEMA),
    }
    rows: dict[str, int] = {}
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".spark-", dir=out_dir) as tmp:
        for name, (df, schema) in finals.items():
            rows[name] = _write_single(df, schema, UNIQUE_KEYS[name], Path(tmp) / name, name)
            os.replace(Path(tmp) / name / "single.parquet", out_dir / f"{name}.parquet")
            clock = _lap(seconds, name, clock)

    # summary figures: per-session counts from Spark, the rest from the written file
    people = (
        s1["summaries"]
        .agg(
            F.count(F.lit(1)).alias("sessions"),
            # a null user is one user, as pyarrow's unique() counts it in the embedded build
            F.count_distinct(F.coalesce("user_id", F.lit("\x00null"))).alias("users"),
        )
        .first()
    )
    written = pq.read_table(out_dir / "decision_points.parquet", columns=["moment", "label"])
    labels = written.column("label")
    summary = BuildSummary(
        events=n_events,
        sessions=people["sessions"],
        users=people["users"],
        bot_sessions=bot_sessions,
        bot_events=bot_events,
        decision_points=rows["decision_points"],
        moments=dict(Counter(written.column("moment").to_pylist()).most_common()),
        label_rate=pc.mean(labels).as_py() if len(labels) else float("nan"),
        censored=labelled.where(F.col("label").isNull()).count(),
        oracle_attached=with_oracle,
        rows=rows,
        seconds=seconds,
    )
    for stage in (stage1, stage2, stage3):
        stage.unpersist()
    return summary


def _write_single(df: DataFrame, schema: pa.Schema, keys: list[str], tmp: Path, name: str) -> int:
    """Write the parts (one Spark job), stream them into one file, check `keys` are unique
    (reading back only the key columns: memory bounded by the keys, not the table)."""
    df.write.mode("overwrite").parquet(str(tmp / "parts"))
    parts = sorted((tmp / "parts").glob("part-*.parquet"))
    n = 0
    with pq.ParquetWriter(tmp / "single.parquet", schema) as writer:
        for part in parts:
            table = from_wire(pq.read_table(part), schema)
            writer.write_table(table)
            n += table.num_rows
    _check_unique(pq.read_table(tmp / "single.parquet", columns=keys), keys, name)
    return n


def _lap(seconds: dict[str, float], name: str, since: float) -> float:
    now = time.perf_counter()
    seconds[name] = now - since
    return now


# --- I/O edges ----------------------------------------------------------------------------


def layout_inputs(layout: Layout) -> Inputs:
    """The event store, its bot scores and (simulated data) the oracle of a layout."""
    from features.ingest.event_store import bot_scores_path

    files = list(layout.events.rglob("*.parquet")) if layout.events.is_dir() else []
    if not files:
        raise BuildError(f"no events stored under {layout.events}; run `intent validate` first")
    bots = bot_scores_path(layout)
    if not bots.exists():
        raise BuildError(f"no bot scores at {bots}; run `intent validate` (it scores sessions)")
    oracle = oracle_path(layout)
    return Inputs(layout.events, bots, oracle if oracle.exists() else None)


def build_features_spark(layout: Layout, *, cores: int | None = None) -> BuildSummary:
    """`intent features build --engine spark`: read the layout's store, write its tables."""
    from core.settings import load_config

    configs = PipelineConfigs.load(layout)
    spark_cfg = load_config(SparkConfig, layout=layout)
    inputs = layout_inputs(layout)
    with spark_session(spark_cfg, cores=cores) as spark:
        summary = build_on_spark(spark, inputs, configs, spark_cfg, layout.features)
    paths = table_paths(layout)
    assert set(paths) == set(TABLES)
    return summary


def write_inputs(
    folder: Path, events: pa.Table, bot_scores: pa.Table, oracle: pa.Table | None = None
) -> Inputs:
    """In-memory tables (a simulation, a test) as parquet inputs of `build_on_spark`."""
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(events, folder / "events.parquet")
    pq.write_table(bot_scores, folder / "bot_scores.parquet")
    if oracle is not None:
        pq.write_table(oracle, folder / "oracle.parquet")
    return Inputs(
        folder / "events.parquet",
        folder / "bot_scores.parquet",
        folder / "oracle.parquet" if oracle is not None else None,
    )


def read_tables(folder: Path) -> dict[str, pa.Table]:
    """The four tables a build wrote under `folder`."""
    return {name: pq.read_table(folder / f"{name}.parquet") for name in TABLES}
