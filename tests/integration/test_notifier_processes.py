"""Paging with real notifier processes: one killed (SIGKILL) mid-stream and restarted, a
second replica consuming the same alerts, and duplicates on the topic. Every alert reaches
the receiver; the pages the killed process had in flight are sent again with the same
delivery id (the receiver can deduplicate them), and nothing else twice."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from receivers import HttpReceiver
from redis.asyncio import Redis

from detectors.base import Change
from streams.contract.alerts import build_alert
from streams.contract.notification import parse_channel
from streams.dev.embedded import EmbeddedBroker
from streams.dev.process import WorkerProcess
from streams.replay.source import publish_alerts
from streams.store.owners import Owner, OwnerRegistry
from streams.store.paging import PagingStore

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MODELS = 24
PER_MODEL = 3


def make_alerts() -> list[dict[str, Any]]:
    alerts = []
    for m in range(MODELS):
        for i in range(PER_MODEL):
            change = Change(
                detector="adwin" if i % 2 else "page_hinkley",
                direction="increase",
                index=1000 + i * 100,
                event_time_ms=1_763_700_000_000 + i * 60_000,
                mean_before=0.05,
                n_before=500,
                mean_after=0.2,
                n_after=200,
            )
            alerts.append(
                build_alert(
                    change,
                    model_id=f"model-{m:02d}",
                    model_version="1",
                    detected_at=datetime.now(tz=UTC),
                    config_fingerprint="cfg",
                )
            )
    return alerts


class DeadLetters:
    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest"
        )
        self.records: list[dict[str, Any]] = []

    async def poll(self) -> None:
        batch = await self.consumer.getmany(timeout_ms=100)
        self.records += [orjson.loads(m.value) for ms in batch.values() for m in ms]


def delivered_ids(http: HttpReceiver, *, resent: bool | None = None) -> list[str]:
    """Alert ids in the pages received (only re-sent ones, or only first sends)."""
    ids = []
    for r in http.at("/hook"):
        if resent is not None and ("X-Watchkeeper-Possible-Duplicate" in r.headers) != resent:
            continue
        body = r.json()
        ids += [body["alert_id"], *(g["alert_id"] for g in body["grouped_alerts"])]
    return ids


def pages_by_delivery_id(http: HttpReceiver) -> dict[str, set[str]]:
    """What a receiver deduplicating on X-Watchkeeper-Delivery keeps: id -> alert ids."""
    pages: dict[str, set[str]] = {}
    for r in http.at("/hook"):
        body = r.json()
        ids = {body["alert_id"], *(g["alert_id"] for g in body["grouped_alerts"])}
        pages.setdefault(r.headers["X-Watchkeeper-Delivery"], set()).update(ids)
    return pages


@pytest.mark.separate  # a SIGKILL and a second replica: with the kill soaks, in .ci/run's step
async def test_each_alert_is_paged_through_a_kill_a_second_replica_and_duplicates(
    embedded_broker: EmbeddedBroker,
    redis_url: str,
    make_topic: Callable[..., str],
    tmp_path: Path,
) -> None:
    http = await HttpReceiver(delay_s=0.2).start()
    alerts_topic, dlq_topic = make_topic("alerts", 2), make_topic("notify-dlq", 1)
    prefix = f"t{uuid.uuid4().hex[:8]}:"
    redis = Redis.from_url(redis_url)
    registry = OwnerRegistry(redis, prefix)
    store = PagingStore(redis, prefix, clock=time.time)
    channel = parse_channel(f"webhook:{http.url}/hook")
    for m in range(MODELS):
        await registry.set(
            Owner(
                model_id=f"model-{m:02d}",
                owner="team",
                channels=(channel,),
                runbook="https://runbooks.example.com/x",
                updated_at_ms=int(time.time() * 1000),
            )
        )
    env = {
        "WATCHKEEPER_TOPIC_ALERTS": alerts_topic,
        "WATCHKEEPER_TOPIC_DLQ": dlq_topic,
        "WATCHKEEPER_REDIS_PREFIX": prefix,
        "WATCHKEEPER_NOTIFY_GROUP_WAIT_S": "0.05",
        "WATCHKEEPER_NOTIFY_COOLDOWN_S": "0",
        "WATCHKEEPER_NOTIFY_DELIVERY_LEASE_S": "3",
        "WATCHKEEPER_NOTIFY_REQUEST_TIMEOUT_S": "2",
        "WATCHKEEPER_NOTIFY_BACKOFF_BASE_S": "0.01",
        "WATCHKEEPER_NOTIFY_BACKOFF_MAX_S": "0.5",
        "WATCHKEEPER_LOG_LEVEL": "info",
        # the receivers are on loopback (the outbound policy refuses it unless allowed), and
        # this test counts every page: no rate limit
        "WATCHKEEPER_NOTIFY_ALLOW_PRIVATE_TARGETS": '["127.0.0.1"]',
        "WATCHKEEPER_NOTIFY_MAX_PAGES_PER_CHANNEL_PER_MIN": "0",
    }

    def notifier(name: str, group: str) -> WorkerProcess:
        return WorkerProcess(
            embedded_broker.url,
            redis_url,
            tmp_path / f"{name}.log",
            env={**env, "WATCHKEEPER_NOTIFY_GROUP_ID": group},
            command="notify",
        )

    alerts = make_alerts()
    half = len(alerts) // 2
    everything = {a["alert_id"] for a in alerts}
    dead = DeadLetters(embedded_broker.bootstrap, dlq_topic)
    await dead.consumer.start()
    first = notifier("a1", "group-a").start()
    second: WorkerProcess | None = None
    restarted: WorkerProcess | None = None
    try:
        await publish_alerts(embedded_broker.bootstrap, alerts_topic, alerts[:half] + alerts[:5])
        deadline = time.monotonic() + 60
        while len(http.requests) < 6:
            assert time.monotonic() < deadline and first.alive(), first.log_tail()
            await asyncio.sleep(0.02)
        await asyncio.to_thread(first.kill)  # SIGKILL, with deliveries in flight
        restarted = notifier("a2", "group-a").start()
        second = notifier("b", "group-b").start()  # a second replica that sees every alert
        await publish_alerts(embedded_broker.bootstrap, alerts_topic, alerts[half:] + alerts[:half])
        deadline = time.monotonic() + 90
        while True:  # until every (alert, channel) delivery has a final state in Redis
            states = {i: await store.delivery_state(i, channel.key) for i in everything}
            if all(v and not v.startswith("pending") for v in states.values()):
                break
            assert time.monotonic() < deadline, (
                f"{Counter(str(v).split('|')[0] for v in states.values())}\n"
                + restarted.log_tail()
                + second.log_tail()
            )
            await asyncio.sleep(0.1)
        await dead.poll()
    finally:  # in threads: the receiver lives on this event loop and must keep answering
        await asyncio.gather(
            *(asyncio.to_thread(p.stop) for p in (first, second, restarted) if p is not None)
        )
        await dead.consumer.stop()
        await http.stop()
    assert {i for i, v in states.items() if v.startswith("sent")} == everything
    assert dead.records == [], "nothing may be dead-lettered"
    for p in (first, second, restarted):  # at the default log level too
        assert p is not None and "watchkeeper notifier ready" in p.log_path.read_text()
    assert set(delivered_ids(http)) == everything, "every alert reaches its channel"
    # a receiver that deduplicates on X-Watchkeeper-Delivery sees each alert once
    pages = pages_by_delivery_id(http)
    in_pages = Counter(i for ids in pages.values() for i in ids)
    assert [i for i, n in in_pages.items() if n > 1] == [], "an alert in two different pages"
    # first sends page each alert once; what came again is marked, and was in flight
    first_sends = Counter(delivered_ids(http, resent=False))
    assert [i for i, n in first_sends.items() if n > 1] == [], "an alert paged twice unmarked"
    resent = set(delivered_ids(http, resent=True))
    stats = {k.decode(): int(v) for k, v in (await redis.hgetall(f"{prefix}notify:stats")).items()}
    assert stats.get("redelivered", 0) >= len(resent) > 0, "the kill left no page in doubt"
    assert len(resent) <= len(everything) // 2  # only what the killed process had in flight
    assert "dlq" not in stats
    assert stats["duplicate"] >= half  # everything of the first half arrived again
    print(
        f"\nalerts {len(everything)}, requests {len(http.at('/hook'))}, "
        f"pages {len(pages)}, alerts re-sent after the kill {len(resent)}"
    )
    await redis.aclose()
