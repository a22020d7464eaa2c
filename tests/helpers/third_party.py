"""A third-party Kafka client (confluent-kafka, librdkafka) against the session broker.

Serving systems in the wild do not use Watchkeeper's producer helper. These factories
produce and read the way such a system would:

- :func:`producer` uses librdkafka's DEFAULT partitioner (``consistent_random``: CRC32 of
  the key for keyed messages, a random partition for unkeyed ones). It is deliberately
  never set here: the point is that Watchkeeper must not depend on it.
- :func:`consumer` sets ``fetch.queue.backoff.ms`` to 100: its default of 1000 stalls
  backlog reads against tansu (DESIGN.md, "Clients and tools").

:func:`produce` sends a list of :class:`Message` (record timestamps set explicitly, so
timestamp rules are deterministic) and waits for every delivery; :func:`read_topic` reads
a whole topic, all partitions, to its end. :func:`aiokafka_produce` sends the same
messages through aiokafka's default producer (murmur2 for keyed messages).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

__all__ = [
    "FETCH_QUEUE_BACKOFF_MS",
    "MAX_PRODUCE_BYTES",
    "Message",
    "Record",
    "Segment",
    "aiokafka_produce",
    "committed_lag",
    "consumer",
    "create_topics",
    "end_offsets",
    "play",
    "produce",
    "producer",
    "read_topic",
]

FETCH_QUEUE_BACKOFF_MS = 100
MAX_PRODUCE_BYTES = 4 * 1024 * 1024
"""``message.max.bytes`` of the producer: large enough to send the > 1 MiB poison messages
the worker must dead-letter as ``oversized`` (librdkafka refuses them at 1,000,000)."""


@dataclass(frozen=True, slots=True)
class Message:
    """One record to produce. ``partition`` None lets the client's partitioner choose."""

    topic: str
    key: bytes | None
    value: bytes | None
    timestamp_ms: int
    partition: int | None = None


@dataclass(frozen=True, slots=True)
class Record:
    """One record read back."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int


def _quiet_logger() -> Any:
    """librdkafka logs a line when a broker connection closes (at session end): keep it out
    of the test output unless it is an error."""
    import logging

    log = logging.getLogger("tests.helpers.librdkafka")
    log.setLevel(logging.ERROR)
    return log


def producer(bootstrap: str, **overrides: Any) -> Producer:
    """A confluent-kafka producer for the session broker, librdkafka's default partitioner."""
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "message.max.bytes": MAX_PRODUCE_BYTES,
        "linger.ms": 5,
        "logger": _quiet_logger(),
        **overrides,
    }
    if "partitioner" in config:
        raise ValueError("the third-party producer keeps librdkafka's default partitioner")
    return Producer(config)


def consumer(bootstrap: str, **overrides: Any) -> Consumer:
    """A confluent-kafka consumer (no group membership is needed to read with ``assign``)."""
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "group.id": f"tests-reader-{time.monotonic_ns()}",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "fetch.queue.backoff.ms": FETCH_QUEUE_BACKOFF_MS,
        "logger": _quiet_logger(),
        **overrides,
    }
    return Consumer(config)


def create_topics(bootstrap: str, names: Sequence[str], partitions: int) -> None:
    """Create fresh topics (each must not exist yet) and wait until they do."""
    admin = AdminClient({"bootstrap.servers": bootstrap, "logger": _quiet_logger()})
    futures = admin.create_topics([NewTopic(n, partitions, 1) for n in names])
    for name, future in futures.items():
        try:
            future.result(timeout=30)
        except KafkaException as exc:
            raise AssertionError(f"could not create topic {name}: {exc}") from exc


def produce(client: Producer, messages: Iterable[Message], *, timeout: float = 60.0) -> int:
    """Send every message (in order), flush, and raise if any delivery failed.

    Returns how many were delivered. Messages of one partition keep their order (one
    producer, no retries on loopback)."""
    failures: list[str] = []
    delivered = 0

    def on_delivery(err: KafkaError | None, _msg: Any) -> None:
        nonlocal delivered
        if err is not None:
            failures.append(str(err))
        else:
            delivered += 1

    sent = 0
    for m in messages:
        kwargs: dict[str, Any] = {
            "value": m.value,
            "key": m.key,
            "timestamp": m.timestamp_ms,
            "on_delivery": on_delivery,
        }
        if m.partition is not None:
            kwargs["partition"] = m.partition
        while True:
            try:
                client.produce(m.topic, **kwargs)
                break
            except BufferError:  # local queue full: let deliveries drain
                client.poll(0.05)
        sent += 1
        if sent % 5000 == 0:
            client.poll(0)
    remaining = client.flush(timeout)
    if remaining:
        raise AssertionError(f"{remaining} of {sent} messages not delivered within {timeout}s")
    if failures:
        raise AssertionError(f"{len(failures)} of {sent} deliveries failed: {failures[:3]}")
    return delivered


async def _aiokafka_send(bootstrap: str, messages: Sequence[Message]) -> None:
    client = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all")
    await client.start()
    try:
        futures = [
            await client.send(
                m.topic, m.value, key=m.key, partition=m.partition, timestamp_ms=m.timestamp_ms
            )
            for m in messages
        ]
        await asyncio.gather(*futures)
    finally:
        await client.stop()


def aiokafka_produce(bootstrap: str, messages: Sequence[Message]) -> None:
    """Send through aiokafka's default producer (murmur2 of the key), in order, and wait."""
    if messages:
        asyncio.run(_aiokafka_send(bootstrap, messages))


def end_offsets(reader: Consumer, topic: str) -> dict[int, int]:
    meta = reader.list_topics(topic, timeout=10).topics[topic]
    if meta.error is not None:
        raise AssertionError(f"topic {topic}: {meta.error}")
    return {
        p: reader.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
        for p in sorted(meta.partitions)
    }


def read_topic(
    bootstrap: str, topic: str, *, timeout: float = 60.0, quiet_s: float = 0.5
) -> list[Record]:
    """Every record of ``topic``, all partitions, from the beginning to the end.

    The end is each partition's high watermark as reported when the read began, and then
    no new record for ``quiet_s`` (tansu may report an end offset a few records short of
    the real log end). Raises if the reported end is not reached within ``timeout``."""
    reader = consumer(bootstrap)
    records: list[Record] = []
    try:
        ends = end_offsets(reader, topic)
        reader.assign([TopicPartition(topic, p, 0) for p in ends])
        position = dict.fromkeys(ends, 0)
        deadline = time.monotonic() + timeout
        quiet_since: float | None = None
        while True:
            batch = reader.consume(10_000, 0.2)
            for msg in batch:
                if msg.error() is not None:
                    if msg.error().code() == KafkaError._PARTITION_EOF:
                        continue
                    raise AssertionError(f"reading {topic}: {msg.error()}")
                _, stamp = msg.timestamp()
                records.append(
                    Record(topic, msg.partition(), msg.offset(), msg.key(), msg.value(), stamp)
                )
                position[msg.partition()] = msg.offset() + 1
            reached = all(position[p] >= end for p, end in ends.items())
            now = time.monotonic()
            if reached:
                if batch:
                    quiet_since = now
                elif quiet_since is None:
                    quiet_since = now
                elif now - quiet_since >= quiet_s:
                    return records
            elif now > deadline:
                behind = {p: end - position[p] for p, end in ends.items() if position[p] < end}
                raise AssertionError(
                    f"read {len(records)} records of {topic} in {timeout:.0f}s; "
                    f"records still unread per partition: {behind}"
                )
    finally:
        reader.close()


def committed_lag(bootstrap: str, group: str, topics: Sequence[str]) -> dict[str, int]:
    """Records of ``topics`` not yet committed by consumer group ``group``, per
    ``topic[partition]`` (empty when the group committed up to every end; a topic that
    does not exist yet shows as ``topic[missing]``). Reads the group's offsets without
    joining it."""
    reader = consumer(bootstrap, **{"group.id": group})
    try:
        behind: dict[str, int] = {}
        for topic in topics:
            meta = reader.list_topics(topic, timeout=10).topics[topic]
            if meta.error is not None:  # not created yet (the worker creates its own)
                behind[f"{topic}[missing]"] = 0
                continue
            ends = end_offsets(reader, topic)
            tps = [TopicPartition(topic, p) for p in ends]
            for tp in reader.committed(tps, timeout=10):
                done = tp.offset if tp.offset >= 0 else 0
                if done < ends[tp.partition]:
                    behind[f"{topic}[{tp.partition}]"] = ends[tp.partition] - done
        return behind
    finally:
        reader.close()


@dataclass(frozen=True, slots=True)
class Segment:
    """Consecutive messages sent by one client: ``confluent`` (librdkafka's default
    partitioner) or ``aiokafka`` (its default producer, murmur2)."""

    client: str
    messages: list[Message]


async def _play(bootstrap: str, segments: Sequence[Segment]) -> int:
    confluent = producer(bootstrap)
    aio = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all")
    await aio.start()
    sent = 0
    try:
        for segment in segments:
            if segment.client == "confluent":
                sent += produce(confluent, segment.messages)
            elif segment.client == "aiokafka":
                futures = [
                    await aio.send(
                        m.topic,
                        m.value,
                        key=m.key,
                        partition=m.partition,
                        timestamp_ms=m.timestamp_ms,
                    )
                    for m in segment.messages
                ]
                await asyncio.gather(*futures)
                sent += len(futures)
            else:
                raise ValueError(f"unknown client {segment.client!r}")
    finally:
        await aio.stop()
        confluent.flush(10)
    return sent


def play(bootstrap: str, segments: Sequence[Segment]) -> int:
    """Send the segments in order, each one delivered before the next begins, so that
    messages of one partition keep the order they have in ``segments`` whichever client
    sent them. Returns how many messages were delivered."""
    return asyncio.run(_play(bootstrap, segments))
