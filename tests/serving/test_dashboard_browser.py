"""The dashboard in a real headless browser (Debian's chromium + chromedriver, selenium):
a real `bentoml serve` with auth on, real /score + /outcome traffic, and the figures in the
rendered DOM checked against counts taken straight from the SQLite decision log. The same
server's /metrics backs the check of the Grafana dashboard's PromQL."""

from __future__ import annotations

import http.client
import json
import re
import shutil
import sqlite3
import time
from pathlib import Path

import pytest
from serving_helpers import MINIMAL, QUIET, REPO_ROOT, real_server, tmp_layout

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
TOKEN = "browser-token"
ARTIFACTS = REPO_ROOT / "test-artifacts"
PAGE_LOAD_LIMIT_S = 120  # a loaded 2-core machine renders slowly; this only bounds a hang

pytestmark = pytest.mark.slow
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="needs chromium and chromedriver (make browser)",
)

# (moment, step, signals): a mix the rules answer differently
TRAFFIC = [
    ("pause", "identity_verification", {"pause_s": 14, "scroll_depth": 30, "cta_fails": 0}),
    ("cta_fail", "funding", {"pause_s": 2, "scroll_depth": 80, "cta_fails": 3}),
    ("shallow_scroll", "profile", {"pause_s": 1, "scroll_depth": 5, "cta_fails": 0}),
    ("help_hover", "welcome", {"pause_s": 0, "scroll_depth": 50, "cta_fails": 0}),
]


def call(port: int, method: str, path: str, body: dict | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
    payload = json.dumps(body).encode() if body is not None else None
    conn.request(method, path, body=payload, headers=headers)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, data


def post(port: int, path: str, body: dict) -> tuple[int, dict]:
    status, data = call(port, "POST", path, body)
    return status, json.loads(data or b"{}")


def drive_traffic(port: int) -> None:
    """24 decisions over 4 moments; outcomes on some (accepted, step_completed, dismissed)."""
    for i in range(24):
        moment, step, signals = TRAFFIC[i % len(TRAFFIC)]
        body = {
            **MINIMAL,
            "user_id": f"user-{i}",
            "session_id": f"session-{i}",
            "moment": moment,
            "step": step,
            "signals": signals,
        }
        status, decision = post(port, "/score", body)
        assert status == 200, decision
        outcomes = [("accepted", "step_completed", "dismissed", None)[(i + i // 4) % 4]]
        if i % 8 == 0:  # accepted, then completed: two outcomes of one decision
            outcomes.append("step_completed")
        for outcome in filter(None, outcomes):
            status, _ = post(
                port, "/outcome", {"decision_id": decision["decision_id"], "outcome": outcome}
            )
            assert status == 200
    events = {"events": [{"event_id": "e-1", "user_id": "user-0", "session_id": "session-0",
                          "ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                          "type": "view", "step": "welcome"}]}  # fmt: skip
    assert post(port, "/events", events)[0] == 200
    repeat = {**MINIMAL, "user_id": "user-cap", "session_id": "session-cap"}
    shown = [post(port, "/score", repeat)[1]["action"]["type"] for _ in range(2)]
    assert shown[0] != "none" and shown[1] == "none"  # one trigger per episode: capped


def swap_in_a_model(port: int, layout) -> None:
    """A bundle appears and POST /reload serves it (after the traffic: those were rules)."""
    from bench.synthetic import make_bundle

    make_bundle(layout.models / "1", version="1", n_trees=5, rows=400, seed=0)
    status, body = post(port, "/reload", {})
    assert status == 200 and body["changed"] is True, body


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    """A real `bentoml serve` (token required) after the traffic: (port, layout)."""
    root = tmp_path_factory.mktemp("dashboard")
    layout = tmp_layout(root, QUIET)
    with real_server("bentoml", layout, root / "server.log", token=TOKEN) as (port, _):
        drive_traffic(port)
        swap_in_a_model(port, layout)
        yield port, layout


def expected_from_db(path: Path) -> dict[str, dict[str, int]]:
    """Per moment: decisions, shown, accepted (of shown), completed - plain SQL on the log."""
    con = sqlite3.connect(path)
    try:
        rows = con.execute(
            """
            SELECT d.moment, COUNT(*),
                   SUM(d.action != 'none'),
                   SUM(d.action != 'none' AND EXISTS (SELECT 1 FROM outcomes o
                       WHERE o.decision_id = d.decision_id AND o.outcome = 'accepted')),
                   SUM(EXISTS (SELECT 1 FROM outcomes o
                       WHERE o.decision_id = d.decision_id AND o.outcome = 'step_completed'))
            FROM decisions d GROUP BY d.moment
            """
        ).fetchall()
    finally:
        con.close()
    return {
        m: {"decisions": n, "shown": s, "accepted": a, "completed": c} for m, n, s, a, c in rows
    }


def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(arg)
    options.add_argument("--window-size=1280,2400")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(PAGE_LOAD_LIMIT_S)
    return driver


@needs_chromium
def test_the_dashboard_renders_the_logged_figures_in_chromium(served) -> None:
    from selenium.webdriver.common.by import By

    port, layout = served
    if True:
        expected = expected_from_db(layout.serving / "decisions.db")
        assert sum(e["decisions"] for e in expected.values()) == 24 + 2
        driver = browser()
        try:
            url = f"http://127.0.0.1:{port}/dashboard?window=1h"
            driver.get(url)  # no token yet
            body = driver.find_element(By.TAG_NAME, "body").text
            assert "missing or invalid bearer token" in body
            assert not driver.find_elements(By.CSS_SELECTOR, "[data-figure]")

            driver.execute_cdp_cmd("Network.enable", {})
            driver.execute_cdp_cmd(
                "Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Bearer {TOKEN}"}}
            )
            driver.get(url)
            assert driver.title == "Intent service - last 1h"
            figures = {
                el.get_attribute("data-figure"): el.text
                for el in driver.find_elements(By.CSS_SELECTOR, "[data-figure]")
            }
            assert figures["totals/decisions"] == str(
                sum(e["decisions"] for e in expected.values())
            )
            for moment, e in expected.items():
                for key in ("decisions", "shown", "accepted", "completed"):
                    assert figures[f"moment/{moment}/{key}"] == str(e[key]), (moment, key)
                if e["shown"]:
                    rate = f"{e['accepted'] / e['shown'] * 100:.1f} %"
                    assert figures[f"moment/{moment}/acceptance"].startswith(rate)
                completion = f"{e['completed'] / e['decisions'] * 100:.1f} %"
                assert figures[f"moment/{moment}/completion"].startswith(completion)
            charts = driver.find_elements(By.CSS_SELECTOR, "svg[role=img]")
            assert len(charts) >= 4  # the timeline and the interval charts
            assert "shadow off" in driver.find_element(By.ID, "shadow-status").text
            ARTIFACTS.mkdir(exist_ok=True)
            assert driver.save_screenshot(str(ARTIFACTS / "dashboard.png"))
        finally:
            driver.quit()
    assert (ARTIFACTS / "dashboard.png").stat().st_size > 10_000


GRAFANA = REPO_ROOT / "deploy" / "grafana" / "intent-dashboard.json"
METRIC = re.compile(r"\b(?:intent|bentoml)_[a-z0-9_]+\b")


def grafana_metric_names() -> set[str]:
    """Every metric name the Grafana dashboard's PromQL expressions reference."""
    dashboard = json.loads(GRAFANA.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert exprs and all(METRIC.search(e) for e in exprs)
    return {name for e in exprs for name in METRIC.findall(e)}


def exposed_names(text: str) -> set[str]:
    """Metric names in a /metrics scrape: samples, and families declared by # TYPE."""
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            names.add(line.split()[2])
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def test_every_grafana_expression_names_a_metric_the_server_exposes(served) -> None:
    """All but the drift gauges, which need a profiled model on a feature store: the
    server-level drift test (test_dashboard_drift) scrapes those."""
    port, _ = served
    status, body = call(port, "GET", "/metrics")
    assert status == 200
    drift = {"intent_feature_psi", "intent_score_psi"}
    missing = grafana_metric_names() - drift - exposed_names(body.decode())
    assert not missing, f"the Grafana dashboard queries metrics /metrics lacks: {missing}"
