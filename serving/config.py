"""`configs/serving.yaml`: how the server runs (model source, features, backends, limits).

The product's decisions (`configs/policy.yaml`) are modelled in `core.policy_config`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field, model_validator

from core.registry import ModelSourceConfig
from core.settings import ConfigFile, StrictModel

# --- serving.yaml --------------------------------------------------------------------------


class ColdStart(StrEnum):
    """Which unknown entities make a decision a cold start (answered by the rules)."""

    UNKNOWN_USER = "unknown_user"  # no stored user history, even when the session is live
    UNKNOWN_USER_AND_SESSION = "unknown_user_and_session"  # nothing stored about either


class ReadMode(StrEnum):
    """How the feature-read budget is kept (serving.feature_read)."""

    AUTO = "auto"  # embedded store (SQLite) inline, checked after; network store on threads
    THREADS = "threads"  # every store on worker threads: the caller waits at most the budget


class FeatureReadConfig(StrictModel):
    online_store: Literal["feast", "none"]
    budget_ms: float = Field(gt=0)
    read_mode: ReadMode
    threads: int = Field(ge=1)
    cold_start: ColdStart


class ExplainConfig(StrictModel):
    """Model reasons: score change when a feature is set to its training baseline."""

    top_k: int = Field(ge=0)
    candidates: int = Field(ge=0)  # most important features tried (one ONNX row each)


class SqliteStore(StrictModel):
    kind: Literal["sqlite"]
    file: str = Field(min_length=1)  # under layout.serving (an absolute path is kept)


class SqliteCaps(SqliteStore):
    checkpoint_interval_s: float = Field(gt=0)  # WAL checkpoints, off the request path
    wal_limit_mb: float = Field(gt=0)  # a larger WAL is truncated by the checkpointer


class SqliteSessions(SqliteStore):
    retention_hours: float = Field(gt=0)  # event ids and sessions older than this are forgotten


class MemoryStore(StrictModel):
    kind: Literal["memory"]


class RedisStore(StrictModel):
    kind: Literal["redis"]
    url: str
    prefix: str = Field(min_length=1)
    socket_timeout_s: float = Field(default=1.0, gt=0)  # frees a thread stuck on a hung Redis


class RedisSessions(RedisStore):
    """Live session state shared by every worker and replica (serving.sessions_redis)."""

    retention_hours: float = Field(gt=0)  # keys expire this long after their last write
    conflict_retries: int = Field(default=50, ge=1)  # batches refolded after a concurrent write


class SqliteLog(SqliteStore):
    synchronous: Literal["full", "normal", "off"]
    checkpoint_interval_s: float = Field(gt=0)  # WAL checkpoints, off the commit path
    wal_limit_mb: float = Field(gt=0)  # a larger WAL is truncated by the checkpointer
    retention_days: float | None = Field(gt=0)  # older decisions are deleted; null keeps all


class PostgresLog(StrictModel):
    kind: Literal["postgres"]
    dsn: str
    schema_name: str = Field(pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    retention_days: float | None = Field(default=None, gt=0)
    connect_timeout_s: float = Field(default=5.0, ge=2)  # libpq's minimum is 2 s
    call_timeout_s: float = Field(default=10.0, gt=0)  # a hung statement's socket is cut


class BudgetsConfig(StrictModel):
    """Blocking backend calls run off the event loop (serving.offloop), each awaited at most
    its budget: a hung backend costs a fallback or a 503, never a frozen worker."""

    threads: int = Field(ge=1)  # per backend pool (caps, lookups, probes)
    caps_ms: float = Field(gt=0)  # cap check; over budget the trigger is suppressed
    log_commit_ms: float = Field(gt=0)  # durable decision write; over budget 503
    lookup_ms: float = Field(gt=0)  # /outcome's decision lookup; over budget 503
    probe_ms: float = Field(gt=0)  # one /readyz dependency check


class BackendsConfig(StrictModel):
    caps: Annotated[SqliteCaps | RedisStore | MemoryStore, Field(discriminator="kind")]
    decision_log: Annotated[SqliteLog | PostgresLog | MemoryStore, Field(discriminator="kind")]
    sessions: Annotated[SqliteSessions | RedisSessions | MemoryStore, Field(discriminator="kind")]
    log_batch_max: int = Field(ge=1)  # records per group commit
    budgets: BudgetsConfig
    housekeeping_interval_s: float = Field(gt=0)  # decision-log retention runs this often


class LimitsConfig(StrictModel):
    max_body_bytes: int = Field(ge=1024)
    max_batch: int = Field(ge=1)
    max_events: int = Field(ge=1)
    max_id_length: int = Field(ge=8)
    max_label_length: int = Field(ge=8)  # device / channel
    max_ts_age_days: float = Field(gt=0)  # an older request or event time is a 400


class AuthConfig(StrictModel):
    token_env: str = Field(min_length=1)  # the token itself never sits in a file
    public_paths: list[str]


class ServerConfig(StrictModel):
    host: str
    port: int = Field(ge=1, le=65535)
    startup_timeout_s: float = Field(gt=0)


class BenchConfig(StrictModel):
    clients: int = Field(ge=1)
    requests: int = Field(ge=1)  # per endpoint
    warmup: int = Field(ge=0)
    decide_iterations: int = Field(ge=1)


class DriftConfig(StrictModel):
    """PSI of served features and scores against the bundle's reference profile."""

    enabled: bool = True
    window: int = Field(default=2000, ge=10)  # last N model decisions per model version
    every: int = Field(default=200, ge=1)  # recompute after this many decisions
    min_rows: int = Field(default=500, ge=10)  # no verdict on fewer rows (noise)
    threshold: float = Field(default=0.25, gt=0)  # PSI past this: /readyz degraded, `drift`

    @model_validator(mode="after")
    def _fits(self) -> DriftConfig:
        if self.min_rows > self.window:
            raise ValueError(f"drift.min_rows ({self.min_rows}) exceeds window ({self.window})")
        return self


# serving.decision.FallbackReason values (that module imports this one)
FallbackName = Literal[
    "cold_start", "feature_store_error", "feature_budget_exceeded", "no_model", "model_error"
]


class ShadowConfig(StrictModel):
    """The challenger scores every model decision off the response path (serving.rollout)."""

    enabled: bool = False
    alias: str = Field(default="challenger", min_length=1)  # models:/<registered_model>@alias
    budget_ms: float = Field(default=50.0, gt=0)  # a shadow score later than this is dropped
    threads: int = Field(default=1, ge=1)  # shadow scoring threads
    max_pending: int = Field(default=256, ge=1)  # more queued shadows are dropped, not queued


class CanaryGuard(StrictModel):
    """Roll the canary back (share -> 0) when the challenger misbehaves."""

    min_decisions: int = Field(default=200, ge=1)  # no verdict on fewer canary decisions
    max_fallback_rate: float = Field(default=0.2, ge=0, le=1)  # fallbacks not in `ignore`
    max_error_rate: float = Field(default=0.02, ge=0, le=1)  # model_error fallbacks
    ignore: list[FallbackName] = Field(default_factory=lambda: ["cold_start"])  # not the model's


class CanaryConfig(StrictModel):
    """A sticky share of users (own salt) served by the challenger, arm `canary=challenger`."""

    enabled: bool = False
    alias: str = Field(default="challenger", min_length=1)
    share: float = Field(default=0.1, ge=0, le=1)
    salt: str = Field(default="canary-v1", min_length=1)
    guard: CanaryGuard = CanaryGuard()


class RolloutRule(StrictModel):
    """`intent rollout compare`'s promote / hold / rollback rule (loop.rollout)."""

    metric: Literal["accepted", "step_completed"] = "step_completed"  # outcome = success
    confidence: float = Field(default=0.95, gt=0, lt=1)
    min_decisions: int = Field(default=200, ge=1)  # per arm, else hold
    min_lift: float = 0.0  # promote when the lift's lower bound exceeds this
    max_error_rate: float = Field(default=0.02, ge=0, le=1)  # challenger over this: rollback
    max_fallback_increase: float = Field(default=0.05, ge=0, le=1)  # vs the champion arm
    max_ece_increase: float = Field(default=0.05, ge=0, le=1)  # worse calibration: hold
    calibration_bins: int = Field(default=10, ge=2)


class RolloutConfig(StrictModel):
    shadow: ShadowConfig = ShadowConfig()
    canary: CanaryConfig = CanaryConfig()
    compare: RolloutRule = RolloutRule()

    @model_validator(mode="after")
    def _one_challenger(self) -> RolloutConfig:
        if self.shadow.enabled and self.canary.enabled and self.shadow.alias != self.canary.alias:
            raise ValueError("shadow.alias and canary.alias must name the same challenger")
        return self


class DashboardConfig(StrictModel):
    """The live efficacy dashboard (GET /dashboard, /dashboard.json; serving.dashboard)."""

    windows_h: dict[str, float] = Field(
        default={"1h": 1.0, "24h": 24.0, "7d": 168.0}, min_length=1
    )  # ?window=<key>: the last N hours of the decision log
    default_window: str = "24h"
    refresh_s: int = Field(default=30, ge=5)  # the page reloads itself this often
    read_budget_ms: float = Field(default=5000, gt=0)  # the log read; over it: 503
    max_rows: int = Field(default=200_000, ge=100)  # newest decisions read per window
    confidence: float = Field(default=0.95, gt=0, lt=1)  # Wilson intervals
    shadow_tolerance: float = Field(default=0.05, gt=0, lt=1)  # |champion - shadow| agrees

    @model_validator(mode="after")
    def _default_known(self) -> DashboardConfig:
        if self.default_window not in self.windows_h:
            raise ValueError(
                f"dashboard.default_window {self.default_window!r} is not one of "
                f"windows_h ({', '.join(self.windows_h)})"
            )
        if min(self.windows_h.values()) <= 0:
            raise ValueError("dashboard.windows_h: every window must be > 0 hours")
        return self


class ServingConfig(ConfigFile):
    """How the scoring server runs (see the comments in serving.yaml)."""

    file_name = "serving.yaml"

    model: ModelSourceConfig
    features: FeatureReadConfig
    explain: ExplainConfig
    backends: BackendsConfig
    limits: LimitsConfig
    auth: AuthConfig
    server: ServerConfig
    bench: BenchConfig
    drift: DriftConfig = DriftConfig()
    rollout: RolloutConfig = RolloutConfig()
    dashboard: DashboardConfig = DashboardConfig()
