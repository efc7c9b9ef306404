"""End to end: a real `bentoml serve` subprocess, and the engine on a real Feast store."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from serving_helpers import MINIMAL, QUIET, REPO_ROOT, merge, real_server, tmp_layout

from bench.serving import (
    free_port,
    load_test,
    sample_requests,
    server_argv,
    stop_server,
    wait_ready,
)


def call(port: int, method: str, path: str, body: bytes | None = None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request(method, path, body=body, headers=headers or {"Content-Type": "application/json"})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, data


@pytest.mark.slow
def test_real_bentoml_serve_subprocess(tmp_path: Path) -> None:
    layout = tmp_layout(tmp_path, QUIET)
    env = {**os.environ, "INTENT_HOME": str(layout.root), "INTENT_CONFIGS": str(layout.configs)}
    env.pop("INTENT_API_TOKEN", None)
    port = free_port()
    log = open(tmp_path / "server.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        server_argv(port, "127.0.0.1", REPO_ROOT),
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        ready = wait_ready(port, 120, proc)
        assert ready["model_source"] == "rules" and ready["status"] == "ready"
        status, body = call(port, "POST", "/score", json.dumps(MINIMAL).encode())
        assert status == 200, body
        decision = json.loads(body)
        assert decision["source"] == "rules" and decision["decision_id"]
        status, body = call(port, "POST", "/score", b'{"user_id": ')
        assert status == 400 and b"json_invalid" in body
        status, body = call(port, "GET", "/metrics")
        text = body.decode()
        assert 'intent_decisions_total{source="rules"} 1.0' in text  # multiprocess collector
        assert 'bentoml_service_request_total{endpoint="/score",http_response_code="200"' in text
        status, _ = call(port, "GET", "/livez")
        assert status == 200
        # the load driver of `intent bench serve`, on this server
        payloads = [json.dumps(r).encode() for r in sample_requests(60, ["welcome"], seed=0)]
        headers = {"Content-Type": "application/json"}
        load = load_test(port, payloads, 2, 10, headers, lambda _: None, rounds=2)
        assert load["errors"] == 0
        assert load["score"]["p50_ms"] > 0 and load["echo"]["throughput_rps"] > 0
    finally:
        stop_server(proc)
        log.close()
    assert proc.returncode is not None
    logged = (tmp_path / "server.log").read_text(errors="replace")
    assert "u-1" not in logged  # no user id in the logs


# How a worker process's command line reads: BentoML's worker module, uvicorn's spawned child.
WORKER_MARK = {"bentoml": "_bentoml_impl.worker", "bare": "spawn_main"}


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["bentoml", "bare"])
def test_two_workers_share_the_stores(tmp_path: Path, kind: str) -> None:
    """`intent serve --workers 2` (either server): two worker processes, one decision log."""
    import sqlite3

    import psutil

    layout = tmp_layout(tmp_path, QUIET)
    with real_server(kind, layout, tmp_path / "server.log", workers=2) as (port, proc):
        workers = [
            p
            for p in psutil.Process(proc.pid).children(recursive=True)
            if WORKER_MARK[kind] in " ".join(p.cmdline())
        ]
        ids = set()
        for i in range(20):
            body = json.dumps({**MINIMAL, "user_id": f"u-w{i}"}).encode()
            status, answer = call(port, "POST", "/score", body)
            assert status == 200, answer
            ids.add(json.loads(answer)["decision_id"])
    assert len(workers) >= 2, [p.cmdline() for p in workers]
    logged = {r[0] for r in sqlite3.connect(layout.serving / "decisions.db").execute(
        "SELECT decision_id FROM decisions")}  # fmt: skip
    assert ids <= logged


@pytest.mark.slow
def test_engine_on_a_real_feast_store(tmp_path: Path) -> None:
    # The feature helper's hand-made Feast tables (users u_known / u_stale, session s1).
    sys.path.insert(0, str(REPO_ROOT / "tests" / "feast"))
    try:
        from feast_tables import DECISION_S, at, epoch, write_tables
    finally:
        sys.path.pop(0)
    from bench.synthetic import make_bundle
    from core.settings import load_config
    from core.vocabulary import Source
    from features.signals import SNAPSHOT_FIELDS
    from features.store.config import FeatureStoreConfig
    from features.store.repo import apply, materialize
    from serving.assemble import Configs, build_engine
    from serving.decision import DecisionRequest, FallbackReason

    layout = tmp_layout(
        tmp_path, merge(QUIET, {"serving.yaml": {"features.online_store": "feast"}})
    )
    write_tables(layout)
    cfg = load_config(FeatureStoreConfig, layout=layout)
    apply(layout, cfg)
    materialize(layout, cfg, end=at(600))
    make_bundle(
        layout.models / "1", version="1", n_trees=5, rows=400, feature_service=cfg.feature_service
    )
    engine = build_engine(layout, Configs.load(layout))
    try:
        rt = engine.runtime
        assert rt.source == "bundle" and rt.reader is not None, rt.reader_detail
        known = engine.decide(
            DecisionRequest("u_known", "s1", "welcome", epoch(DECISION_S), signals={})
        )
        assert known.source == Source.MODEL and known.model_version == "1"
        assert "user_sessions_30d" in known.signals  # a stored user feature reached the model
        assert known.signals["time_on_step_s"] > 0  # on-demand signals, computed at request time
        new = engine.decide(DecisionRequest("u_new", "s_unknown", "welcome", epoch(40)))
        assert new.fallback_reason == FallbackReason.COLD_START
        # the server's push (POST /events) lands in the store the next read sees
        snap = {f: 0.0 for f in SNAPSHOT_FIELDS} | {"cta_fails": 7.0}
        rt.reader.push_session("s1", snap, at(30))
        again = engine.decide(DecisionRequest("u_known", "s1", "welcome", epoch(31)))
        assert again.signals["cta_fails"] == 7.0
    finally:
        engine.close()
