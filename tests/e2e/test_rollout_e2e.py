"""Issue 14 end to end: a quickstart home, a second `intent train` as the challenger, a real
`intent serve` with the challenger in shadow and as a 10 % canary (the shipped overlay
`configs/examples/rollout`), `intent traffic` driving it, then `intent rollout compare`,
`/dashboard.json` and the drift gauges - each checked against counts taken straight from the
decision log's SQLite file, not through the code under test."""

from __future__ import annotations

import json
import math
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml
from test_quickstart import small_world_configs

from bench.serving import free_port, stop_server, wait_ready

REPO = Path(__file__).resolve().parents[2]
OVERLAY = REPO / "configs" / "examples" / "rollout"

# Each CLI job (quickstart, train, traffic, compare) and the server's start-up may take this
# long; a loaded machine needs more: raise INTENT_E2E_TIMEOUT_S, never shorten anything else.
E2E_TIMEOUT_S = float(os.environ.get("INTENT_E2E_TIMEOUT_S", "900"))
# How long the shadow writes may take to settle after the traffic (they are off the path).
SHADOW_SETTLE_S = 60.0
# How long the drift monitor's background recompute may take to show on /metrics.
PSI_REFRESH_S = 120.0
TOKEN = "e2e-rollout-token"
SHIFTED = "pause_s"


def overlay_serving() -> dict:
    return yaml.safe_load((OVERLAY / "serving.yaml").read_text())


def test_the_overlay_differs_from_the_defaults_only_where_it_says() -> None:
    """The overlay replaces the whole file: everything but rollout and drift windows must stay
    the shipped defaults, or the walkthrough silently serves other settings."""
    base, over = yaml.safe_load((REPO / "configs" / "serving.yaml").read_text()), overlay_serving()
    assert over["rollout"]["shadow"]["enabled"] and over["rollout"]["canary"]["enabled"]
    assert over["rollout"]["canary"]["share"] == 0.1
    for section in ("rollout", "drift"):
        base.pop(section), over.pop(section)
    assert over == base


def run_intent(args: list[str], env: dict[str, str], cwd: Path) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "intent", *args],
        capture_output=True, text=True, env=env, timeout=E2E_TIMEOUT_S, cwd=cwd,
    )  # fmt: skip
    assert result.returncode == 0, (args, (result.stdout + result.stderr)[-3000:])
    return result.stdout


def sql(db: Path, query: str) -> list[tuple]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        return con.execute(query).fetchall()


def psi(metrics: str, feature: str) -> dict[str, float]:
    """`intent_feature_psi{feature=...}` per model version from a /metrics text."""
    out = {}
    for line in metrics.splitlines():
        if line.startswith("intent_feature_psi{") and f'feature="{feature}"' in line:
            version = line.split('model_version="', 1)[1].split('"', 1)[0]
            out[version] = float(line.rsplit(" ", 1)[1])
    return out


def wait_for_psi(client: httpx.Client, headers: dict, check) -> dict[str, float]:
    """The champion's PSI of the shifted feature once `check` holds (the recompute runs in
    the background every `drift.every` decisions)."""
    deadline = time.monotonic() + PSI_REFRESH_S
    while True:
        value = psi(client.get("/metrics", headers=headers).text, SHIFTED)
        if "1" in value and check(value["1"]):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"PSI of {SHIFTED} never passed the check: {value}")
        time.sleep(0.5)


def settled_shadow_count(db: Path) -> int:
    """Shadow scores are written after the answer: wait until their count stops moving."""
    deadline = time.monotonic() + SHADOW_SETTLE_S
    last = -1
    while time.monotonic() < deadline:
        (now,) = sql(db, "SELECT COUNT(*) FROM decisions WHERE shadow_score IS NOT NULL")[0]
        if now == last:
            return now
        last = now
        time.sleep(1.0)
    raise AssertionError(f"shadow scores still being written after {SHADOW_SETTLE_S:g} s")


@pytest.mark.slow
def test_monthly_rollout_end_to_end(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = {
        **os.environ,
        "INTENT_HOME": str(home),
        # the rollout overlay, and training.yaml without the AUC guard (a 600-user world is
        # no_signal under the shipped guards: the server would keep the rules)
        "INTENT_CONFIGS": os.pathsep.join(
            [str(OVERLAY), str(small_world_configs(tmp_path)), str(REPO / "configs")]
        ),
        "INTENT_API_TOKEN": TOKEN,
        "PYTHONWARNINGS": "ignore",
        # every `bentoml serve` start empties $BENTOML_HOME/prometheus_multiproc_dir: a server
        # started elsewhere on this machine would wipe this one's gauges mid-test
        "BENTOML_HOME": str(tmp_path / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "true",
    }
    for name in ("INTENT_DATA_DIR", "INTENT_MODELS_DIR", "INTENT_MLRUNS_DIR"):
        env.pop(name, None)
    # quickstart's own server shows the shadow too; only the pipeline's result matters here
    run_intent(
        ["quickstart", "--users", "600", "--days", "10", "--port", str(free_port()),
         "--no-keep-serving"], env, tmp_path,
    )  # fmt: skip
    run_intent(["train", "--seed", "1"], env, tmp_path)  # version 2 -> `challenger`
    db = home / "data" / "serving" / "decisions.db"
    for leftover in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        leftover.unlink(missing_ok=True)  # the quickstart's example decisions: count the traffic

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "intent", "serve", "--port", str(port), "--host", "127.0.0.1"],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=tmp_path,
        )  # fmt: skip
    try:
        try:
            ready = wait_ready(port, E2E_TIMEOUT_S, server, setting="INTENT_E2E_TIMEOUT_S")
        except (RuntimeError, TimeoutError) as exc:
            raise AssertionError(f"{exc}\n{log_path.read_text(errors='replace')[-3000:]}") from exc
        assert ready["model_version"] == "1", ready
        auth = {"Authorization": f"Bearer {TOKEN}"}
        with httpx.Client(base_url=url, timeout=60.0) as client:
            assert client.get("/dashboard.json").status_code == 401  # same auth as the API

            calm = json.loads(
                run_intent(["traffic", "--url", url, "-n", "400", "--seed", "1", "--json"], env,
                           tmp_path)
            )  # fmt: skip
            calm_psi = wait_for_psi(client, auth, lambda v: True)
            shifted = json.loads(
                run_intent(["traffic", "--url", url, "-n", "700", "--seed", "2", "--json",
                            "--shift", f"{SHIFTED}=+120"], env, tmp_path)
            )  # fmt: skip
            threshold = overlay_serving()["drift"]["threshold"]
            shifted_psi = wait_for_psi(client, auth, lambda v: v > threshold)
            shadow_rows = settled_shadow_count(db)
            board = client.get("/dashboard.json?window=1h", headers=auth)
            readyz = client.get("/readyz").json()
    finally:
        stop_server(server)

    # the traffic: every request answered and logged, every outcome recorded
    for sent in (calm, shifted):
        assert sent["errors"] == {} and sent["scored"] == sent["requests"], sent
        assert sent["outcomes_recorded"] == sent["outcomes_posted"] > 0, sent
    ((decisions,),) = sql(db, "SELECT COUNT(*) FROM decisions")
    ((outcomes,),) = sql(db, "SELECT COUNT(*) FROM outcomes")
    assert decisions == calm["scored"] + shifted["scored"]
    assert outcomes == calm["outcomes_recorded"] + shifted["outcomes_recorded"]
    arms = dict(
        sql(
            db,
            "SELECT CASE WHEN arm LIKE '%canary=challenger' THEN 'challenger' "
            "WHEN arm LIKE '%canary=champion' THEN 'champion' ELSE 'other' END, COUNT(*) "
            "FROM decisions GROUP BY 1",
        )
    )
    assert arms.get("challenger", 0) > 0 and arms.get("champion", 0) > 0, arms
    # a 10 % sticky canary: far from 0 and from half, whatever the sample of users
    assert 0.02 < arms["challenger"] / (arms["challenger"] + arms["champion"]) < 0.3, arms
    served = dict(sql(db, "SELECT model_version, COUNT(*) FROM decisions GROUP BY 1"))
    assert served.get("1", 0) > 0 and served.get("2", 0) > 0, served

    # the drift gauges: calm traffic below the threshold, shifted traffic above it
    assert calm_psi["1"] < threshold < shifted_psi["1"], (calm_psi, shifted_psi)
    assert readyz["dependencies"]["drift"] == {"status": "degraded", "reason": "drift"}, readyz

    # the dashboard: the log's decisions and the shadow agreement, as SQL counts them
    assert board.status_code == 200, board.text
    figures = board.json()
    assert figures["totals"]["decisions"] == decisions > 0
    assert figures["shadow"]["status"] == "on"
    tolerance = figures["shadow"]["tolerance"]
    expected = {
        str(version): (pairs, agree)
        for version, pairs, agree in sql(
            db,
            f"SELECT shadow_version, COUNT(*), SUM(ABS(score - shadow_score) <= {tolerance}) "
            "FROM decisions WHERE shadow_score IS NOT NULL GROUP BY shadow_version",
        )
    }
    assert sum(p for p, _ in expected.values()) == shadow_rows > 0
    assert "2" in expected, expected  # the challenger shadows the champion's decisions
    for row in figures["shadow"]["versions"]:
        pairs, agree = expected[row["shadow_version"]]
        assert row["pairs"] == pairs
        assert math.isclose(row["agreement"]["value"], agree / pairs, abs_tol=1e-6)

    # the rollout report on the same log: both arms as SQL counts them, and a recommendation
    report = json.loads(run_intent(["rollout", "compare", "--json", "--no-mlflow"], env, tmp_path))
    assert report["recommendation"] in {"promote", "hold", "rollback"}, report
    assert report["arms"]["champion"]["decisions"] == arms["champion"]
    assert report["arms"]["challenger"]["decisions"] == arms["challenger"]
    assert report["agreement"]["pairs"] > 0
