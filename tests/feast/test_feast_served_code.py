"""The server never runs code stored in the Feast registry, and notices a deleted store.

Issue 11: at start-up Feast executed the on-demand view's source kept in `registry.db`
(falling back to `dill.loads`); the file has no checksum, so whoever could write it ran code
in the worker. The server now builds the on-demand transformation from the installed
package (`feast_store.package_plan`). And a store file deleted under a running server was
silently read from its unlinked inode.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
from pathlib import Path

import pytest
from feast_tables import at, epoch

from features.store.online import OnlineFeatures, OnlineStoreGone
from features.store.repo import (
    apply,
    check_registry_matches,
    materialize,
    open_store,
    package_definitions,
    package_plan,
    registry_path,
    resolve_service,
)
from serving.decision import FallbackReason
from serving.feature_read import BudgetedReader, open_feast_reader

DECISION = ("u_known", "s1", "welcome")
READ_BUDGET_MS = 5_000.0  # generous: these tests are about errors, not speed
SERVED_BUDGET_MS = 25.0  # configs/serving.yaml features.budget_ms


@pytest.fixture
def applied(layout, feast_cfg, world):
    apply(layout, feast_cfg)
    materialize(layout, feast_cfg, end=at(600))
    return layout, feast_cfg


def _plant_udf(layout, cfg, marker: Path) -> None:
    """Replace the stored UDF source (and its pickle) of every on-demand view."""
    from feast.protos.feast.core.Registry_pb2 import Registry

    path = registry_path(layout, cfg)
    registry = Registry()
    registry.ParseFromString(path.read_bytes())
    for odfv in registry.on_demand_feature_views:
        udf = odfv.spec.feature_transformation.user_defined_function
        udf.body_text = (
            f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n"
            "def moment_signals(inputs):\n    return {}\n"
        )
        udf.body = b"not a pickle"
    path.write_bytes(registry.SerializeToString())


def test_tampered_registry_udf_never_runs_in_the_server(applied, tmp_path) -> None:
    layout, cfg = applied
    honest = OnlineFeatures(open_store(layout, cfg), cfg.feature_service)
    expected = honest.read(*DECISION, epoch(40)).values
    marker = tmp_path / "ran.txt"
    _plant_udf(layout, cfg, marker)

    online, detail = open_feast_reader(layout, None)  # exactly the server's reader
    assert online is not None, detail
    values = online.read(*DECISION, epoch(40)).values
    assert not marker.exists(), "the server ran code stored in registry.db"
    assert values == expected  # the package's own transformation, same vector

    # the canary: resolving through the registry does run the planted code
    store = open_store(layout, cfg)
    resolve_service(store, store.get_feature_service(cfg.feature_service))
    assert marker.exists()


def test_package_plan_equals_the_registry_plan(applied) -> None:
    layout, cfg = applied
    store = open_store(layout, cfg)
    registry = resolve_service(store, store.get_feature_service(cfg.feature_service))
    signals_json = package_definitions(layout, cfg).moment_signals and _signals_json(layout)
    package = package_plan(package_definitions(layout, cfg), cfg.feature_service, signals_json)
    assert package.feature_names == registry.feature_names
    assert package.stored == registry.stored and package.ttl_s == registry.ttl_s
    check_registry_matches(store, package, cfg.feature_service)


def test_a_registry_that_differs_from_the_package_is_refused(applied) -> None:
    layout, cfg = applied
    store = open_store(layout, cfg)
    package = package_plan(package_definitions(layout, cfg), cfg.feature_service, "{}")
    shorter = type(package)(
        package.feature_names[:-1], package.stored, package.join_keys, package.ttl_s, ()
    )
    with pytest.raises(ValueError, match="intent features apply"):
        check_registry_matches(store, shorter, cfg.feature_service)


def _signals_json(layout) -> str:
    from core.settings import load_config
    from features.config import SignalsConfig

    return load_config(SignalsConfig, layout=layout).model_dump_json()


def _online_file(layout) -> Path:
    from features.store.repo import SQLITE_FILE

    return layout.feast / SQLITE_FILE


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_deleted_or_replaced_store_file_is_an_error_not_stale_rows(applied, how) -> None:
    layout, _ = applied
    online, detail = open_feast_reader(layout, None)
    assert online is not None, detail
    assert online.read(*DECISION, epoch(40)).user_known
    path = _online_file(layout)
    if how == "deleted":
        path.unlink()
    else:
        shutil.copy(path, path.with_suffix(".copy"))
        path.unlink()
        path.with_suffix(".copy").rename(path)
    with pytest.raises(OnlineStoreGone):
        online.read(*DECISION, epoch(40))
    with pytest.raises(OnlineStoreGone):
        online.check()
    reader = BudgetedReader(online, READ_BUDGET_MS, 1)
    read = asyncio.run(reader.read_async(*DECISION, epoch(40)))
    assert read.error == FallbackReason.FEATURE_STORE_ERROR
    reader.close()


def test_a_missing_store_at_start_is_reported_not_created(applied) -> None:
    layout, _ = applied
    path = _online_file(layout)
    path.unlink()
    online, detail = open_feast_reader(layout, None)
    assert online is None and "missing" in detail
    assert not path.exists()  # Feast would have created an empty store: every user cold


def test_a_store_locked_by_another_process_costs_a_budget_not_a_frozen_loop(applied) -> None:
    """Issue 11: the inline SQLite read waited for a second process's lock, freezing the loop."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serving"))
    from fault_limits import HANG_S, LOOP_STALL_LIMIT_S
    from fault_servers import LoopLag, locked_sqlite

    layout, _ = applied
    online, detail = open_feast_reader(layout, None, lock_timeout_s=HANG_S)  # a long lock wait
    assert online is not None, detail
    reader = BudgetedReader(online, SERVED_BUDGET_MS, 2, inline=True)  # the server's mode

    async def main():
        lag = LoopLag()
        ticker = asyncio.ensure_future(lag.run())
        reads = await asyncio.gather(*(reader.read_async(*DECISION, epoch(40)) for _ in range(6)))
        lag.stop()
        await ticker
        return reads, lag.worst_s

    try:
        with locked_sqlite(_online_file(layout), "exclusive"):
            reads, stall = asyncio.run(main())
        assert {r.error for r in reads} == {FallbackReason.FEATURE_BUDGET_EXCEEDED}
        assert stall < LOOP_STALL_LIMIT_S, f"event loop stalled {stall:.3f} s"
    finally:
        reader.close()
