"""The /metrics endpoint of a real worker and a real notifier process, scraped over loopback
and checked against what they did: the scenario's events, the DLQ and alerts topics, the
Redis health snapshots and the pages a receiver got."""

from __future__ import annotations

import asyncio
import socket
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families
from receivers import HttpReceiver
from redis.asyncio import Redis
from test_pipeline import isolated_settings, read_topic, run_scenario, worker_for

from detectors.base import Change
from streams.contract.alerts import build_alert
from streams.contract.notification import parse_channel
from streams.dev.demo import MALFORMED
from streams.dev.embedded import EmbeddedBroker
from streams.dev.process import WorkerProcess
from streams.dev.simulate import build_scenario
from streams.replay.source import publish_alerts
from streams.store.health import HealthStore
from streams.store.owners import Owner, OwnerRegistry
from streams.store.paging import PagingStore
from streams.topology import ensure_topics, join_topic_names

pytestmark = [pytest.mark.integration, pytest.mark.slow]

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int) -> Samples:
    """Every sample of the endpoint, by name and labels; {} while it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return {}
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def by_label(samples: Samples, name: str, label: str) -> dict[str, float]:
    return {dict(k)[label]: v for (n, k), v in samples.items() if n == name}


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


async def scrape_until(
    port: int, ready: Callable[[Samples], bool], alive: Callable[[], bool], timeout: float
) -> Samples:
    """Scrape until ``ready`` holds, or the deadline (then the last scrape is returned and
    the test's assertions say what is off)."""
    deadline = time.monotonic() + timeout
    samples: Samples = {}
    while time.monotonic() < deadline and alive():
        samples = await asyncio.to_thread(scrape, port)
        if samples and ready(samples):
            break
        await asyncio.sleep(0.3)
    return samples


def test_worker_metrics_match_the_scenario_the_topics_and_redis(
    kafka_bootstrap: str, redis_url: str, tmp_path: Path
) -> None:
    settings = isolated_settings(kafka_bootstrap, redis_url, tmp_path)
    asyncio.run(ensure_topics(settings))
    scenario = build_scenario(models=4, predictions_per_model=1500, degraded=1, seed=5)
    port = free_port()
    worker = worker_for(settings, tmp_path)
    worker.env["WATCHKEEPER_METRICS_PORT"] = str(port)
    worker.start()
    t = settings.topics
    input_partitions = {
        (topic, str(p))
        for topic in [*join_topic_names(settings), t.outcomes]
        for p in range(settings.partitions)
    }

    def settled(s: Samples) -> bool:
        lag = by_label(s, "watchkeeper_consumer_lag_messages", "topic")
        return (
            value(s, "watchkeeper_events_total", kind="prediction") == scenario.predictions
            and value(s, "watchkeeper_outcomes_total") == scenario.labelled_predictions
            and len(lag) > 0
            and all(v == 0 for k, v in s.items() if k[0] == "watchkeeper_consumer_lag_messages")
        )

    async def run() -> tuple[Samples, dict[str, int], list[Any], list[Any], dict[str, Any]]:
        totals, _, _ = await run_scenario(
            settings, kafka_bootstrap, scenario, worker, dlq=len(MALFORMED)
        )
        samples = await scrape_until(port, settled, worker.alive, timeout=20)
        dlq = await read_topic(kafka_bootstrap, t.dlq, len(MALFORMED), timeout=10)
        published = int(sum(by_label(samples, "watchkeeper_alerts_total", "kind").values()))
        alerts = await read_topic(kafka_bootstrap, t.alerts, published, timeout=10)
        redis = Redis.from_url(redis_url)
        try:
            health = HealthStore(redis, settings.redis_prefix)
            snapshots = {m.model_id: await health.health(m.model_id) for m in scenario.models}

            def gauges_current(s: Samples) -> bool:
                rates = by_label(s, "watchkeeper_model_error_rate", "model_id")
                return all(
                    rates.get(m) == float(h.get("recent_error_rate", "nan"))
                    for m, h in snapshots.items()
                )

            # the per-model gauges are set every few seconds from the newest snapshots
            samples = await scrape_until(port, gauges_current, worker.alive, timeout=10)
        finally:
            await redis.aclose()
        return samples, totals, dlq, alerts, snapshots

    try:
        samples, totals, dlq, alerts, snapshots = asyncio.run(run())
    finally:
        code = worker.stop()
    assert code == 0, worker.log_tail()
    assert samples, "the metrics endpoint never answered\n" + worker.log_tail()

    assert value(samples, "watchkeeper_build_info", version=_version(), role="worker") == 1
    assert value(samples, "watchkeeper_redis_up") == 1
    assert value(samples, "watchkeeper_events_total", kind="prediction") == scenario.predictions
    assert value(samples, "watchkeeper_events_total", kind="label") == totals["labels"] > 0
    assert value(samples, "watchkeeper_outcomes_total") == scenario.labelled_predictions
    reasons = Counter(orjson.loads(r.value)["reason"] for r in dlq)
    assert len(dlq) == len(MALFORMED)
    assert by_label(samples, "watchkeeper_dead_letters_total", "reason") == reasons

    on_topic = Counter((a["kind"], a["severity"]) for a in (orjson.loads(r.value) for r in alerts))
    assert any(kind == "performance_degradation" for kind, _ in on_topic), on_topic
    counted = {
        (dict(k)["kind"], dict(k)["severity"]): v
        for (n, k), v in samples.items()
        if n == "watchkeeper_alerts_total"
    }
    assert counted == on_topic

    models = {m.model_id for m in scenario.models}
    rates = by_label(samples, "watchkeeper_model_error_rate", "model_id")
    assert set(rates) == models
    for model_id, snapshot in snapshots.items():
        assert rates[model_id] == float(snapshot["recent_error_rate"]), model_id
    coverage = by_label(samples, "watchkeeper_model_label_coverage_ratio", "model_id")
    assert set(coverage) <= models and all(0 <= v <= 1 for v in coverage.values())
    last = by_label(samples, "watchkeeper_model_last_event_timestamp_seconds", "model_id")
    assert set(last) == models
    assert all(scenario.start_ms / 1000 <= v <= scenario.end_ms / 1000 for v in last.values())

    lag = {
        (dict(k)["topic"], dict(k)["partition"]): v
        for (n, k), v in samples.items()
        if n == "watchkeeper_consumer_lag_messages"
    }
    assert set(lag) == input_partitions
    assert set(lag.values()) == {0}
    for step in ("join", "detect"):
        assert (value(samples, "watchkeeper_batch_duration_seconds_count", step=step) or 0) > 0


def test_notifier_metrics_match_what_it_read_sent_and_suppressed(
    embedded_broker: EmbeddedBroker,
    redis_url: str,
    make_topic: Callable[..., str],
    tmp_path: Path,
) -> None:
    """Three owners: one whose webhook takes pages, one whose webhook refuses them (400,
    one attempt: dead-lettered), one silenced."""
    alerts_topic, dlq_topic = make_topic("alerts", 2), make_topic("notify-dlq", 1)
    prefix = f"t{uuid.uuid4().hex[:8]}:"
    port = free_port()
    alerts = [_alert(m, i) for m in ("ok", "refused", "quiet") for i in range(3)]
    read = Counter((a["kind"], a["severity"]) for a in alerts)

    async def run() -> tuple[Samples, HttpReceiver, dict[str, int]]:
        http = await HttpReceiver().start()
        for _ in alerts:
            http.answer("/refused", 400)
        redis = Redis.from_url(redis_url)
        store = PagingStore(redis, prefix, clock=time.time)
        registry = OwnerRegistry(redis, prefix)
        for model, path in (("ok", "/ok"), ("refused", "/refused"), ("quiet", "/ok")):
            channel = parse_channel(f"webhook:{http.url}{path}")
            await registry.set(
                Owner(
                    model_id=model,
                    owner="team",
                    channels=(channel,),
                    runbook="https://runbooks.example.com/x",
                    updated_at_ms=int(time.time() * 1000),
                )
            )
        await store.silence("quiet", for_s=3600, reason="test", by="test")
        notifier = WorkerProcess(
            embedded_broker.url,
            redis_url,
            tmp_path / "notifier.log",
            env={
                "WATCHKEEPER_TOPIC_ALERTS": alerts_topic,
                "WATCHKEEPER_TOPIC_DLQ": dlq_topic,
                "WATCHKEEPER_REDIS_PREFIX": prefix,
                "WATCHKEEPER_NOTIFY_GROUP_ID": f"notify-{prefix}",
                "WATCHKEEPER_NOTIFY_GROUP_WAIT_S": "0.05",
                "WATCHKEEPER_NOTIFY_COOLDOWN_S": "0",
                "WATCHKEEPER_NOTIFY_MAX_ATTEMPTS": "1",
                "WATCHKEEPER_NOTIFY_ALLOW_PRIVATE_TARGETS": '["127.0.0.1"]',
                "WATCHKEEPER_NOTIFY_MAX_PAGES_PER_CHANNEL_PER_MIN": "0",
            },
            args=["--metrics-port", str(port)],
            command="notify",
        ).start()
        try:
            await publish_alerts(embedded_broker.bootstrap, alerts_topic, alerts)
            deadline = time.monotonic() + 30
            while True:  # the notifier's own counters in Redis: every alert decided
                stats = await store.stats()
                done = stats.get("delivered", 0) + stats.get("dlq", 0)
                if done >= 6 and stats.get("suppressed_silenced", 0) >= 3:
                    break
                assert time.monotonic() < deadline and notifier.alive(), (
                    f"{stats}\n{notifier.log_tail()}"
                )
                await asyncio.sleep(0.1)
            samples = await scrape_until(
                port, lambda s: value(s, "watchkeeper_redis_up") == 1, notifier.alive, 10
            )
        finally:
            await asyncio.to_thread(notifier.stop)
            await http.stop()
            await redis.aclose()
        return samples, http, stats

    samples, http, stats = asyncio.run(run())
    assert samples, "the notifier's metrics endpoint never answered"
    assert value(samples, "watchkeeper_build_info", version=_version(), role="notifier") == 1
    assert value(samples, "watchkeeper_redis_up") == 1
    counted = {
        (dict(k)["kind"], dict(k)["severity"]): v
        for (n, k), v in samples.items()
        if n == "watchkeeper_notifier_alerts_total"
    }
    assert counted == read
    sent = value(samples, "watchkeeper_pages_total", channel="webhook", outcome="sent")
    failed = value(samples, "watchkeeper_pages_total", channel="webhook", outcome="failed")
    suppressed = value(samples, "watchkeeper_pages_total", channel="webhook", outcome="suppressed")
    assert sent == len(http.at("/ok")) > 0
    assert failed == len(http.at("/refused")) > 0
    assert suppressed == stats["suppressed_silenced"] == 3


def _alert(model_id: str, i: int) -> dict[str, Any]:
    change = Change(
        detector="adwin",
        direction="increase",
        index=1000 + i,
        event_time_ms=1_763_700_000_000 + i * 60_000,
        mean_before=0.05,
        n_before=500,
        mean_after=0.3 if i else 0.09,  # severities differ
        n_after=200,
    )
    return build_alert(
        change,
        model_id=model_id,
        model_version="1",
        detected_at=datetime.now(tz=UTC),
        config_fingerprint="cfg",
    )


def _version() -> str:
    from importlib.metadata import version

    return version("watchkeeper")
