"""Three `intent serve` replicas (two BentoML, one bare uvicorn) sharing Redis caps, Redis
live sessions and the PostgreSQL decision log, under concurrent traffic for the same users:

- caps exact: every episode's requests go to all three replicas at once; per user and local
  calendar day exactly `max_per_day` triggers, never two in one episode (from the log);
- every acknowledged (200) decision is in the PostgreSQL log exactly once;
- sessions shared: events posted to one replica are folded once (concurrent posts to one
  session from all replicas lose nothing), a retry on another replica is a duplicate, and a
  decision on another replica honours the session's assistive flag.

Replicas starting together on a fresh PostgreSQL schema must all come up (the log's DDL).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import threading
import uuid
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from fault_engine import shown_users
from serving_helpers import E2E_TIMEOUT_S, QUIET, REPO_CONFIGS, merge, tmp_layout

from bench.serving import free_port, stop_server, wait_ready
from core.policy_config import PolicyConfig
from core.settings import load_config
from features.config import SignalsConfig
from serving.decision_log import postgres_log
from serving.sessions_redis import RedisSessionStore

pytestmark = pytest.mark.postgres

SERVERS = ["bentoml", "uvicorn", "bentoml"]
USERS = 8
DAYS = 2
EPISODES = 4  # per user and day, 10 minutes apart (past the cooldown), sent in order
HOT_EVENTS = 5  # per replica, all into one session at one instant
REQUEST_LIMIT_S = 60.0  # one HTTP call on a loaded machine


def event(event_id: str, user: str, session: str, ts: datetime, **kw) -> dict:
    return {
        "event_id": event_id,
        "user_id": user,
        "session_id": session,
        "ts": ts.isoformat(),
        "type": "view",
        "step": "welcome",
        **kw,
    }


def pause(user: str, session: str, ts: datetime, episode: str, tz: str) -> dict:
    """A hesitation the rules answer with a contextual tip (a trigger, unless capped)."""
    return {
        "user_id": user,
        "session_id": session,
        "step": "identity_verification",
        "moment": "pause",
        "signals": {"pause_s": 14, "scroll_depth": 30, "cta_fails": 0},
        "ts": ts.isoformat(),
        "episode": episode,
        "tz": tz,
    }


@contextlib.contextmanager
def replicas(root: Path, patches: dict, kinds: list[str]):
    """`intent serve --server <kind>` per replica, each on its own layout (no shared files)
    and port, started together; yields the ports once every /readyz answers."""
    intent = str(Path(sys.executable).parent / "intent")
    procs, ports = [], []
    try:
        for i, kind in enumerate(kinds):
            layout = tmp_layout(root / f"replica{i}", patches)
            env = {
                **os.environ,
                "INTENT_HOME": str(layout.root),
                "INTENT_CONFIGS": str(layout.configs),
            }
            # BENTOML_HOME unset: `intent serve` gives each BentoML server its own
            for name in (
                "INTENT_API_TOKEN",
                "INTENT_DATA_DIR",
                "INTENT_MODELS_DIR",
                "BENTOML_HOME",
            ):
                env.pop(name, None)
            port = free_port()
            argv = [intent, "serve", "--port", str(port), "--host", "127.0.0.1", "--server", kind]
            with open(root / f"replica{i}.log", "wb") as log:
                procs.append(
                    subprocess.Popen(
                        argv,
                        env=env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
            ports.append(port)
        for port, proc in zip(ports, procs, strict=True):
            wait_ready(port, E2E_TIMEOUT_S, proc, setting="INTENT_E2E_TIMEOUT_S")
        yield ports
    finally:
        for proc in procs:
            stop_server(proc)


def decisions_counted(port: int) -> float:
    """The sum of `intent_decisions_total` samples on a server's /metrics."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("intent_decisions_total")
    )


@pytest.fixture
def schema(postgres_dsn):
    """A PostgreSQL schema of this test's own, dropped afterwards."""
    import psycopg

    name = f"test_replicas_{uuid.uuid4().hex[:12]}"
    yield name
    with psycopg.connect(postgres_dsn, autocommit=True) as con:
        con.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


async def drive(ports: list[int], users: list[tuple[str, str]], base: datetime) -> dict:
    """Concurrent traffic: every user at once; inside a user, episodes in time order, each
    episode's request sent to every replica at the same moment."""
    import httpx

    out: dict = {"acked": [], "statuses": Counter(), "assistive": [], "retry": []}
    n = len(ports)

    async def post(client, port: int, path: str, body: dict):
        r = await client.post(f"http://127.0.0.1:{port}{path}", json=body)
        out["statuses"][r.status_code] += 1
        return r

    async def one_user(client, i: int, user: str, tz: str) -> None:
        # sessions: all replicas fold into one session at once; none may lose an event
        at = base - timedelta(days=5)
        await asyncio.gather(*(
            post(client, port, "/events", {"events": [
                event(f"{user}-hot-{r}-{j}", user, f"{user}-hot", at) for j in range(HOT_EVENTS)
            ]})
            for r, port in enumerate(ports)
        ))  # fmt: skip
        # the assistive flag arrives on replica i, the decision is asked of replica i+1
        flag = event(f"{user}-a11y", user, f"{user}-a11y", at, assistive=True)
        r = await post(client, ports[i % n], "/events", {"events": [flag]})
        assert r.json()["accepted"] == 1, r.text
        r = await post(client, ports[(i + 2) % n], "/events", {"events": [flag]})
        out["retry"].append(r.json())
        req = pause(user, f"{user}-a11y", at + timedelta(seconds=5), "a11y", tz)
        r = await post(client, ports[(i + 1) % n], "/score", req)
        out["assistive"].append(r.json())
        out["acked"].append(r.json()["decision_id"])
        # caps
        zone = ZoneInfo(tz)
        for day in range(DAYS):
            start = datetime.combine(base.date() + timedelta(days=day), datetime.min.time(), zone)
            for k in range(EPISODES):
                ts = start + timedelta(hours=9, minutes=10 * k)
                req = pause(user, f"{user}-d{day}", ts, f"pause@{day}.{k}", tz)
                answers = await asyncio.gather(*(post(client, p, "/score", req) for p in ports))
                out["acked"] += [a.json()["decision_id"] for a in answers if a.status_code == 200]

    async with httpx.AsyncClient(timeout=REQUEST_LIMIT_S) as client:
        await asyncio.gather(*(one_user(client, i, u, tz) for i, (u, tz) in enumerate(users)))
    return out


@pytest.mark.slow
@pytest.mark.redis
def test_replicas_share_caps_sessions_and_the_log(
    tmp_path: Path, redis_url, postgres_dsn, redis_prefix, schema
) -> None:
    import psycopg

    prefix = redis_prefix
    policy = load_config(PolicyConfig, REPO_CONFIGS / "policy.yaml")
    caps = policy.caps
    assert caps.max_per_day < EPISODES and caps.cooldown_s < 600  # the schedule's premise
    backends = {
        "backends.caps": {"kind": "redis", "url": redis_url, "prefix": f"{prefix}caps:"},
        "backends.sessions": {
            "kind": "redis",
            "url": redis_url,
            "prefix": f"{prefix}sess:",
            "retention_hours": 48,
        },
        "backends.decision_log": {"kind": "postgres", "dsn": postgres_dsn, "schema_name": schema},
    }
    zones = ["UTC", "Asia/Tokyo"]
    users = [(u, zones[i % 2]) for i, u in enumerate(shown_users(policy, USERS, "rep"))]
    base = datetime(2025, 3, 3, tzinfo=ZoneInfo("UTC"))
    patches = merge(QUIET, {"serving.yaml": backends})
    with replicas(tmp_path, patches, SERVERS) as ports:
        out = asyncio.run(drive(ports, users, base))
        counted = [decisions_counted(port) for port in ports]

    assert set(out["statuses"]) == {200}, out["statuses"]
    with psycopg.connect(postgres_dsn) as con:
        rows = con.execute(
            f'SELECT decision_id, user_id, episode, ts, tz, action FROM "{schema}".decisions'
        ).fetchall()
    # every acknowledged decision logged exactly once, nothing else logged
    logged = Counter(r[0] for r in rows)
    assert sorted(logged) == sorted(out["acked"]) and set(logged.values()) == {1}
    assert len(out["acked"]) == USERS * (1 + DAYS * EPISODES * len(ports))
    # each server's /metrics counts its own decisions: two BentoML servers sharing one
    # prometheus_multiproc_dir would each report both (and wipe each other's at start)
    assert sum(counted) == len(out["acked"]), counted
    # caps, counted from the log in each user's local calendar day
    triggers = [r for r in rows if r[5] != "none"]
    per_day = Counter(
        (user, datetime.fromtimestamp(ts, ZoneInfo(tz)).date())
        for _, user, _, ts, tz, _ in triggers
    )
    per_episode = Counter((user, episode) for _, user, episode, *_ in triggers)
    assert per_day == {
        (u, (base + timedelta(days=d)).date()): caps.max_per_day
        for u, _ in users
        for d in range(DAYS)
    }
    assert set(per_episode.values()) == {caps.max_per_episode}
    # sessions: concurrent posts from every replica folded once each
    signals = load_config(SignalsConfig, REPO_CONFIGS / "signals.yaml")
    store = RedisSessionStore(redis_url, f"{prefix}sess:", signals, 1800.0)
    try:
        for user, _ in users:
            assert store.get(f"{user}-hot").events == HOT_EVENTS * len(ports), user
    finally:
        store.close()
    # a retry on another replica is a duplicate; a decision on a third honours the flag
    assert sorted(r["duplicates"] for r in out["retry"]) == sorted([f"{u}-a11y"] for u, _ in users)
    for decision in out["assistive"]:
        assert decision["action"]["type"] == "none", decision
        assert ("assistive", "hesitation_moment") in {
            (r["kind"], r["name"]) for r in decision["reasons"]
        }, decision


def test_replicas_starting_together_create_the_log_schema_once(postgres_dsn, schema) -> None:
    """Each replica creates the log's schema at start-up; without a lock, the losers of the
    IF NOT EXISTS race failed with a unique violation in the catalog and did not start."""
    import psycopg

    starters = 3
    barrier, errors = threading.Barrier(starters), []

    def start() -> None:
        barrier.wait(timeout=60)
        try:
            postgres_log(postgres_dsn, schema, batch_max=1).close()
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(starters)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    with psycopg.connect(postgres_dsn) as con:
        tables = con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
            (schema,),
        ).fetchall()
    assert sorted(t[0] for t in tables) == ["decisions", "outcomes"]
