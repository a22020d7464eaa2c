"""Prometheus metrics of the worker and the notifier (names fixed by the metrics contract).

The metrics live in a dedicated ``CollectorRegistry``, not prometheus_client's global one,
so tests and the bench that import the worker in-process never collide with each other or
with anything else registering on the default registry. Callers increment counters once per
batch with aggregated counts: a metric update per event would show on the hot path.
"""

from __future__ import annotations

import errno
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import metadata
from typing import Literal
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    start_http_server,
)

from streams.errors import ConfigError

__all__ = [
    "ALERTS",
    "BATCH_DURATION",
    "BUILD_INFO",
    "CONSUMER_LAG",
    "DEAD_LETTERS",
    "EVENTS",
    "METRIC_NAMES",
    "MODEL_ERROR_RATE",
    "MODEL_LABEL_COVERAGE",
    "MODEL_LAST_EVENT",
    "NOTIFIER_ALERTS",
    "OUTCOMES",
    "PAGES",
    "REDIS_UP",
    "REGISTRY",
    "MetricsServer",
    "Role",
    "forget_model",
    "start_metrics_server",
]

Role = Literal["worker", "notifier"]

REGISTRY = CollectorRegistry(auto_describe=True)

# --- both processes -------------------------------------------------------------------
BUILD_INFO = Gauge(
    "watchkeeper_build_info",
    "Always 1; the labels say which version and role this process runs.",
    ["version", "role"],
    registry=REGISTRY,
)
REDIS_UP = Gauge(
    "watchkeeper_redis_up",
    "1 when the last Redis operation succeeded, 0 while the Redis circuit breaker is open.",
    registry=REGISTRY,
)

# --- worker ---------------------------------------------------------------------------
EVENTS = Counter(
    "watchkeeper_events",
    "Valid events read, by kind (prediction | label).",
    ["kind"],
    registry=REGISTRY,
)
OUTCOMES = Counter(
    "watchkeeper_outcomes",
    "Joined prediction/label pairs handed to the detectors.",
    registry=REGISTRY,
)
DEAD_LETTERS = Counter(
    "watchkeeper_dead_letters",
    "Records sent to the dead-letter topic, by reason.",
    ["reason"],
    registry=REGISTRY,
)
ALERTS = Counter(
    "watchkeeper_alerts",
    "Alerts published to the alerts topic, by kind and severity.",
    ["kind", "severity"],
    registry=REGISTRY,
)
CONSUMER_LAG = Gauge(
    "watchkeeper_consumer_lag_messages",
    "High watermark minus consumer position, per assigned input partition.",
    ["topic", "partition"],
    registry=REGISTRY,
)
BATCH_DURATION = Histogram(
    "watchkeeper_batch_duration_seconds",
    "Wall time to process one batch, by step (join | detect).",
    ["step"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=REGISTRY,
)
MODEL_ERROR_RATE = Gauge(
    "watchkeeper_model_error_rate",
    "Recent error rate of a model (share of recent outcomes that were wrong).",
    ["model_id"],
    registry=REGISTRY,
)
MODEL_LABEL_COVERAGE = Gauge(
    "watchkeeper_model_label_coverage_ratio",
    "Share of a model's predictions that received their label in time.",
    ["model_id"],
    registry=REGISTRY,
)
MODEL_LAST_EVENT = Gauge(
    "watchkeeper_model_last_event_timestamp_seconds",
    "Event time of a model's newest prediction, seconds since the epoch.",
    ["model_id"],
    registry=REGISTRY,
)

# --- notifier -------------------------------------------------------------------------
NOTIFIER_ALERTS = Counter(
    "watchkeeper_notifier_alerts",
    "Alerts read from the alerts topic by the notifier, by kind and severity.",
    ["kind", "severity"],
    registry=REGISTRY,
)
PAGES = Counter(
    "watchkeeper_pages",
    "Page deliveries by channel type and outcome (sent | failed | suppressed).",
    ["channel", "outcome"],
    registry=REGISTRY,
)

_PER_MODEL = (MODEL_ERROR_RATE, MODEL_LABEL_COVERAGE, MODEL_LAST_EVENT)

METRIC_NAMES: frozenset[str] = frozenset(
    {
        "watchkeeper_build_info",
        "watchkeeper_redis_up",
        "watchkeeper_events_total",
        "watchkeeper_outcomes_total",
        "watchkeeper_dead_letters_total",
        "watchkeeper_alerts_total",
        "watchkeeper_consumer_lag_messages",
        "watchkeeper_batch_duration_seconds",
        "watchkeeper_model_error_rate",
        "watchkeeper_model_label_coverage_ratio",
        "watchkeeper_model_last_event_timestamp_seconds",
        "watchkeeper_notifier_alerts_total",
        "watchkeeper_pages_total",
    }
)
"""Exposition base names of every metric: counters with their ``_total``, histograms bare.

``watchkeeper_open_incidents`` of the first contract is not among them: open incidents are
keys ``open:{model}[:{kind}]`` in Redis with nothing that counts them, and counting them
meant a SCAN of the whole keyspace by every notifier replica."""


def forget_model(model_ids: Iterable[str]) -> None:
    """Drop the per-model series of models the worker no longer holds (keeps them bounded)."""
    for model_id in model_ids:
        for gauge in _PER_MODEL:
            try:
                gauge.remove(model_id)
            except KeyError:
                pass


def _version() -> str:
    try:
        return metadata.version("watchkeeper")
    except metadata.PackageNotFoundError:
        return "unknown"


@dataclass(frozen=True, slots=True)
class MetricsServer:
    """The running ``/metrics`` HTTP server; ``stop`` it on shutdown to free the port."""

    port: int
    server: WSGIServer
    thread: threading.Thread

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def start_metrics_server(
    port: int,
    role: Role,
    host: str = "0.0.0.0",  # noqa: S104 - scraped from outside the container
) -> MetricsServer:
    """Serve the registry on ``host:port`` in a daemon thread and record ``build_info``.

    All interfaces by default, so a container's metrics port can be scraped. A port that is
    taken becomes a ConfigError (one line, exit 2 in the CLI), not an OSError traceback.
    The ``*_created`` series (a creation timestamp per counter child) are not served: they
    would double the series and no rule or dashboard reads them.
    """
    if not 0 < port <= 65535:
        raise ConfigError(f"metrics port must be between 1 and 65535 (got {port})")
    try:
        server, thread = start_http_server(port, addr=host, registry=REGISTRY)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"metrics port {port} is already in use; pick another --metrics-port "
                "(or 0 to disable metrics)"
            ) from None
        raise ConfigError(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}") from None
    disable_created_metrics()
    BUILD_INFO.labels(version=_version(), role=role).set(1)
    return MetricsServer(port=port, server=server, thread=thread)
