"""The offline packages never import the online one: a model is trained, and features are
built, without the server's code on the path (the Bento ships serving/ without training/)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def serving_imports(package: str, root: Path = ROOT) -> list[str]:
    """`file:line module` for every import of `serving` (top level or inside a function)."""
    found = []
    for path in sorted((root / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                modules = [node.module or ""]
            elif isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            else:
                continue
            for module in modules:
                if module == "serving" or module.startswith("serving."):
                    found.append(f"{path.relative_to(root)}:{node.lineno} {module}")
    return found


@pytest.mark.parametrize("package", ["core", "training", "features"])
def test_offline_packages_do_not_import_serving(package: str) -> None:
    assert serving_imports(package) == []


def test_the_check_sees_an_import_of_serving(tmp_path: Path) -> None:
    """The scan itself finds a nested import (so the test above can fail)."""
    pkg = tmp_path / "offline"
    pkg.mkdir()
    (pkg / "job.py").write_text("def f():\n    from serving.engine import DecisionEngine\n")
    assert serving_imports("offline", root=tmp_path) == ["offline/job.py:2 serving.engine"]
