"""All runtime settings in one place, read once (CLI flags > WATCHKEEPER_* env > defaults).

Faust timeouts are chosen for fast startup: a consumer-group join against tansu waits for
about half the session timeout (60 s default in Faust gave 30-38 s startups here; 6 s gives
about 4 s), and ``stream_recovery_delay`` (3 s by default) is pure waiting. 6 s is also the
smallest session timeout a stock Apache Kafka broker accepts (group.min.session.timeout.ms).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from detectors.config import DetectorSettings, load_detector_settings
from streams.contract.events import MIN_EVENT_TIME_MS
from streams.errors import ConfigError

__all__ = ["KafkaSecurity", "NotifySettings", "Settings", "Topics", "load_detectors"]

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
    orphan_summary_s: float = Field(
        300.0,
        gt=0,
        description="orphaned_model alerts (models without an owner) go to the fallback "
        "channels as one summary page per window of this length, not one page each",
    )
    orphan_summary_models: int = Field(
        20, ge=1, description="model ids listed by name in an orphan summary (the rest counted)"
    )
    max_pages_per_channel_per_min: int = Field(
        30,
        ge=0,
        description="pages per channel per minute (all replicas together); pages past it are "
        "held back, counted, and summarised to that channel when the minute ends (0: no limit)",
    )
    allow_private_targets: list[str] = Field(
        default_factory=list,
        description="CIDRs and host names exempt from the outbound policy (webhook, Slack "
        "and PagerDuty URLs on loopback, link-local, private or reserved addresses are "
        "refused otherwise); for receivers you run yourself",
    )
    dedup_ttl_s: float = Field(7 * 86_400.0, gt=0, description="how long delivery records live")
    digest_every_s: float = Field(
        7 * 86_400.0,
        ge=0,
        description="send each owner their maintenance scorecard (and the fallback channels "
        "the whole report) once per period of this length, periods starting Monday 00:00 "
        "UTC; the first goes out at the first period start after a notifier first ran "
        "(0: off)",
    )
    info_kinds: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="alert kinds treated as info whatever their severity: never paged, counted "
        "as suppressed_info and kept for lookup (resolves still close incidents); a "
        "comma-separated list in the environment, e.g. prediction_drift,input_quality",
    )
    webhook_secret: SecretStr | None = None
    pagerduty_url: str = "https://events.pagerduty.com/v2/enqueue"
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(25, ge=1, le=65535)
    smtp_from: str = "watchkeeper@localhost"
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    source: str = "watchkeeper"

    @field_validator("allow_private_targets")
    @classmethod
    def _allowlist_parses(cls, value: list[str]) -> list[str]:
        from streams.outbound import parse_allowlist

        parse_allowlist(value)  # ValueError names the bad entry
        return value

    @field_validator("info_kinds", mode="before")
    @classmethod
    def _info_kinds_known(cls, value: object) -> object:
        """Comma-separated text (the environment) or a list; every name a known kind."""
        known = (
            "performance_degradation", "performance_improvement", "prediction_drift",
            "labels_missing", "model_silent", "input_quality", "estimated_degradation",
            "orphaned_model", "model_limit", "maintenance_overdue", "version_changed",
            "version_regression", "feature_drift", "schema_change",
        )  # fmt: skip
        if isinstance(value, str) and value.lstrip().startswith("["):
            import json  # a JSON list, as the other list settings take

            try:
                value = json.loads(value)
            except ValueError as exc:
                raise ValueError(f"not a JSON list: {exc}") from exc
        elif isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if not isinstance(value, list | tuple | set | frozenset):
            return value  # pydantic reports the type
        unknown = sorted({str(v) for v in value} - set(known))
        if unknown:
            raise ValueError(
                f"unknown alert kind(s) {', '.join(map(repr, unknown))}; known kinds: "
                f"{', '.join(known)}"
            )
        return sorted({str(v) for v in value})

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


SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
SASL_MECHANISMS: tuple[str, ...] = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


def secret_from_file(path: Path, what: str) -> SecretStr:
    """A secret kept in a file (a mounted secret; ``*_FILE`` in the environment), without
    the trailing newline an editor or ``echo`` leaves. Secrets then need neither the
    command line, which every user of the machine can read in the process list, nor the
    environment."""
    try:
        text = path.read_bytes().decode()  # not read_text: it would turn a "\r" into "\n"
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{what}: cannot read {path}: {exc}") from exc
    text = text.removesuffix("\n").removesuffix("\r")
    if not text:
        raise ValueError(f"{what}: {path} is empty")
    return SecretStr(text)


def _one_secret(value: SecretStr | None, path: Path | None, what: str) -> SecretStr | None:
    """The secret given directly or in a file; both at once is ambiguous."""
    if value is not None and path is not None:
        raise ValueError(f"{what} and {what}_file are both set: give one")
    return secret_from_file(path, f"{what}_file") if path is not None else value


class KafkaSecurity(BaseSettings):
    """How every Kafka client of the project authenticates and encrypts (env
    WATCHKEEPER_KAFKA_*); :mod:`streams.connections` turns it into client options.

    A ``*_file`` setting reads its secret from that file (WATCHKEEPER_KAFKA_SASL_PASSWORD_FILE);
    after validation the secret is in the plain field and the ``*_file`` field is None.
    """

    # errors name the setting, never its value: a value may be a password
    model_config = SettingsConfigDict(
        env_prefix="WATCHKEEPER_KAFKA_", extra="forbid", hide_input_in_errors=True
    )

    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism = "PLAIN"
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    sasl_password_file: Path | None = None
    ssl_cafile: Path | None = Field(
        None, description="CA bundle that signed the broker's certificate (default: the system's)"
    )
    ssl_certfile: Path | None = Field(None, description="client certificate, for mutual TLS")
    ssl_keyfile: Path | None = Field(None, description="its private key, unless in ssl_certfile")
    ssl_key_password: SecretStr | None = None
    ssl_key_password_file: Path | None = None

    @field_validator("security_protocol", "sasl_mechanism", mode="before")
    @classmethod
    def _known(cls, value: object, info: ValidationInfo) -> object:
        if not isinstance(value, str):
            return value
        value = value.strip().upper()
        if info.field_name == "sasl_mechanism" and value not in SASL_MECHANISMS:
            raise ValueError(
                f"sasl_mechanism {value!r} is not supported: use one of "
                f"{', '.join(SASL_MECHANISMS)} (GSSAPI and OAUTHBEARER are not wired up)"
            )
        return value

    @property
    def uses_ssl(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol in ("SASL_PLAINTEXT", "SASL_SSL")

    @model_validator(mode="after")
    def _consistent(self) -> KafkaSecurity:
        """Credentials or files that the protocol would never use are a mistake to report,
        not something to ignore: a worker would otherwise connect without them."""
        self.sasl_password = _one_secret(
            self.sasl_password, self.sasl_password_file, "sasl_password"
        )
        self.ssl_key_password = _one_secret(
            self.ssl_key_password, self.ssl_key_password_file, "ssl_key_password"
        )
        self.sasl_password_file = self.ssl_key_password_file = None
        protocol = self.security_protocol
        if self.uses_sasl:
            missing = [n for n in ("sasl_username", "sasl_password") if not getattr(self, n)]
            if missing:
                raise ValueError(
                    f"security_protocol {protocol} needs {' and '.join(missing)} (env "
                    "WATCHKEEPER_KAFKA_SASL_USERNAME, and WATCHKEEPER_KAFKA_SASL_PASSWORD or "
                    "WATCHKEEPER_KAFKA_SASL_PASSWORD_FILE)"
                )
        elif self.sasl_username or self.sasl_password:
            raise ValueError(
                f"SASL credentials are set but security_protocol {protocol} never sends "
                "them: use SASL_SSL (or SASL_PLAINTEXT)"
            )
        tls = {
            "ssl_cafile": self.ssl_cafile,
            "ssl_certfile": self.ssl_certfile,
            "ssl_keyfile": self.ssl_keyfile,
            "ssl_key_password": self.ssl_key_password,
        }
        if not self.uses_ssl and any(v is not None for v in tls.values()):
            given = ", ".join(n for n, v in tls.items() if v is not None)
            raise ValueError(
                f"{given} set but security_protocol {protocol} does not use TLS: "
                "use SSL or SASL_SSL"
            )
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            path = getattr(self, name)
            if path is not None and not path.is_file():
                raise ValueError(f"{name}: {path} is not a file")
        if self.ssl_certfile is None and (self.ssl_keyfile or self.ssl_key_password):
            raise ValueError("ssl_keyfile and ssl_key_password need ssl_certfile")
        return self


class Settings(BaseSettings):
    """Worker settings. Every field can be set as WATCHKEEPER_<NAME> in the environment."""

    # errors name the setting, never its value: redis_url may hold a password
    model_config = SettingsConfigDict(
        env_prefix="WATCHKEEPER_", extra="forbid", hide_input_in_errors=True
    )

    broker: str = "kafka://127.0.0.1:9092"
    kafka: KafkaSecurity = Field(default_factory=KafkaSecurity)
    redis_url: str = Field(
        "redis://127.0.0.1:6379/0",
        description="redis://, or rediss:// for TLS; keep the password out of it (argv)",
    )
    redis_username: str | None = Field(None, description="ACL user (default: 'default')")
    redis_password: SecretStr | None = None
    redis_password_file: Path | None = Field(
        None, description="read the Redis password from this file (a mounted secret)"
    )
    redis_ca_file: Path | None = Field(
        None, description="CA bundle that signed the rediss:// server's certificate"
    )
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
    max_models: int = Field(
        10_000,
        ge=1,
        description="models each join partition keeps state for; predictions of models "
        "beyond it are dead-lettered (model_limit) and raise one fleet alert: producers "
        "choose model_id, and a flood of made-up ids must not grow memory and Redis without end",
    )
    model_retention_ms: int = Field(
        30 * DAY_MS,
        ge=1,
        description="a model unseen this long (event time) gives its place under max_models "
        "up; its Redis keys expire after as long (wall time)",
    )
    detector_config: Path | None = None
    reorder_lag_ms: int = Field(
        300_000, ge=0, description="event-time lag before outcomes reach the detectors"
    )
    idle_flush_s: float = Field(
        5.0, gt=0, description="release held outcomes of a partition quiet this long (wall)"
    )
    stream_silent_s: float = Field(
        900.0,
        ge=0,
        description="fleet model_silent alert when no prediction reaches the topic for this "
        "long (wall clock, live only; 0: off)",
    )
    maintenance_check_s: float = Field(
        3600.0,
        ge=0,
        description="look for overdue ownership hygiene (owners not confirmed within "
        "confirm_every, versions older than retrain_every) this often and raise "
        "maintenance_overdue (wall clock, live only; 0: off)",
    )
    label_free: bool = Field(
        True,
        description="send served predictions to the label-free signals (prediction_drift, "
        "labels_missing, model_silent, input_quality, estimated_degradation)",
    )
    batch_max: int = Field(
        4096, ge=1, description="Kafka messages per batch at most (a message may hold many events)"
    )
    batch_max_bytes: int = Field(
        4 * 1024 * 1024, ge=1, description="message bytes per batch at most"
    )
    checkpoint_interval_s: float = Field(
        3.0,
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
    metrics_port: int = Field(
        0,
        description="serve Prometheus metrics at http://<host>:<port>/metrics, on all "
        "interfaces (worker and notifier; 0: off)",
    )

    @field_validator("metrics_port")
    @classmethod
    def _metrics_port_range(cls, value: int) -> int:
        if not 0 <= value <= 65535:
            raise ValueError(f"must be a TCP port 1..65535, or 0 to serve no metrics (got {value})")
        return value

    @field_validator("broker")
    @classmethod
    def _broker_scheme(cls, value: str) -> str:
        """``kafka://host:port`` or ``host:port``, several separated by ``;`` or ``,``;
        kept as ``kafka://a:1;kafka://b:2`` (what Faust takes)."""
        parts = [part.strip() for part in re.split(r"[;,]", value) if part.strip()]
        if not parts:
            raise ValueError("broker is empty: give host:port or kafka://host:port")
        out = []
        for part in parts:
            if "://" in part:
                scheme, _, part = part.partition("://")
                if scheme != "kafka":
                    raise ValueError(
                        f"broker: the scheme must be kafka:// or none, got {scheme}://"
                    )
            host, sep, port = part.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"broker {part!r} must be host:port, e.g. localhost:9092")
            out.append(f"kafka://{part}")
        return ";".join(out)

    @model_validator(mode="after")
    def _redis_credentials(self) -> Settings:
        """One place for each credential, and TLS options only where TLS is used."""
        self.redis_password = _one_secret(
            self.redis_password, self.redis_password_file, "redis_password"
        )
        self.redis_password_file = None
        try:
            url = urlsplit(self.redis_url)
            in_url = (url.username or None, url.password)
        except ValueError as exc:
            raise ValueError(f"redis_url is not a URL: {exc}") from None
        if self.redis_password is not None and in_url[1] is not None:
            raise ValueError("the Redis password is both in redis_url and redis_password: give one")
        if self.redis_username is not None and in_url[0] is not None:
            raise ValueError("the Redis user is both in redis_url and redis_username: give one")
        if self.redis_username is not None and self.redis_password is None and not in_url[1]:
            raise ValueError("redis_username needs redis_password (or redis_password_file)")
        if self.redis_ca_file is not None:
            if url.scheme != "rediss":
                raise ValueError(
                    f"redis_ca_file is set but redis_url is {url.scheme}://, which does not "
                    "use TLS: use rediss://"
                )
            if not self.redis_ca_file.is_file():
                raise ValueError(f"redis_ca_file: {self.redis_ca_file} is not a file")
        return self

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
