"""Over HTTP (the service's ASGI app): PostgreSQL hung -> 503 within budget, /livez fast,
a few log lines for the whole outage.

Issue 11: with PostgreSQL hung /livez did not answer for 20 s, a /score got 504 after 30 s,
and every 503 logged ~31 lines. Own cluster behind a black-hole TCP proxy.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid

import pytest
from fault_limits import ANSWER_LIMIT_S, LOOP_STALL_LIMIT_S
from fault_servers import BlackHoleProxy, PostgresServer
from serving_helpers import MINIMAL, QUIET, merge, start_service, tmp_layout

OUTAGE_REQUESTS = 12
MAX_OUTAGE_LOG_LINES = 6  # for the whole outage (it was ~31 per request)


@pytest.fixture(scope="module")
def pg():
    try:
        server = PostgresServer()
    except (RuntimeError, OSError) as exc:
        pytest.skip(f"no throw-away PostgreSQL: {exc}")
    yield server
    server.destroy()


def test_hung_postgres_over_http(pg, tmp_path, monkeypatch, caplog) -> None:
    proxy = BlackHoleProxy(pg.port)
    log_cfg = {
        "kind": "postgres",
        "dsn": f"postgresql://postgres@127.0.0.1:{proxy.port}/test",
        "schema_name": f"http_{uuid.uuid4().hex[:8]}",
        "call_timeout_s": 3.0,
    }
    patches = {
        "serving.yaml": {
            "backends.decision_log": log_cfg,
            "backends.budgets.log_commit_ms": 500,
            "backends.budgets.lookup_ms": 300,
        }
    }
    layout = tmp_layout(tmp_path, merge(QUIET, patches))
    try:
        with start_service(monkeypatch, layout) as client:
            first = client.post("/score", json=MINIMAL)
            assert first.status_code == 200
            decision_id = first.json()["decision_id"]
            proxy.black_hole = True
            caplog.clear()
            caplog.set_level(logging.WARNING)
            statuses: list[tuple[int, float]] = []

            def score(i: int) -> None:
                started = time.perf_counter()
                r = client.post("/score", json=dict(MINIMAL, user_id=f"outage-{i}"))
                statuses.append((r.status_code, time.perf_counter() - started))

            workers = [threading.Thread(target=score, args=(i,)) for i in range(OUTAGE_REQUESTS)]
            for w in workers:
                w.start()
            livez = []
            while any(w.is_alive() for w in workers):
                started = time.perf_counter()
                assert client.get("/livez").status_code == 200
                livez.append(time.perf_counter() - started)
            for w in workers:
                w.join()
            outcome = client.post(
                "/outcome", json={"decision_id": decision_id, "outcome": "accepted"}
            )
            assert outcome.status_code == 503
            assert {s for s, _ in statuses} == {503}
            assert max(t for _, t in statuses) < ANSWER_LIMIT_S
            assert livez and max(livez) < LOOP_STALL_LIMIT_S, max(livez)
            lines = [r for r in caplog.records if r.levelno >= logging.WARNING]
            assert len(lines) <= MAX_OUTAGE_LOG_LINES, [r.getMessage() for r in lines]
            slowest = max(t for _, t in statuses)
            print(
                f"measured: {OUTAGE_REQUESTS} /score 503 in <= {slowest:.3f} s, /livez max "
                f"{max(livez) * 1000:.1f} ms over {len(livez)} calls, {len(lines)} log lines"
            )
    finally:
        proxy.black_hole = False
        proxy.close()
