"""A non-editable install works anywhere: `pip install .` into a fresh venv, run from /tmp.

The wheel carries the default configs (`intent/configs`, copied from `configs/` at build
time), data goes to INTENT_HOME or the working directory, and INTENT_CONFIGS overrides.
Dependencies come pinned from uv.lock (uv's pip interface, from its cache when warm).
"""

from __future__ import annotations

import filecmp
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
# Installing ~200 pinned wheels: seconds from a warm uv cache, minutes from the network.
INSTALL_TIMEOUT_S = float(os.environ.get("INTENT_TEST_INSTALL_TIMEOUT_S", 1800))
COMMAND_TIMEOUT_S = float(os.environ.get("INTENT_TEST_COMMAND_TIMEOUT_S", 600))


def _uv() -> str:
    found = shutil.which("uv") or (REPO / ".tools" / "bin" / "uv")
    if not Path(found).exists():
        pytest.skip("uv is not installed (make install puts it in .tools/bin)")
    return str(found)


def _run(args: list[str], *, cwd: Path, env: dict[str, str] | None = None, timeout: float):
    result = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, f"{args}: {result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the project installed from a wheel (not editable); its bin folder."""
    uv = _uv()
    root = tmp_path_factory.mktemp("install")
    venv = root / "venv"
    _run([uv, "venv", "-q", str(venv), "--python", sys.executable], cwd=root, timeout=300)
    requirements = root / "requirements.txt"
    exported = _run(
        [uv, "export", "--frozen", "--no-dev", "--no-emit-project", "--no-hashes", "-q"],
        cwd=REPO,
        timeout=COMMAND_TIMEOUT_S,
    )
    requirements.write_text(exported.stdout)
    python = venv / "bin" / "python"
    _run(
        [uv, "pip", "install", "-q", "--python", str(python), "-r", str(requirements), str(REPO)],
        cwd=root,
        timeout=INSTALL_TIMEOUT_S,
    )
    return venv / "bin"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INTENT_")}
    return env | extra


def test_the_installed_package_is_not_the_checkout(installed: Path) -> None:
    out = _run(
        [str(installed / "python"), "-c", "import core.layout as m; print(m.__file__)"],
        cwd=installed.parent,
        env=_env(),
        timeout=COMMAND_TIMEOUT_S,
    )
    assert str(REPO) not in out.stdout and "site-packages" in out.stdout


def test_version_and_help_from_another_folder(installed: Path, tmp_path: Path) -> None:
    version = _run([str(installed / "intent"), "--version"], cwd=tmp_path, env=_env(), timeout=60)
    assert version.stdout.strip() == "intent 0.1.0"
    short = _run([str(installed / "intent"), "-h"], cwd=tmp_path, env=_env(), timeout=60)
    assert "simulate" in short.stdout and "Usage" in short.stdout


def test_packaged_configs_are_the_repo_configs(installed: Path, tmp_path: Path) -> None:
    out = _run([str(installed / "intent"), "config"], cwd=tmp_path, env=_env(), timeout=120)
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == len(list((REPO / "configs").glob("*.yaml")))
    assert all(line.startswith("ok") and "site-packages" in line for line in lines), lines
    packaged = Path(lines[0].split()[-1]).parent
    compare = filecmp.dircmp(packaged, REPO / "configs")
    assert not (compare.diff_files or compare.left_only or compare.right_only)
    for sub in compare.common_dirs:
        assert not filecmp.dircmp(packaged / sub, REPO / "configs" / sub).diff_files


def test_intent_configs_overrides_the_packaged_ones(installed: Path, tmp_path: Path) -> None:
    """A folder with one file overrides that file; the others still come from the package."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "funnel.yaml").write_text("name: f\nsteps: [a]\ntypo: 1\n")
    result = subprocess.run(
        [str(installed / "intent"), "config"],
        cwd=tmp_path,
        env=_env(INTENT_CONFIGS=str(mine)),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    assert f"{mine / 'funnel.yaml'}: typo: unknown key" in result.stderr.replace("\n", " ")
    packaged = [line for line in result.stderr.splitlines() if line.startswith("ok")]
    assert len(packaged) == len(list((REPO / "configs").glob("*.yaml"))) - 1, result.stderr
    assert all("site-packages" in line for line in packaged), packaged


def test_data_goes_to_the_working_directory_or_intent_home(installed: Path, tmp_path: Path) -> None:
    args = [str(installed / "intent"), "simulate", "--users", "20", "--days", "2"]
    work = tmp_path / "work"
    work.mkdir()
    _run(args, cwd=work, env=_env(), timeout=COMMAND_TIMEOUT_S)
    assert (work / "data" / "raw" / "sim" / "events.parquet").is_file()
    home = tmp_path / "home"
    _run(args, cwd=work, env=_env(INTENT_HOME=str(home)), timeout=COMMAND_TIMEOUT_S)
    assert (home / "data" / "raw" / "sim" / "events.parquet").is_file()
