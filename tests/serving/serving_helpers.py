"""Helpers shared by the serving tests: config copies with patches, engines on tmp layouts."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from core.layout import Layout

REPO_ROOT = Path(__file__).resolve().parents[2]
REPO_CONFIGS = REPO_ROOT / "configs"

MINIMAL = {
    "user_id": "u-1",
    "session_id": "s-1",
    "step": "identity_verification",
    "moment": "pause",
    "signals": {"pause_s": 14, "scroll_depth": 30, "cta_fails": 0},
}


def set_dotted(data: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    for key in keys[:-1]:
        data = data[key]
    data[keys[-1]] = value


def write_configs(target: Path, patches: dict[str, dict[str, Any]] | None = None) -> Path:
    """A copy of the repo's configs with `{file: {dotted.key: value}}` patches applied."""
    target.mkdir(parents=True, exist_ok=True)
    for src in REPO_CONFIGS.glob("*.yaml"):
        shutil.copy(src, target / src.name)
    for name, updates in (patches or {}).items():
        path = target / name
        raw = yaml.safe_load(path.read_text())
        for dotted, value in updates.items():
            set_dotted(raw, dotted, value)
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return target


def tmp_layout(root: Path, patches: dict[str, dict[str, Any]] | None = None) -> Layout:
    """A layout under `root` with patched configs (no registry, no models, no Feast)."""
    return Layout.under(root, configs=write_configs(root / "configs", patches)).ensure()


# Test defaults: no Feast lookups (fast start), polling off.
QUIET = {"serving.yaml": {"features.online_store": "none", "model.reload_interval_s": 0}}


def merge(*patches: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for patch in patches:
        for name, updates in patch.items():
            out.setdefault(name, {}).update(updates)
    return out


# --- cap races (run in threads or spawned processes) --------------------------------------

RACE_NOW = 1_741_000_000.0  # one instant for the prefill and the race: the same UTC day

RACE_CAPS = {
    "max_per_day": 2,
    "max_per_episode": 1,
    "cooldown_s": 0,
    "default_tz": "UTC",
    "actions": {},
}


def open_cap_store(kind: str, where: str):
    """A cap store of `kind` at `where` (SQLite path or `redis_url|prefix`)."""
    from core.policy_config import CapsConfig
    from serving.caps import RedisCapStore, SqliteCapStore

    cfg = CapsConfig(**RACE_CAPS)
    if kind == "sqlite":
        return SqliteCapStore(Path(where), cfg)
    url, prefix = where.split("|")
    return RedisCapStore(url, prefix, cfg)


def race_worker(kind: str, where: str, worker: int, rounds: int, barrier, results) -> None:
    """Each round, every worker asks for the last slot of the round's user at once."""
    from core.vocabulary import ActionType
    from serving.caps import CapRequest

    store = open_cap_store(kind, where)
    now = RACE_NOW
    for r in range(rounds):
        barrier.wait(timeout=60)
        verdict = store.acquire(
            CapRequest(f"racer-{r}", "s", f"ep-{worker}", ActionType.GUIDE, now, "UTC")
        )
        results.put((r, worker, verdict.allowed))
    store.close()


def decision_row(decision_id: str, ts: float = 1_741_000_000.0, **updates: Any) -> dict:
    """A complete decision-log row."""
    row = {
        "decision_id": decision_id,
        "ts": ts,
        "user_id": "u-1",
        "session_id": "s-1",
        "step": "welcome",
        "moment": "pause",
        "episode": "pause@1.000",
        "score": 0.61,
        "band": "mild",
        "action": "contextual_tip",
        "content": "contextual_tip.pause.welcome",
        "source": "model",
        "fallback_reason": None,
        "model_version": "3",
        "arm": None,
        "holdout": 0,
        "would_action": "contextual_tip",
        "capped": 0,
        "cap_reason": None,
        "reasons": "[]",
        "signals": '{"pause_s":14.0}',
        "device": "mobile",
        "channel": None,
        "tz": "UTC",
        "latency_ms": 0.4,
    }
    row.update(updates)
    return row


# --- the service in process --------------------------------------------------------------


def forget_bentoml_metrics() -> None:
    """BentoML registers its request metrics in the process-wide registry once per app; a
    second app in one test process would register them again and fail."""
    from prometheus_client import REGISTRY

    for collector, names in list(REGISTRY._collector_to_names.items()):
        if any(n.startswith("bentoml_") for n in names):
            REGISTRY.unregister(collector)


def point_env(monkeypatch: Any, layout: Layout, token: str | None) -> None:
    """The environment a server started for `layout` reads (and the optional token)."""
    monkeypatch.setenv("INTENT_HOME", str(layout.root))
    monkeypatch.setenv("INTENT_CONFIGS", str(layout.configs))
    monkeypatch.delenv("INTENT_DATA_DIR", raising=False)
    monkeypatch.delenv("INTENT_MODELS_DIR", raising=False)
    monkeypatch.delenv("INTENT_MLRUNS_DIR", raising=False)
    if token is None:
        monkeypatch.delenv("INTENT_API_TOKEN", raising=False)
    else:
        monkeypatch.setenv("INTENT_API_TOKEN", token)


def start_service(monkeypatch: Any, layout: Layout, token: str | None = None):
    """A TestClient over the BentoML service's ASGI app (lifespan runs __init__)."""
    from starlette.testclient import TestClient

    from serving.service import IntentService

    forget_bentoml_metrics()
    point_env(monkeypatch, layout, token)
    return TestClient(IntentService.to_asgi(), raise_server_exceptions=False)


def start_bare(monkeypatch: Any, layout: Layout, token: str | None = None):
    """A TestClient over the bare app (`intent serve --server uvicorn`), same routes."""
    from starlette.testclient import TestClient

    from serving.app_bare import create_app

    point_env(monkeypatch, layout, token)
    return TestClient(create_app(), raise_server_exceptions=False)


SERVERS = {"bentoml": start_service, "bare": start_bare}


# --- real servers (subprocesses) ----------------------------------------------------------

# How long a test waits for a real server's /readyz: generous (the machine may be loaded);
# raise it with INTENT_E2E_TIMEOUT_S rather than shortening anything else.
E2E_TIMEOUT_S = float(os.environ.get("INTENT_E2E_TIMEOUT_S", "300"))


@contextlib.contextmanager
def real_server(
    kind: str, layout: Layout, log_path: Path, workers: int = 1, token: str | None = None
):
    """A real server of `kind` ("bentoml" or "bare" uvicorn) for `layout`: yields its port.
    `token`: the bearer token it requires (none by default)."""
    from bench.serving import free_port, server_argv, stop_server, wait_ready
    from serving.app_bare import server_env, uvicorn_argv

    env = server_env(
        {**os.environ, "INTENT_HOME": str(layout.root), "INTENT_CONFIGS": str(layout.configs)},
        workers if kind == "bentoml" else 1,
    )
    for name in ("INTENT_API_TOKEN", "INTENT_DATA_DIR", "INTENT_MODELS_DIR", "INTENT_MLRUNS_DIR"):
        env.pop(name, None)
    if token is not None:
        env["INTENT_API_TOKEN"] = token
    port = free_port()
    argv = (
        server_argv(port, "127.0.0.1", REPO_ROOT)
        if kind == "bentoml"
        else uvicorn_argv(port, "127.0.0.1", workers)
    )
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            cwd=REPO_ROOT,
        )  # fmt: skip
    try:
        wait_ready(port, E2E_TIMEOUT_S, proc, setting="INTENT_E2E_TIMEOUT_S")
        yield port, proc
    finally:
        stop_server(proc)
