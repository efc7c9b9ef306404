"""Config model of the event-bus consumer and producer (`configs/stream.yaml`)."""

from __future__ import annotations

from pydantic import Field, model_validator

from core.settings import ConfigFile


class StreamConfig(ConfigFile):
    """Where events are read from (`intent consume`) and written to (`intent produce`)."""

    file_name = "stream.yaml"

    redis_url: str = Field(pattern=r"^rediss?://")
    stream: str = Field(min_length=1)
    group: str = Field(min_length=1)
    shards: int = Field(ge=1, le=64)
    batch_size: int = Field(ge=1, le=10_000)
    block_ms: int = Field(ge=1, le=60_000)
    claim_idle_ms: int = Field(ge=1)
    claim_every_s: float = Field(gt=0)
    maxlen: int | None = Field(ge=1)
    metrics_host: str = Field(min_length=1)
    metrics_port: int | None = Field(ge=0, le=65_535)
    lag_every_s: float = Field(gt=0)
    socket_timeout_s: float = Field(gt=0)
    retry_backoff_s: float = Field(gt=0)
    max_deliveries: int = Field(ge=2)

    def shard_stream(self, shard: int) -> str:
        """The stream of one shard: `stream` itself when there is one, else `stream:<k>`."""
        if not 0 <= shard < self.shards:
            raise ValueError(f"shard {shard} is not in 0..{self.shards - 1}")
        return self.stream if self.shards == 1 else f"{self.stream}:{shard}"

    @model_validator(mode="after")
    def _block_below_timeout(self) -> StreamConfig:
        if self.block_ms / 1000.0 >= self.socket_timeout_s:
            raise ValueError(
                "block_ms must be below socket_timeout_s (a blocking read would time out)"
            )
        return self
