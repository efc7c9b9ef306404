"""Config model of the Feast feature store (`configs/features.yaml`)."""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum

from pydantic import Field

from core.settings import ConfigFile, StrictModel

# Feast names: letters, digits and underscores, not starting with an underscore.
_FEAST_NAME = r"^[A-Za-z0-9][A-Za-z0-9_]*$"


class OnlineBackend(StrEnum):
    """Where online features live: embedded SQLite file or a Redis server."""

    SQLITE = "sqlite"
    REDIS = "redis"


class TtlConfig(StrictModel):
    """How long a stored row of each feature view stays valid."""

    user_stats_days: float = Field(gt=0)
    step_stats_days: float = Field(gt=0)
    session_state_hours: float = Field(gt=0)

    @property
    def user_stats(self) -> timedelta:
        return timedelta(days=self.user_stats_days)

    @property
    def step_stats(self) -> timedelta:
        return timedelta(days=self.step_stats_days)

    @property
    def session_state(self) -> timedelta:
        return timedelta(hours=self.session_state_hours)


class OnlineStoreConfig(StrictModel):
    """The online store backend and its connection settings."""

    backend: OnlineBackend
    redis_connection_string: str = Field(min_length=1)
    redis_key_ttl_days: float | None = Field(gt=0)


class FeatureStoreConfig(ConfigFile):
    """The Feast project, the model's FeatureService, view TTLs and the online store."""

    file_name = "features.yaml"

    project: str = Field(pattern=_FEAST_NAME)
    feature_service: str = Field(pattern=_FEAST_NAME)
    ttl: TtlConfig
    online_store: OnlineStoreConfig
    registry_cache_ttl_s: int = Field(ge=0)

    def override(self, *, project: str | None = None, **online: object) -> FeatureStoreConfig:
        """A validated copy with another project and/or online-store settings.

        For `--backend` options and tests (a unique project per run on a shared Redis).
        """
        raw = self.model_dump()
        if project is not None:
            raw["project"] = project
        raw["online_store"].update(online)
        return type(self).model_validate(raw)
