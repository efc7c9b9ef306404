"""The service in its other start-up modes: bearer token, a bundle at start, hot swap.

Each test starts its own app; they live in their own module so that no app of another
module is alive at the same time (BentoML's metrics are process-wide)."""

from __future__ import annotations

from pathlib import Path

import pytest
from serving_helpers import MINIMAL, QUIET, SERVERS, merge, start_service, tmp_layout


@pytest.mark.parametrize("server", list(SERVERS))
def test_bearer_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: str) -> None:
    layout = tmp_layout(tmp_path, QUIET)
    with SERVERS[server](monkeypatch, layout, token="s3cret") as client:
        assert client.post("/score", json=MINIMAL).status_code == 401
        bad = {"Authorization": "Bearer nope"}
        assert client.post("/score", json=MINIMAL, headers=bad).status_code == 401
        good = {"Authorization": "Bearer s3cret"}
        assert client.post("/score", json=MINIMAL, headers=good).status_code == 200
        assert client.get("/model").status_code == 401
        assert client.get("/metrics").status_code == 401
        assert client.get("/livez").status_code == 200
        assert client.get("/readyz").status_code == 200
        assert client.get("/docs.json").status_code == 200
        assert client.get("/docs").status_code == 200
        # the token is checked before the body: a non-JSON body still gets 401 first
        r = client.post("/score", content=b"x", headers={"content-type": "text/plain"})
        assert r.status_code == 401


def test_hot_swap_through_reload_without_dropping_requests(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bundle_dir: Path
) -> None:
    import shutil
    import threading

    layout = tmp_layout(tmp_path, QUIET)
    with start_service(monkeypatch, layout) as client:
        assert client.get("/readyz").json()["model_source"] == "rules"
        statuses: list[int] = []
        stop = threading.Event()

        def hammer() -> None:
            while not stop.is_set():
                statuses.append(client.post("/score", json=MINIMAL).status_code)

        worker = threading.Thread(target=hammer)
        worker.start()
        shutil.copytree(bundle_dir, layout.models / "1")  # a bundle appears (an export)
        r = client.post("/reload", json={})
        stop.set()
        worker.join()
        assert r.status_code == 200 and r.json()["changed"] is True
        assert r.json()["model"]["model_version"] == "1"
        assert statuses and set(statuses) == {200}
        ready = client.get("/readyz").json()
        assert ready["model_source"] == "bundle" and ready["model_version"] == "1"
        after = client.post("/score", json=MINIMAL).json()
        # a model now, but no online store in this config: the fallback says so
        assert after["fallback_reason"] == "feature_store_error"
        assert client.post("/reload", json={}).json()["changed"] is False


def test_a_model_bundle_is_loaded_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bundle_dir: Path
) -> None:
    import shutil

    layout = tmp_layout(tmp_path, merge(QUIET))
    shutil.copytree(bundle_dir, layout.models / "1")
    with start_service(monkeypatch, layout) as client:
        ready = client.get("/readyz").json()
        assert ready["model_source"] == "bundle" and ready["model_version"] == "1"
        info = client.get("/model").json()
        assert info["feature_service"] == "intent_model_v1" and info["features"] > 0
