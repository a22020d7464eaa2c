"""All runtime settings in one place, read once (CLI flags > WATCHKEEPER_* env > defaults).

Faust timeouts are chosen for fast startup: a consumer-group join against tansu waits for
about half the session timeout (60 s default in Faust gave 30-38 s startups here; 6 s gives
about 4 s), and ``stream_recovery_delay`` (3 s by default) is pure waiting. 6 s is also the
smallest session timeout a stock Apache Kafka broker accepts (group.min.session.timeout.ms).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings", "Topics"]

DAY_MS = 86_400_000


class Topics(BaseSettings):
    """Topic names; the defaults are the ones in DESIGN.md."""

    model_config = SettingsConfigDict(env_prefix="WATCHKEEPER_TOPIC_", extra="forbid")

    predictions: str = "predictions"
    ground_truth: str = "ground-truth"
    outcomes: str = "outcomes"
    alerts: str = "alerts"
    dlq: str = "watchkeeper-dlq"
    rekey: str = "watchkeeper-rekey"


class Settings(BaseSettings):
    """Worker settings. Every field can be set as WATCHKEEPER_<NAME> in the environment."""

    model_config = SettingsConfigDict(env_prefix="WATCHKEEPER_", extra="forbid")

    broker: str = "kafka://127.0.0.1:9092"
    redis_url: str = "redis://127.0.0.1:6379/0"
    app_id: str = "watchkeeper"
    topics: Topics = Field(default_factory=Topics)
    partitions: int = Field(4, ge=1, description="partitions for topics the worker creates")
    replication_factor: int = Field(1, ge=1)
    join_ttl_ms: int = Field(7 * DAY_MS, ge=1, description="how long (event time) a side waits")
    max_message_bytes: int = Field(1_048_576, ge=1024)
    detector_config: Path | None = None
    reorder_lag_ms: int = Field(
        300_000, ge=0, description="event-time lag before outcomes reach the detectors"
    )
    idle_flush_s: float = Field(
        5.0, gt=0, description="release held outcomes of a partition quiet this long (wall)"
    )
    batch_max: int = Field(
        200, ge=1, description="messages per take() batch (a message may hold many events)"
    )
    batch_within_s: float = Field(0.05, gt=0)
    session_timeout_s: float = Field(6.0, gt=0)
    heartbeat_interval_s: float = Field(1.0, gt=0)
    rebalance_timeout_s: float = Field(20.0, gt=0)
    commit_interval_s: float = Field(1.0, gt=0)
    redis_prefix: str = "wk:"
    data_dir: Path = Path(".watchkeeper")
    log_level: str = "warn"

    @field_validator("broker")
    @classmethod
    def _broker_scheme(cls, value: str) -> str:
        if not value.startswith("kafka://"):
            raise ValueError(f"broker must look like kafka://host:port, got {value!r}")
        return value

    @property
    def bootstrap_servers(self) -> str:
        """The broker URL without its scheme, as aiokafka wants it."""
        return ",".join(part.removeprefix("kafka://") for part in self.broker.split(";"))
