"""All runtime settings in one place, read once (CLI flags > WATCHKEEPER_* env > defaults).

Faust timeouts are chosen for fast startup: a consumer-group join against tansu waits for
about half the session timeout (60 s default in Faust gave 30-38 s startups here; 6 s gives
about 4 s), and ``stream_recovery_delay`` (3 s by default) is pure waiting. 6 s is also the
smallest session timeout a stock Apache Kafka broker accepts (group.min.session.timeout.ms).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from detectors.config import DetectorSettings, load_detector_settings
from streams.contract.events import MIN_EVENT_TIME_MS
from streams.errors import ConfigError

__all__ = ["NotifySettings", "Settings", "Topics", "load_detectors"]

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


class NotifySettings(BaseSettings):
    """How the notifier delivers and when it stays quiet (env WATCHKEEPER_NOTIFY_*).

    Durations are seconds. Endpoints are settings so that tests and air-gapped sites can
    point them at their own receivers.
    """

    model_config = SettingsConfigDict(env_prefix="WATCHKEEPER_NOTIFY_", extra="forbid")

    group_id: str = "watchkeeper-notifier"
    fallback_channels: list[str] = Field(
        default_factory=list,
        description="where alerts of models without an owner go (channel specs)",
    )
    group_wait_s: float = Field(10.0, ge=0, description="collect a model's alerts this long")
    cooldown_s: float = Field(3600.0, ge=0, description="one page per model and kind per window")
    orphan_cooldown_s: float = Field(86_400.0, gt=0, description="one orphaned_model per model")
    ack_ttl_s: float = Field(86_400.0, gt=0, description="an ack silences its model+kind this long")
    max_attempts: int = Field(5, ge=1, description="delivery attempts before the dead-letter topic")
    backoff_base_s: float = Field(0.5, ge=0)
    backoff_max_s: float = Field(30.0, ge=0)
    request_timeout_s: float = Field(10.0, gt=0)
    delivery_lease_s: float = Field(
        300.0,
        gt=0,
        description="a page being sent whose notifier has not finished or renewed it by then "
        "is in doubt (its notifier died) and is re-sent by another replica; renewed before "
        "every attempt and backoff pause, so it must exceed request_timeout_s and backoff_max_s",
    )
    redeliver_max: int = Field(
        3,
        ge=0,
        description="re-send a page in doubt at most this many times, then dead-letter it as "
        "delivery_in_doubt (0: never re-send)",
    )
    dead_letter_summary_s: float = Field(
        300.0,
        gt=0,
        description="page the fallback channels once per window of this length with the "
        "counts of page deliveries dead-lettered in it",
    )
    dedup_ttl_s: float = Field(7 * 86_400.0, gt=0, description="how long delivery records live")
    webhook_secret: SecretStr | None = None
    pagerduty_url: str = "https://events.pagerduty.com/v2/enqueue"
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(25, ge=1, le=65535)
    smtp_from: str = "watchkeeper@localhost"
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    source: str = "watchkeeper"

    @model_validator(mode="after")
    def _lease_outlasts_an_attempt(self) -> NotifySettings:
        """A lease shorter than one attempt or pause would let a replica re-send a page
        that a live notifier is still sending."""
        longest = max(self.request_timeout_s, self.backoff_max_s)
        if self.delivery_lease_s <= longest:
            raise ValueError(
                f"delivery_lease_s ({self.delivery_lease_s:g}) must exceed request_timeout_s "
                f"and backoff_max_s ({longest:g}): the lease is renewed only between attempts"
            )
        return self


class Settings(BaseSettings):
    """Worker settings. Every field can be set as WATCHKEEPER_<NAME> in the environment."""

    model_config = SettingsConfigDict(env_prefix="WATCHKEEPER_", extra="forbid")

    broker: str = "kafka://127.0.0.1:9092"
    redis_url: str = "redis://127.0.0.1:6379/0"
    app_id: str = "watchkeeper"
    topics: Topics = Field(default_factory=Topics)
    notify: NotifySettings = Field(default_factory=NotifySettings)
    partitions: int = Field(4, ge=1, description="partitions for topics the worker creates")
    replication_factor: int = Field(1, ge=1)
    join_ttl_ms: int = Field(7 * DAY_MS, ge=1, description="how long (event time) a side waits")
    max_message_bytes: int = Field(1_048_576, ge=1024)
    max_clock_skew_ms: int = Field(
        DAY_MS,
        ge=0,
        description="dead-letter events timed more than this ahead of their Kafka record "
        "(timestamp_out_of_range): one bad clock must not move the event-time watermark "
        "ahead and expire every pending join",
    )
    min_event_time_ms: int = Field(
        MIN_EVENT_TIME_MS,
        ge=0,
        description="dead-letter events timed before this epoch ms (default "
        "2000-01-01T00:00:00Z): an earlier time is a unit mistake or a zeroed clock",
    )
    detector_config: Path | None = None
    reorder_lag_ms: int = Field(
        300_000, ge=0, description="event-time lag before outcomes reach the detectors"
    )
    idle_flush_s: float = Field(
        5.0, gt=0, description="release held outcomes of a partition quiet this long (wall)"
    )
    batch_max: int = Field(
        4096, ge=1, description="Kafka messages per batch at most (a message may hold many events)"
    )
    batch_max_bytes: int = Field(
        4 * 1024 * 1024, ge=1, description="message bytes per batch at most"
    )
    checkpoint_interval_s: float = Field(
        1.0,
        ge=0,
        description="checkpoint detector state at most this often (0: every batch); "
        "outcomes are acked after the checkpoint that includes them",
    )
    shutdown_grace_s: float = Field(
        15.0,
        gt=0,
        description="on SIGTERM, wait this long for batches in flight, then exit with code 70 "
        "leaving them unacked (read again by whoever takes the partitions)",
    )
    output_retry_s: float = Field(
        60.0,
        gt=0,
        description="retry a batch's output this long before the worker exits non-zero "
        "(its input is not acked: a restarted worker resumes from the checkpoint)",
    )
    health_interval_s: float = Field(
        0.5, gt=0, description="write counters and health snapshots to Redis this often"
    )
    instance_id: str | None = Field(
        None,
        description="static group membership (KIP-345): a name unique and stable per worker "
        "(a StatefulSet pod name, a host name); a worker restarted under the same name "
        "within session_timeout_s gets its partitions back without a rebalance",
    )
    session_timeout_s: float = Field(
        6.0,
        gt=0,
        description="a worker silent this long is out of the group and its partitions move "
        "(the floor of a takeover after a crash; 6 s is the least stock Kafka accepts)",
    )
    heartbeat_interval_s: float = Field(
        0.5, gt=0, description="how soon the survivors of a crash hear of the rebalance"
    )
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


def load_detectors(settings: Settings) -> DetectorSettings:
    """The detector configuration file named in settings, or the defaults."""
    if settings.detector_config is None:
        return DetectorSettings()
    try:
        return load_detector_settings(settings.detector_config)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"detector config {settings.detector_config}: {exc}") from exc
