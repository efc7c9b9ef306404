"""`intent features apply | materialize | online` and `intent bench online`.

The commands join the `features` group of the offline pipeline (`features.pipeline.cli`);
Feast is imported inside each command so `intent --help` stays fast.
"""

from __future__ import annotations

import json
import math
import sys
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from core import cli_kit as kit
from core.layout import Layout
from core.settings import load_config
from features.store.config import FeatureStoreConfig, OnlineBackend

if TYPE_CHECKING:
    import pandas as pd

DECISION_POINTS_FILE = "decision_points.parquet"
_NS = "datetime64[ns, UTC]"  # one timestamp unit on both sides of an as-of join
DECISION_KEYS = ["user_id", "session_id", "step", "request_ts"]

BackendOption = Annotated[
    OnlineBackend | None,
    typer.Option("--backend", help="Online store (default: configs/features.yaml)."),
]


def _config(layout: Layout, backend: OnlineBackend | None) -> FeatureStoreConfig:
    cfg = load_config(FeatureStoreConfig, layout=layout)
    return cfg if backend is None else cfg.override(backend=backend)


def _stderr() -> Console:
    """A console bound to the real stderr, so it still reaches the user inside
    `kit.quiet_output()` (which redirects sys.stderr)."""
    return kit.console(file=sys.stderr, soft_wrap=True)


def apply_command(backend: BackendOption = None) -> None:
    """Register entities, views and the FeatureService; create the online tables."""
    from features.store.definitions import FeatureTableError
    from features.store.repo import apply

    layout = Layout.from_env()
    cfg = _config(layout, backend)
    err = _stderr()
    try:
        with err.status("feast apply"), kit.quiet_output():
            defs = apply(layout, cfg)
    except FeatureTableError as exc:
        raise kit.fail(str(exc), err) from exc
    err.print(
        f"[green]applied[/green] project {cfg.project} ({cfg.online_store.backend}): "
        f"views user_stats, step_stats, session_state, moment_signals; "
        f"service {cfg.feature_service} with {len(defs.served_features())} features"
    )


def materialize_command(
    end: Annotated[
        datetime | None,
        typer.Option("--end", help="Load rows up to this UTC time (default: now)."),
    ] = None,
    backend: BackendOption = None,
) -> None:
    """Load new offline rows into the online store (the first run covers all history)."""
    from rich.progress import Progress

    from features.store.definitions import FeatureTableError
    from features.store.repo import materialize, open_store

    layout = Layout.from_env()
    cfg = _config(layout, backend)
    err = _stderr()
    end = end.replace(tzinfo=UTC) if end is not None and end.tzinfo is None else end
    try:
        with Progress(console=err, transient=True) as progress:
            task = progress.add_task("loading feature views", total=None)
            with kit.quiet_output():
                views = open_store(layout, cfg).list_feature_views()
                progress.update(task, total=len(views))
                done = materialize(layout, cfg, end, on_view=lambda _: progress.advance(task))
    except FeatureTableError as exc:
        raise kit.fail(str(exc), err) from exc
    for ran in done:
        kind = "all history" if ran.first_run else "incremental"
        err.print(
            f"[green]materialized[/green] {ran.view}: {ran.start:%Y-%m-%d %H:%M:%S} -> "
            f"{ran.end:%Y-%m-%d %H:%M:%S} UTC ({kind})"
        )


def online_command(
    user: Annotated[
        str | None, typer.Option("--user", help="user_id (default: from data).")
    ] = None,
    session: Annotated[str | None, typer.Option("--session", help="session_id.")] = None,
    step: Annotated[str | None, typer.Option("--step", help="Funnel step.")] = None,
    at: Annotated[float | None, typer.Option("--at", help="Decision time, epoch seconds.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")] = False,
    backend: BackendOption = None,
) -> None:
    """Print the online feature vector of one decision (default: a decision point in the data)."""
    import pandas as pd
    from feast.errors import FeatureServiceNotFoundException

    from features.store.online import OnlineFeatures
    from features.store.repo import open_store

    layout = Layout.from_env()
    cfg = _config(layout, backend)
    err = _stderr()
    if user is None or session is None or step is None or at is None:
        path = layout.features / DECISION_POINTS_FILE
        if not path.exists():
            raise kit.fail(
                f"{path} not found: run `intent features build` or pass all of "
                "--user --session --step --at",
                err,
            )
        points = pd.read_parquet(path, columns=[*DECISION_KEYS, "event_timestamp"])
        stats = layout.features / "user_stats.parquet"
        history = (
            pd.read_parquet(stats, columns=["user_id", "event_timestamp"])
            if stats.exists()
            else None
        )
        chosen = pick_decision(
            points, history, cfg.ttl.user_stats, user=user, session=session, step=step
        )
        if chosen is None:
            raise kit.fail("no decision point matches the given --user / --session / --step", err)
        user, session, step = str(chosen.user_id), str(chosen.session_id), str(chosen.step)
        at = at if at is not None else float(chosen.request_ts)
    with kit.quiet_output():
        store = open_store(layout, cfg)
        try:
            online = OnlineFeatures(store, cfg.feature_service)
        except FeatureServiceNotFoundException as exc:
            raise kit.fail(f"{exc}; run `intent features apply` first", err) from exc
        vector = online.read(user, session, step, at)
    if as_json:
        out = {
            "user_id": user,
            "session_id": session,
            "step": step,
            "request_ts": at,
            "user_known": vector.user_known,
            "session_known": vector.session_known,
            "features": vector.values,
        }
        typer.echo(json.dumps(out, indent=2))
        return
    table = Table(title=f"{cfg.feature_service}: user {user}, session {session}, step {step}")
    table.add_column("feature")
    table.add_column("value", justify="right")
    for name, value in vector.values.items():
        table.add_row(name, "-" if value is None else _fmt(value))
    kit.console().print(table)
    err.print(
        f"user known: {vector.user_known}, session known: {vector.session_known}, "
        f"at {datetime.fromtimestamp(at, UTC):%Y-%m-%d %H:%M:%S} UTC"
    )


def pick_decision(
    points: pd.DataFrame,
    user_history: pd.DataFrame | None,
    user_ttl: timedelta,
    *,
    user: str | None = None,
    session: str | None = None,
    step: str | None = None,
) -> pd.Series | None:
    """The latest decision point matching the given keys, preferring a returning user (a
    `user_stats` row within the TTL before the decision): its vector shows every view."""
    import pandas as pd

    for column, wanted in (("user_id", user), ("session_id", session), ("step", step)):
        if wanted is not None:
            points = points[points[column] == wanted]
    if points.empty:
        return None
    points = points.sort_values("event_timestamp", kind="stable").reset_index(drop=True)
    points["event_timestamp"] = pd.to_datetime(points["event_timestamp"], utc=True).astype(_NS)
    if user_history is not None and not user_history.empty:
        history = user_history.rename(columns={"event_timestamp": "known_at"})
        history["known_at"] = pd.to_datetime(history["known_at"], utc=True).astype(_NS)
        joined = pd.merge_asof(
            points,
            history.sort_values("known_at"),
            left_on="event_timestamp",
            right_on="known_at",
            by="user_id",
        )
        returning = points[(joined["event_timestamp"] - joined["known_at"] <= user_ttl).to_numpy()]
        if not returning.empty:
            return returning.iloc[-1]
    return points.iloc[-1]


def _fmt(value: object) -> str:
    if isinstance(value, float) and not math.isnan(value):
        return f"{value:.4g}"
    return str(value)


def bench_online_command(
    backend: BackendOption = None,
    reads: Annotated[int, typer.Option("--reads", min=100, help="Timed reads per path.")] = 2000,
    warmup: Annotated[int, typer.Option("--warmup", min=0, help="Untimed reads first.")] = 200,
    decisions: Annotated[
        int, typer.Option("--decisions", min=1, help="Distinct decision points cycled.")
    ] = 500,
    seed: Annotated[int, typer.Option("--seed", help="Sampling seed.")] = 0,
) -> None:
    """JSON latency of one decision's online read (apply + materialize run first)."""
    import pandas as pd

    from bench.online import bench_online, sample_decisions
    from features.store.definitions import FeatureTableError
    from features.store.online import OnlineFeatures, ReadPath
    from features.store.repo import apply, materialize, open_store

    layout = Layout.from_env()
    cfg = _config(layout, backend)
    err = _stderr()
    path = layout.features / DECISION_POINTS_FILE
    if not path.exists():
        raise kit.fail(f"{path} not found: run `intent features build` first", err)
    try:
        with (
            err.status(f"preparing the {cfg.online_store.backend} online store"),
            kit.quiet_output(),
        ):
            apply(layout, cfg)
            materialize(layout, cfg)
            store = open_store(layout, cfg)
            sample = sample_decisions(pd.read_parquet(path), decisions, seed)
    except (FeatureTableError, ValueError) as exc:
        raise kit.fail(str(exc), err) from exc
    with err.status("timing online reads"):
        readers = {path: OnlineFeatures(store, cfg.feature_service, path) for path in ReadPath}
        result = bench_online(readers, sample, reads, warmup)
    typer.echo(json.dumps(result, indent=2))


def register(app: typer.Typer) -> None:
    """Add the Feast commands to `intent features` and `intent bench online`."""
    from features.pipeline.cli import features_app

    if not any(info.typer_instance is features_app for info in app.registered_groups):
        app.add_typer(features_app)
    kit.command(features_app, "apply", apply_command)
    kit.command(features_app, "materialize", materialize_command)
    kit.command(features_app, "online", online_command)
    kit.command(
        kit.group(app, "bench", kit.BENCH_HELP),
        "online",
        bench_online_command,
    )
