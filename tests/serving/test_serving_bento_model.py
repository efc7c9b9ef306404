"""The champion declared on the service: no champion, no Bento; a Bento's sources find the
model it pinned and where runtime state goes. (Building and serving a real Bento:
test_serving_bento.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from bentoml.exceptions import BentoMLException

from core.layout import (
    BENTO_CHAMPION_ALIAS,
    BENTO_FILE,
    RUNTIME_FILE,
    packaged_configs,
    runtime_defaults,
)
from core.registry import PinError
from serving.service import IntentService


def test_a_build_without_a_champion_fails_saying_what_to_do(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("INTENT_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("INTENT_CONFIGS", raising=False)
    monkeypatch.delenv("INTENT_MLRUNS_DIR", raising=False)
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "bentoml"))
    declared = IntentService.models
    assert [type(m).__name__ for m in declared] == ["RegistryChampion"]
    with pytest.raises(PinError, match="intent train --promote") as failed:
        declared[0].to_info()  # what `bentoml build` asks every declared model
    assert isinstance(failed.value, BentoMLException)  # its CLI prints the message, no trace


def bento_sources(root: Path, models: list[dict]) -> Path:
    """A Bento's folder as BentoML lays it out: bento.yaml next to src/."""
    src = root / "src"
    (src / "configs").mkdir(parents=True)
    service = {"name": "intent_service", "service": "", "models": models}
    (root / BENTO_FILE).write_text(yaml.safe_dump({"services": [service], "models": []}))
    return src


def test_a_bento_serves_the_model_listed_under_the_alias(tmp_path) -> None:
    other = {"tag": "something:else", "module": "", "creation_time": "2026-01-01"}
    ours = {"tag": "intent-scorer:v3-abc", "alias": BENTO_CHAMPION_ALIAS, "module": ""}
    src = bento_sources(tmp_path / "bento", [other, ours])
    runtime = runtime_defaults(src)
    assert runtime is not None
    assert runtime.pinned_model == "intent-scorer:v3-abc"
    assert runtime.home == Path("~/intent").expanduser()  # never inside the Bento
    assert packaged_configs(src) == src / "configs"  # plain `bentoml build` copies configs/
    (src / RUNTIME_FILE).write_text(json.dumps({"home": str(tmp_path / "state")}))
    assert runtime_defaults(src).home == tmp_path / "state"


def test_outside_a_bento_there_are_no_runtime_defaults(tmp_path) -> None:
    (tmp_path / "src").mkdir()
    assert runtime_defaults(tmp_path / "src") is None
    assert packaged_configs(tmp_path / "src") == tmp_path / "src" / "intent" / "configs"
    src = bento_sources(tmp_path / "unpinned", [])
    assert runtime_defaults(src).pinned_model is None
