"""Flood control with real Redis, real receivers and real notifier processes: thousands of
distinct orphaned models make one fallback page per window, a channel gets at most its
rate and one summary of the rest, and every alert is accounted for exactly."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from receivers import HttpReceiver
from redis.asyncio import Redis

from detectors.base import Change
from streams.contract.alerts import build_alert, build_orphan_alert
from streams.contract.notification import parse_channel
from streams.dev.embedded import EmbeddedBroker
from streams.dev.process import WorkerProcess
from streams.notify.channels import ChannelSender
from streams.notify.loop import HELD_SUMMARY_KIND, ORPHAN_SUMMARY_KIND, Notifier
from streams.replay.source import publish_alerts
from streams.settings import NotifySettings, Settings
from streams.store.owners import Owner, OwnerRegistry
from streams.store.paging import PagingStore

pytestmark = pytest.mark.integration

SECRET = "flood-secret"
WINDOW_S = 300.0
LISTED = 10


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def orphan(model: str) -> dict[str, Any]:
    return build_orphan_alert(model, detected_at=datetime.now(tz=UTC), cooldown_s=86_400)


def degradation(model: str, index: int = 1) -> dict[str, Any]:
    change = Change(
        detector="adwin", direction="increase", index=index,
        event_time_ms=1_763_700_000_000 + index, mean_before=0.05, n_before=800,
        mean_after=0.4, n_after=200,
    )  # fmt: skip
    return build_alert(
        change,
        model_id=model,
        model_version="1",
        detected_at=datetime.now(tz=UTC),
        config_fingerprint="cfg",
    )


class Flood:
    """Notifier replicas on one Redis, one clock and one signed receiver."""

    def __init__(self, settings: Settings, redis: Redis, dlq: str, bootstrap: str) -> None:
        self.settings = settings
        self.redis = redis
        self.dlq = dlq
        self.bootstrap = bootstrap
        self.clock = Clock(time.time())
        self.store = PagingStore(redis, settings.redis_prefix, clock=self.clock)
        self.sender: ChannelSender | None = None
        self.producer: AIOKafkaProducer | None = None

    async def start(self) -> Flood:
        self.producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap)
        await self.producer.start()
        self.sender = await ChannelSender(self.settings.notify).__aenter__()
        return self

    def replica(self) -> Notifier:
        assert self.sender is not None and self.producer is not None
        producer = self.producer

        async def to_dlq(key: bytes, value: bytes) -> None:
            await producer.send_and_wait(self.dlq, value=value, key=key)

        async def no_wait(_seconds: float) -> None:
            return None

        return Notifier(
            self.settings,
            redis=self.redis,
            sender=self.sender,
            dead_letter=to_dlq,
            clock=self.clock,
            sleep=no_wait,
        )

    async def stop(self) -> None:
        if self.sender is not None:
            await self.sender.__aexit__(None, None, None)
        if self.producer is not None:
            await self.producer.stop()


@pytest.fixture
async def signed_http() -> AsyncIterator[HttpReceiver]:
    receiver = await HttpReceiver(secret=SECRET).start()
    yield receiver
    await receiver.stop()


@pytest.fixture
async def flood(
    redis_url: str, kafka_bootstrap: str, make_topic: Callable[..., str], signed_http: HttpReceiver
) -> AsyncIterator[Flood]:
    settings = Settings(
        redis_url=redis_url,
        redis_prefix=f"t{uuid.uuid4().hex[:8]}:",
        notify=NotifySettings(
            group_wait_s=10,
            cooldown_s=0,
            max_attempts=2,
            backoff_base_s=0.001,
            request_timeout_s=5,
            webhook_secret=SECRET,
            fallback_channels=[f"webhook:{signed_http.url}/fallback"],
            allow_private_targets=["127.0.0.1"],
            orphan_summary_s=WINDOW_S,
            orphan_summary_models=LISTED,
            max_pages_per_channel_per_min=30,
        ),
    )
    redis = Redis.from_url(redis_url)
    harness = await Flood(settings, redis, make_topic("dlq", 1), kafka_bootstrap).start()
    yield harness
    await harness.stop()
    await redis.aclose()


async def route(notifier: Notifier, clock: Clock, alerts: list[dict[str, Any]]) -> None:
    for a in alerts:
        notifier.offer(a)
    clock.t += notifier.cfg.group_wait_s + 0.001
    await notifier.tick()


def summaries(http: HttpReceiver, path: str, kind: str) -> list[dict[str, Any]]:
    pages = [r.json() for r in http.at(path)]
    assert all(p["kind"] == kind for p in pages), [p["kind"] for p in pages]
    return pages


async def test_thousands_of_orphans_make_one_fallback_page_per_window(
    flood: Flood, signed_http: HttpReceiver
) -> None:
    first = [orphan(f"orphan-{i:05d}") for i in range(3_000)]
    second = [orphan(f"orphan-{i:05d}") for i in range(3_000, 5_000)]
    a, b = flood.replica(), flood.replica()
    flood.clock.t = flood.clock.t // WINDOW_S * WINDOW_S + 1  # a window has just begun
    began = time.monotonic()
    await route(a, flood.clock, first[:1_500])
    await route(b, flood.clock, first[1_500:])
    await route(a, flood.clock, first[:500])  # read again after a restart: counted once
    assert signed_http.requests == [], "the window is still open: nothing paged yet"

    flood.clock.t += WINDOW_S  # the next window
    await route(b, flood.clock, second)
    flood.clock.t += WINDOW_S
    await asyncio.gather(a.tick(), b.tick())  # both replicas see both windows end
    await asyncio.gather(a.tick(), b.tick())
    took = time.monotonic() - began

    pages = summaries(signed_http, "/fallback", ORPHAN_SUMMARY_KIND)
    assert len(pages) == 2, "one page per window that had orphans"
    assert all(r.verified for r in signed_http.requests)
    found = [p["notification_details"]["orphans"] for p in pages]
    assert [f["total"] for f in found] == [3_000, 2_000]
    windows = ({x["model_id"] for x in first}, {x["model_id"] for x in second})
    for f, models in zip(found, windows, strict=True):
        assert len(f["models"]) == LISTED == len(set(f["models"]))
        assert set(f["models"]) <= models
        assert f["more"] == f["total"] - LISTED
    assert "and 2990 more" in pages[0]["notification_details"]["summary"]
    stats = await flood.store.stats()
    assert stats["suppressed_orphan_summary"] == 5_000
    assert stats["duplicate"] == 500
    assert stats["orphan_summaries"] == 2
    assert stats["delivered"] == 2  # the two summaries, nothing else
    print(f"\n5,000 orphaned models routed and summarised in {took:.1f}s")


async def test_a_channel_gets_at_most_its_rate_and_one_summary_of_the_rest(
    flood: Flood, signed_http: HttpReceiver
) -> None:
    channel = parse_channel(f"webhook:{signed_http.url}/team")
    registry = OwnerRegistry(flood.redis, flood.settings.redis_prefix)
    models = [f"model-{i:03d}" for i in range(200)]
    await registry.import_many(
        Owner(
            model_id=m,
            owner="team",
            channels=(channel,),
            runbook="https://runbooks.example.com/x",
            updated_at_ms=1_700_000_000_000,
        )
        for m in models
    )
    alerts = [degradation(m) for m in models]
    a, b = flood.replica(), flood.replica()
    flood.clock.t = flood.clock.t // 60 * 60 + 1  # a minute has just begun
    for replica, part in ((a, alerts[:100]), (b, alerts[100:])):
        for alert in part:
            replica.offer(alert)
    flood.clock.t += 10.001
    await asyncio.gather(a.tick(), b.tick())  # two replicas share one rate

    sent = [r.json() for r in signed_http.at("/team")]
    assert len(sent) == 30
    stats = await flood.store.stats()
    assert (stats["delivered"], stats["held_pages"], stats["suppressed_rate_limited"]) == (
        30,
        170,
        170,
    )
    states = [await flood.store.delivery_state(x["alert_id"], channel.key) for x in alerts]
    outcomes = sorted(str(s).split("|")[0] for s in states)
    assert outcomes.count("sent") == 30 and outcomes.count("held") == 170
    assert {p["alert_id"] for p in sent} == {
        x["alert_id"] for x, s in zip(alerts, states, strict=True) if str(s).startswith("sent")
    }

    flood.clock.t += 60  # the minute is over: one summary, to the channel itself
    await asyncio.gather(a.tick(), b.tick())
    await a.tick()
    (summary,) = [r.json() for r in signed_http.at("/team")][30:]
    assert summary["kind"] == HELD_SUMMARY_KIND
    held = summary["notification_details"]["held_back"]
    assert (held["pages"], held["alerts"], held["severities"]) == (170, 170, {"critical": 170})
    assert len(held["models"]) == 20 and set(held["models"]) <= set(models)
    assert summary["severity"] == "critical"
    assert (await flood.store.stats())["held_summaries"] == 1

    # a new minute, a new allowance
    later = [degradation(m, index=2) for m in models[:5]]
    await route(a, flood.clock, later)
    assert len(signed_http.at("/team")) == 31 + 5


async def test_notifier_processes_page_once_per_window_for_thousands_of_orphans(
    embedded_broker: EmbeddedBroker,
    redis_url: str,
    make_topic: Callable[..., str],
    tmp_path: Path,
    signed_http: HttpReceiver,
) -> None:
    """Two real notifier processes, 2,000 orphaned models on the alerts topic in four
    waves, a 2 s orphan window: the fallback gets one page per window with orphans, the
    totals add up to 2,000 exactly, and nothing else is paged."""
    window_s, count = 2.0, 2_000
    alerts_topic, dlq_topic = make_topic("alerts", 2), make_topic("notify-dlq", 1)
    prefix = f"t{uuid.uuid4().hex[:8]}:"
    env = {
        "WATCHKEEPER_TOPIC_ALERTS": alerts_topic,
        "WATCHKEEPER_TOPIC_DLQ": dlq_topic,
        "WATCHKEEPER_REDIS_PREFIX": prefix,
        "WATCHKEEPER_NOTIFY_GROUP_ID": f"flood-{uuid.uuid4().hex[:6]}",
        "WATCHKEEPER_NOTIFY_GROUP_WAIT_S": "0.05",
        "WATCHKEEPER_NOTIFY_ORPHAN_SUMMARY_S": str(window_s),
        "WATCHKEEPER_NOTIFY_FALLBACK_CHANNELS": orjson.dumps(
            [f"webhook:{signed_http.url}/fallback"]
        ).decode(),
        "WATCHKEEPER_NOTIFY_ALLOW_PRIVATE_TARGETS": '["127.0.0.1"]',
        "WATCHKEEPER_NOTIFY_WEBHOOK_SECRET": SECRET,
        "WATCHKEEPER_LOG_LEVEL": "warn",
    }
    notifiers = [
        WorkerProcess(
            embedded_broker.url, redis_url, tmp_path / f"n{i}.log", env=env, command="notify"
        ).start()
        for i in range(2)
    ]
    redis = Redis.from_url(redis_url)
    store = PagingStore(redis, prefix, clock=time.time)
    models = [f"stray-{i:05d}" for i in range(count)]
    try:
        began = time.monotonic()
        for wave in range(4):  # in waves, so that the orphans span several windows
            if wave:
                await asyncio.sleep(window_s * 1.25)
            part = models[wave * count // 4 : (wave + 1) * count // 4]
            await publish_alerts(embedded_broker.bootstrap, alerts_topic, [orphan(m) for m in part])
        deadline = time.monotonic() + 120
        while True:
            pages = [r.json() for r in signed_http.at("/fallback")]
            paged = sum(p["notification_details"]["orphans"]["total"] for p in pages)
            if paged >= count:
                break
            assert time.monotonic() < deadline, (
                f"{paged} of {count} summarised; {await store.stats()}\n"
                + "\n".join(n.log_tail() for n in notifiers)
            )
            assert all(n.alive() for n in notifiers), [n.log_tail() for n in notifiers]
            await asyncio.sleep(0.1)
        elapsed = time.monotonic() - began
        await asyncio.sleep(2 * window_s)  # a late duplicate page would show up by now
        stats = await store.stats()
    finally:
        await asyncio.gather(*(asyncio.to_thread(n.stop) for n in notifiers))
        await redis.aclose()
    pages = summaries(signed_http, "/fallback", ORPHAN_SUMMARY_KIND)
    starts = [p["window_start"] for p in pages]
    assert len(starts) == len(set(starts)), "two pages for one window"
    assert 2 <= len(pages) <= elapsed / window_s + 2, "one page per window with orphans"
    assert sum(p["notification_details"]["orphans"]["total"] for p in pages) == count
    listed = [m for p in pages for m in p["notification_details"]["orphans"]["models"]]
    assert len(listed) == len(set(listed)) and set(listed) <= set(models)
    assert all(r.verified for r in signed_http.requests)
    assert stats["suppressed_orphan_summary"] == count
    assert stats["orphan_summaries"] == len(pages)
    assert "dlq" not in stats
    print(f"\n{count} orphans, {len(pages)} fallback pages, {elapsed:.1f}s to the last one")
