"""Several config folders (INTENT_CONFIGS=a:b): each file from the first folder that has it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from core.layout import Layout
from core.settings import ConfigError, config_path, load_config
from features.config import EventsConfig, FunnelConfig

REPO_CONFIGS = Path(__file__).resolve().parents[1] / "configs"
ECOMMERCE = REPO_CONFIGS / "examples" / "ecommerce"


def test_an_overlay_replaces_only_the_files_it_has(monkeypatch) -> None:
    monkeypatch.setenv("INTENT_CONFIGS", os.pathsep.join([str(ECOMMERCE), str(REPO_CONFIGS)]))
    layout = Layout.from_env()
    assert layout.config_dirs == (ECOMMERCE, REPO_CONFIGS)
    assert layout.configs == ECOMMERCE
    assert config_path(FunnelConfig, layout) == ECOMMERCE / "funnel.yaml"
    assert load_config(FunnelConfig, layout=layout).steps == ["browse", "cart", "checkout"]
    assert config_path(EventsConfig, layout) == REPO_CONFIGS / "events.yaml"
    mapping = layout.config_file(Path("mappings") / "diginetica.yaml")
    assert mapping == REPO_CONFIGS / "mappings" / "diginetica.yaml"


def test_one_folder_and_the_default_are_unchanged(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("INTENT_CONFIGS", str(REPO_CONFIGS))
    assert Layout.from_env().config_dirs == (REPO_CONFIGS,)
    monkeypatch.delenv("INTENT_CONFIGS")
    assert Layout.under(tmp_path).config_dirs == (tmp_path / "configs",)
    assert (
        load_config(FunnelConfig, layout=Layout.under(tmp_path, configs=REPO_CONFIGS)).steps[0]
        == "welcome"
    )


def test_one_override_folder_keeps_the_defaults_it_does_not_replace(tmp_path, monkeypatch) -> None:
    """INTENT_CONFIGS adds to the packaged defaults: a folder with only `funnel.yaml` (here a
    copy with one step renamed) overrides that file, every other file still loads."""
    override = tmp_path / "override"
    override.mkdir()
    funnel = (REPO_CONFIGS / "funnel.yaml").read_text().replace("welcome", "landing", 1)
    (override / "funnel.yaml").write_text(funnel)
    monkeypatch.delenv("INTENT_HOME", raising=False)
    monkeypatch.setenv("INTENT_CONFIGS", str(override))
    layout = Layout.from_env()
    assert layout.config_dirs == (override.resolve(), REPO_CONFIGS)
    assert load_config(FunnelConfig, layout=layout).steps[0] == "landing"
    assert config_path(EventsConfig, layout) == REPO_CONFIGS / "events.yaml"
    load_config(EventsConfig, layout=layout)


def test_a_file_no_folder_has_is_reported_in_the_first_folder(tmp_path) -> None:
    layout = Layout.under(tmp_path, configs=(tmp_path / "overlay", tmp_path / "base"))
    with pytest.raises(
        ConfigError, match=f"{tmp_path / 'overlay' / 'funnel.yaml'}: config file not found"
    ):
        load_config(FunnelConfig, layout=layout)
    with pytest.raises(ValueError, match="at least one config folder"):
        Layout.under(tmp_path, configs=())
