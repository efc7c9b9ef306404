"""The FeatureService named in configs/features.yaml: the model's feature contract."""

from __future__ import annotations

from feast import FeatureService, FeatureView, OnDemandFeatureView

from features.store.definitions import SESSION_STATE, STEP_STATS, USER_STATS, RepoValues


def declare(
    values: RepoValues,
    *,
    user_stats: FeatureView,
    step_stats: FeatureView,
    session_state: FeatureView,
    moment_signals: OnDemandFeatureView,
) -> FeatureService:
    """Every served column of the stored views (no clocks) and every request-time signal."""
    return FeatureService(
        name=values.feature_service,
        features=[
            user_stats[values.served(USER_STATS)],
            step_stats[values.served(STEP_STATS)],
            session_state[values.served(SESSION_STATE)],
            moment_signals,
        ],
        description="The model's feature contract: every feature it reads, in order.",
        tags={"config": "configs/features.yaml", "consumer": "intent-scorer"},
    )
