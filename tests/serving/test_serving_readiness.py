"""/readyz reports each dependency's health, with public detail that leaks nothing.

Issue 11: /readyz said "not degraded" with the online store deleted, with Redis down at
start-up and after a refused hot reload of a corrupt champion, and showed file paths and
exception text to anyone (it is unauthenticated).
"""

from __future__ import annotations

import json

import pytest
from fault_engine import fault_engine
from fault_servers import free_port
from serving_helpers import QUIET, merge, start_service, tmp_layout

from serving.caps import RedisCapStore, SqliteCapStore
from serving.decision_log import sqlite_log
from serving.health import Health, Status, summarize
from serving.readiness import Readiness
from serving.sessions import SqliteSessionStore

PROBE_BUDGET_S = 5.0  # generous: what is tested is the verdict, not the speed


def _leaks(body: dict, *secrets: str) -> list[str]:
    text = json.dumps(body)
    found = [s for s in secrets if s and s in text]
    found += [w for w in ("Error", "Exception", "Traceback") if w in text]
    return found + (["a path"] if "/" in text else [])


def _engine(tmp_path, policy_cfg, signals_cfg, caps=None):
    caps = caps or SqliteCapStore(tmp_path / "caps.db", policy_cfg.caps)
    log = sqlite_log(tmp_path / "decisions.db", synchronous="normal", batch_max=8)
    engine = fault_engine(policy_cfg, signals_cfg, caps=caps, log=log)
    engine.sessions = SqliteSessionStore(tmp_path / "sessions.db", signals_cfg, 1800.0)
    return engine


def test_every_dependency_is_reported_and_a_missing_file_shows(
    tmp_path, policy_cfg, signals_cfg
) -> None:
    engine = _engine(tmp_path, policy_cfg, signals_cfg)
    ready = Readiness(engine, budget_s=PROBE_BUDGET_S, threads=2, online_configured=False)
    try:
        status, body = ready.report()
        deps = body["dependencies"]
        assert status == 200 and body["status"] == "ready"
        assert {k: v["status"] for k, v in deps.items()} == {
            "model": "degraded",  # rules only
            "online_store": "ok",
            "caps": "ok",
            "decision_log": "ok",
            "sessions": "ok",
        }
        (tmp_path / "caps.db").unlink()
        status, body = ready.report()
        assert status == 200 and body["degraded"] is True
        assert body["dependencies"]["caps"] == {"status": "down", "reason": "missing"}
        (tmp_path / "decisions.db").unlink()
        status, body = ready.report()
        assert status == 503 and body["status"] == "unavailable"  # no log, no decisions
        assert not _leaks(body, str(tmp_path))
    finally:
        ready.close()
        engine.close()


def test_redis_down_at_start_is_reported(tmp_path, policy_cfg, signals_cfg) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    caps = RedisCapStore(dead, "t:", policy_cfg.caps, socket_timeout_s=PROBE_BUDGET_S)
    engine = _engine(tmp_path, policy_cfg, signals_cfg, caps=caps)
    ready = Readiness(engine, budget_s=PROBE_BUDGET_S, threads=2, online_configured=False)
    try:
        status, body = ready.report()
        assert status == 200 and body["degraded"] is True
        assert body["dependencies"]["caps"] == {"status": "down", "reason": "unreachable"}
        assert not _leaks(body, dead, "127.0.0.1", "Connection")
    finally:
        ready.close()
        engine.close()


def test_a_configured_online_store_that_did_not_open_is_down(
    tmp_path, policy_cfg, signals_cfg
) -> None:
    engine = _engine(tmp_path, policy_cfg, signals_cfg)
    engine.swap(
        engine.runtime.__class__(None, None, "rules", "x", f"feast unavailable: {tmp_path}")
    )
    ready = Readiness(engine, budget_s=PROBE_BUDGET_S, threads=2, online_configured=True)
    try:
        _, body = ready.report()
        assert body["dependencies"]["online_store"] == {"status": "down", "reason": "unavailable"}
        assert not _leaks(body, str(tmp_path))
    finally:
        ready.close()
        engine.close()


def test_summary_takes_the_worst_report_per_component() -> None:
    status, body = summarize(
        [
            Health("model", Status.OK),
            Health("model", Status.DEGRADED, "refused_reload", "/secret/path: sha mismatch"),
            Health("caps", Status.OK),
        ]
    )
    assert status == 200 and body["degraded"] is True
    assert body["dependencies"]["model"] == {"status": "degraded", "reason": "refused_reload"}
    assert "secret" not in json.dumps(body)


@pytest.mark.slow
def test_refused_hot_reload_of_a_corrupt_champion_is_degraded(tmp_path) -> None:
    from test_serving_registry import MODEL, promote, register_version

    from core.registry import champion_ref, materialize, tracking_uri
    from serving.assemble import Configs, build_engine, refresh_model
    from serving.caps import MemoryCapStore
    from serving.decision_log import memory_log

    layout = tmp_layout(tmp_path, QUIET)
    v1 = register_version(layout, tmp_path, seed=1)
    v2 = register_version(layout, tmp_path, seed=2)
    promote(layout, v1)
    configs = Configs.load(layout)
    engine = build_engine(
        layout, configs, caps=MemoryCapStore(configs.policy.caps), decision_log=memory_log()
    )
    ready = Readiness(engine, budget_s=PROBE_BUDGET_S, threads=2, online_configured=False)
    try:
        assert ready.report()[1]["dependencies"]["model"]["status"] == "ok"
        promote(layout, v2)
        uri = tracking_uri(configs.serving.model, layout)
        folder = materialize(champion_ref(uri, MODEL, "champion"), uri, layout.models)
        with open(folder / "model.onnx", "ab") as f:  # corrupt: the checksum no longer matches
            f.write(b"tampered")
        assert refresh_model(engine, configs.serving, layout) is False
        assert engine.runtime.model_version == v1  # still serving the old champion
        status, body = ready.report()
        assert status == 200 and body["degraded"] is True
        assert body["dependencies"]["model_reload"] == {
            "status": "degraded",
            "reason": "refused_reload",
        }
        assert not _leaks(body, str(tmp_path))
    finally:
        ready.close()
        engine.close()


def test_readyz_over_http_reports_dependencies_without_paths(tmp_path, monkeypatch) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    patches = {"serving.yaml": {"backends.caps": {"kind": "redis", "url": dead, "prefix": "t:"}}}
    layout = tmp_layout(tmp_path, merge(QUIET, patches))
    with start_service(monkeypatch, layout) as client:
        response = client.get("/readyz")
        body = response.json()
        assert response.status_code == 200 and body["degraded"] is True
        assert body["dependencies"]["caps"]["status"] == "down"
        assert not _leaks(body, str(tmp_path), dead)
        decision = client.post("/score", json=_minimal()).json()
        assert not _leaks({"reasons": decision["reasons"]}, str(tmp_path), dead)


def _minimal() -> dict:
    from serving_helpers import MINIMAL

    return MINIMAL
