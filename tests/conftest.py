"""Session fixtures that START a real Kafka-protocol broker (tansu) and a real Redis.

Nothing here is mocked: integration tests talk TCP on loopback to the processes started
below, which are stopped by pid at the end of the session. A test that cannot reach its
broker fails; it never skips.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import os
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any, TypeVar

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from receivers import HttpReceiver, SmtpReceiver
from redis.asyncio import Redis

from streams.dev.embedded import EmbeddedBroker, EmbeddedRedis


@pytest.fixture(scope="session")
def embedded_broker() -> Iterator[EmbeddedBroker]:
    broker = EmbeddedBroker().start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(embedded_broker: EmbeddedBroker) -> str:
    return embedded_broker.bootstrap


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    server = EmbeddedRedis().start()
    try:
        yield server.url
    finally:
        server.stop()


T = TypeVar("T")
_counter = itertools.count()


def unique_name(prefix: str) -> str:
    return f"{prefix}-{os.getpid()}-{next(_counter)}-{uuid.uuid4().hex[:6]}"


async def create_topics(bootstrap: str, names: list[str], partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1) for name in names])
    finally:
        await admin.close()


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion, also from inside an async test (own thread, own loop)."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


@pytest.fixture
def prefix() -> str:
    """A Redis key prefix of this test's own."""
    return f"t{uuid.uuid4().hex[:8]}:"


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    """An asyncio client of the session's Redis server."""
    client = Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def make_topic(kafka_bootstrap: str) -> Callable[..., str]:
    """Factory: create a unique topic on the session broker and return its name."""

    def _make(prefix: str, partitions: int = 2) -> str:
        name = unique_name(prefix)
        run_sync(create_topics(kafka_bootstrap, [name], partitions))
        return name

    return _make


@pytest.fixture
async def http() -> AsyncIterator[HttpReceiver]:
    """A recording HTTP receiver on loopback (webhooks, Slack, PagerDuty)."""
    receiver = await HttpReceiver().start()
    yield receiver
    await receiver.stop()


@pytest.fixture
def smtp() -> Iterator[SmtpReceiver]:
    """A recording SMTP server (aiosmtpd) on loopback."""
    receiver = SmtpReceiver().start()
    yield receiver
    receiver.stop()
