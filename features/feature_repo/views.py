"""Feature views over the offline tables in data/features/ (written by `intent features build`).

Schemas are the build's contract (`RepoValues.fields`): a new aggregate in
configs/aggregates.yaml becomes a feature without touching this file.
"""

from __future__ import annotations

from feast import Entity, FeatureView

from features.feature_repo.data_sources import Sources
from features.store.definitions import SESSION_STATE, STEP_STATS, USER_STATS, RepoValues


def declare(
    values: RepoValues, *, user: Entity, session: Entity, step: Entity, sources: Sources
) -> tuple[FeatureView, FeatureView, FeatureView]:
    """`user_stats`, `step_stats` and `session_state`, with TTLs from configs/features.yaml."""
    user_stats = FeatureView(
        name=USER_STATS,
        entities=[user],
        ttl=values.ttl.user_stats,
        schema=values.fields(USER_STATS),
        source=sources.user_stats_source,
        online=True,
        description="Per-user rolling-window aggregates (configs/aggregates.yaml).",
        tags={"config": "configs/aggregates.yaml", "refresh": "daily"},
    )
    step_stats = FeatureView(
        name=STEP_STATS,
        entities=[step],
        ttl=values.ttl.step_stats,
        schema=values.fields(STEP_STATS),
        source=sources.step_stats_source,
        online=True,
        description="Per-step drop-off and typical time / pause, daily snapshots.",
        tags={"config": "configs/funnel.yaml", "refresh": "daily"},
    )
    session_state = FeatureView(
        name=SESSION_STATE,
        entities=[session],
        ttl=values.ttl.session_state,
        schema=values.fields(SESSION_STATE),
        source=sources.session_state_push,
        online=True,
        description="Live session signals (signals.snapshot); the server pushes fresh rows.",
        tags={"config": "configs/signals.yaml", "refresh": "every event"},
    )
    return user_stats, step_stats, session_state
