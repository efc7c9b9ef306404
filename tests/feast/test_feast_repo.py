"""The feature repo folder works with the plain `feast` CLI, and agrees with our config."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml
from feast_tables import DEFINITION_MODULES, REPO, REPO_CONFIGS, epoch

from core.settings import load_config
from features.store.config import FeatureStoreConfig
from features.store.online import OnlineFeatures
from features.store.repo import open_store, repo_config


def test_feature_store_yaml_matches_the_config_and_default_layout() -> None:
    raw = yaml.safe_load((REPO / "feature_store.yaml").read_text())
    cfg = load_config(FeatureStoreConfig, REPO_CONFIGS / "features.yaml")
    assert raw["project"] == cfg.project
    assert raw["online_store"]["type"] == "sqlite"
    assert raw["offline_store"]["type"] == "file"
    # relative to the repo folder, the paths land where Layout puts the SQLite store
    from core.layout import Layout

    layout = Layout.under(REPO.parents[1])
    ours = repo_config(layout, cfg)
    assert (REPO / raw["registry"]["path"]).resolve() == Path(ours.registry.path).resolve()
    assert (REPO / raw["online_store"]["path"]).resolve() == Path(ours.online_store.path)


def test_feastignore_keeps_non_definitions_out(tmp_path) -> None:
    from feast.repo_operations import get_repo_files

    repo = tmp_path / "repo"
    shutil.copytree(REPO, repo)
    (repo / "scripts").mkdir()
    (repo / "scripts" / "load.py").write_text("raise SystemExit('not a definition')\n")
    (repo / "test_views.py").write_text("raise SystemExit('not a definition')\n")
    found = {p.stem for p in get_repo_files(repo)}
    assert found == set(DEFINITION_MODULES)


def test_plain_feast_cli_apply_and_materialize(repo_copy, layout, world) -> None:
    from click.testing import CliRunner
    from feast.cli.cli import cli

    runner = CliRunner()

    def feast(*args: str) -> str:
        result = runner.invoke(cli, ["--chdir", str(repo_copy), *args])
        assert result.exit_code == 0, result.output + repr(result.exception)
        return result.output

    out = feast("apply")
    assert "moment_signals" in out and "intent_model_v1" in out
    feast("materialize", "2025-01-01T00:00:00", "2025-03-03T12:10:00")
    feast("materialize-incremental", "2025-03-03T14:00:00")

    cfg = load_config(FeatureStoreConfig, layout=layout)
    online = OnlineFeatures(open_store(layout, cfg), cfg.feature_service)
    vector = online.read("u_known", "s1", "welcome", epoch(7200))
    assert vector.values["user_sessions_30d"] == 99  # loaded by the incremental run
    assert vector.values["pause_s"] == 7200 - 25


def test_every_entity_view_and_service_says_what_it_is(layout) -> None:
    """`feast entities list` / the UI show these: none may be blank."""
    from features.store.definitions import definitions_for

    defs = definitions_for(layout)
    named = [defs.user, defs.session, defs.step, defs.user_stats, defs.step_stats]
    named += [defs.session_state, defs.moment_signals, defs.service]
    assert [o.name for o in named if not o.description.strip()] == []
