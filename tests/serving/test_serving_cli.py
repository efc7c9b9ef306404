"""`intent serve` and `intent bench decide | serve`: user errors are one line, output is JSON."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import pytest
import typer
from serving_helpers import QUIET, tmp_layout
from typer.testing import CliRunner

from serving.cli import register


@pytest.fixture
def cli() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def root() -> None:
        """test app"""

    register(app)
    return app


def use_layout(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, patches=QUIET):
    layout = tmp_layout(tmp_path, patches)
    monkeypatch.setenv("INTENT_HOME", str(layout.root))
    monkeypatch.setenv("INTENT_CONFIGS", str(layout.configs))
    return layout


def test_serve_refuses_a_busy_port_in_one_line(cli, tmp_path, monkeypatch) -> None:
    use_layout(monkeypatch, tmp_path)
    with socket.socket() as busy:
        busy.bind(("", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(cli, ["serve", "--port", str(port)])
    assert result.exit_code == 1
    assert f"port {port}" in result.output and "already in use" in result.output
    assert "Traceback" not in result.output


def test_serve_reports_a_bad_config_before_starting(cli, tmp_path, monkeypatch) -> None:
    from core.settings import ConfigError

    use_layout(monkeypatch, tmp_path, {"serving.yaml": {"limits.max_batch": 0}})
    result = CliRunner().invoke(cli, ["serve"])
    assert isinstance(result.exception, ConfigError)  # intent's main prints it in one line
    assert "serving.yaml: limits.max_batch" in str(result.exception)


def test_bench_decide_prints_json(cli, tmp_path, monkeypatch, bundle_dir) -> None:
    layout = use_layout(monkeypatch, tmp_path)
    shutil.copytree(bundle_dir, layout.models / "1")
    result = CliRunner().invoke(cli, ["bench", "decide", "-n", "300"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout[result.stdout.index("{") :])
    assert out["iterations"] == 300 and out["model"].startswith("bundle v1")
    for variant in ("rules_no_log", "model_no_log", "model_with_durable_log"):
        stats = out[variant]
        assert 0 < stats["p50_ms"] <= stats["p99_ms"] <= stats["max_ms"]
    assert out["model_no_log"]["sources"] == {"model": 300}
    # the benchmark wrote nowhere near the real decision log
    assert not (layout.serving / "decisions.db").exists()


def test_the_readiness_timeout_names_its_setting() -> None:
    """Issue 11 item 10: "did not become ready within 60 s" did not say what to raise."""
    from bench.serving import free_port, wait_ready

    with pytest.raises(TimeoutError, match=r"server\.startup_timeout_s"):
        wait_ready(free_port(), 0.5)  # nothing listens there: it can only time out


def test_server_env_is_optimized_and_sets_bentoml_workers() -> None:
    from serving.app_bare import server_env

    env = server_env({"BENTOML_CONFIG_OPTIONS": "api_server.metrics.enabled=false"}, 2)
    assert env["PYTHONOPTIMIZE"] == "1"
    assert env["BENTOML_CONFIG_OPTIONS"].split() == [
        "api_server.metrics.enabled=false",
        "services.intent_service.workers=2",
    ]
    assert "BENTOML_CONFIG_OPTIONS" not in server_env({}, 1)
    assert server_env({"PYTHONOPTIMIZE": "0"})["PYTHONOPTIMIZE"] == "0"


@pytest.mark.slow
def test_bench_serve_measures_the_floor_and_its_start(cli, tmp_path, monkeypatch) -> None:
    """The floor server alone (it starts in about a second): JSON with ready time and CPU."""
    use_layout(monkeypatch, tmp_path)
    result = CliRunner().invoke(cli, ["bench", "serve", "--server", "floor", "-n", "40", "-c", "2"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout[result.stdout.index("{") :])
    floor = out["floor"]
    assert floor["errors"] == 0 and floor["echo"]["throughput_rps"] > 0
    assert floor["ready_cpu_s"] > 0 and floor["ready_s"] > 0
    assert floor["echo"]["p50_ms"] <= floor["echo"]["p99_ms"]
    assert "bentoml" not in out and out["meets_targets"] == {}


@pytest.mark.slow
def test_bench_serve_runs_the_baseline_checkout_in_the_same_run(cli, tmp_path, monkeypatch) -> None:
    """`--baseline DIR` starts the servers from DIR's code too: ratios in `vs_baseline`, and
    a baseline that cannot start is named as the baseline."""
    use_layout(monkeypatch, tmp_path / "home")
    root = Path(__file__).resolve().parents[2]
    base = tmp_path / "base"
    for package in ("bench", "core", "features", "intent", "loop", "serving", "training"):
        shutil.copytree(root / package, base / package, ignore=shutil.ignore_patterns("*.pyc"))
    args = ["bench", "serve", "--server", "uvicorn", "-n", "40", "-c", "2", "--baseline", str(base)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout[result.stdout.index("{") :])
    assert out["uvicorn@baseline"]["errors"] == 0 and out["uvicorn"]["errors"] == 0
    ratios = out["vs_baseline"]["uvicorn"]
    now, before = out["uvicorn"], out["uvicorn@baseline"]
    assert ratios["ready_cpu_s_ratio"] == round(now["ready_cpu_s"] / before["ready_cpu_s"], 3)
    assert ratios["score_rps_ratio"] > 0

    app_bare = base / "serving" / "app_bare.py"
    app_bare.write_text(app_bare.read_text() + "\nraise SystemExit('baseline broken')\n")
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1
    assert "uvicorn@baseline" in result.output and "exited" in result.output
