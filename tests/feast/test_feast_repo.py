"""The feature repo folder works with the plain `feast` CLI, and agrees with our config."""

from __future__ import annotations

import os
import shutil
import sys
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


def test_every_object_says_what_it_is(layout) -> None:
    """`feast entities list` / the UI show these: no blank description, no object untagged."""
    from features.store.definitions import definitions_for

    defs = definitions_for(layout)
    named = [*defs.objects(), defs.user_stats.batch_source, defs.session_push.batch_source]
    assert [o.name for o in named if not o.description.strip()] == []
    assert [o.name for o in named if not o.tags and o is not defs.request] == []


def test_the_feast_cli_sees_the_declarations_once(repo_copy, layout, world) -> None:
    """What `feast apply` collects from the folder is, object for object, what our code
    builds from the same declarations for the same layout (one definition)."""
    from feast.feature_view import DUMMY_ENTITY_NAME
    from feast.repo_operations import parse_repo

    from features.store.definitions import definitions_for

    cwd = Path.cwd()
    sys.path.insert(0, str(repo_copy))
    try:
        os.chdir(repo_copy)  # Feast names the modules relative to the working directory
        found = parse_repo(repo_copy)
    finally:
        os.chdir(cwd)
        sys.path.remove(str(repo_copy))
    ours = definitions_for(layout)
    cli = [
        *(e for e in found.entities if e.name != DUMMY_ENTITY_NAME),  # Feast adds it
        *found.data_sources,
        *found.feature_views,
        *found.on_demand_feature_views,
        *found.feature_services,
    ]
    by_name = {o.name: o for o in [*ours.objects(), ours.user_stats.batch_source]}
    by_name |= {o.batch_source.name: o.batch_source for o in ours.objects() if _has_batch(o)}
    assert sorted(o.name for o in cli) == sorted(by_name)  # each object once, none missing
    for obj in cli:
        assert _spec(obj) == _spec(by_name[obj.name]), obj.name


def _has_batch(obj) -> bool:
    return getattr(obj, "batch_source", None) is not None


def _spec(obj):
    proto = obj.to_proto()
    return proto.spec if hasattr(proto, "spec") else proto
