"""Config model of the Spark feature engine (`configs/spark.yaml`)."""

from __future__ import annotations

from pydantic import Field, model_validator

from core.settings import ConfigFile


class SparkConfig(ConfigFile):
    """Local-mode resources and partitioning of `intent features build --engine spark`."""

    file_name = "spark.yaml"

    local_cores: int = Field(ge=1, le=256)
    driver_memory: str = Field(pattern=r"^[1-9][0-9]*[mg]$")
    session_buckets: int = Field(ge=1)
    user_buckets: int = Field(ge=1)
    shuffle_partitions: int = Field(ge=1)
    network_timeout_s: int = Field(ge=60)
    heartbeat_interval_s: int = Field(ge=1)

    @model_validator(mode="after")
    def _heartbeat_below_timeout(self) -> SparkConfig:
        if self.heartbeat_interval_s >= self.network_timeout_s:
            raise ValueError(
                "heartbeat_interval_s must be below network_timeout_s (Spark requires it)"
            )
        return self
