"""Peer baselines read from the same topics as the worker: a plain confluent-kafka
(librdkafka) consumer, and a quix-streams application doing the worker's job
(``bench/quix_app.py``, in its own process as a worker runs).

quix-streams sizes the changelog topics of its state from its input topics'
``retention.ms``, read with DescribeConfigs, and tansu's DescribeConfigs returns only the
configs a topic was created with: call :func:`create_quix_topics` before
:func:`bench.harness.produce` (whose ``ensure_topics`` creates only missing topics).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition

from streams.settings import Settings

from .harness import EventCount, run_until_written

__all__ = ["QuixRun", "confluent_read", "create_quix_topics", "quix_run"]

QUIX_TOPIC_CONFIG = {"retention.ms": "-1", "retention.bytes": "-1"}
"""Set at creation, so that tansu's DescribeConfigs returns them to quix-streams."""


async def create_quix_topics(settings: Settings) -> None:
    """Create the predictions and ground-truth topics with ``settings.partitions`` and the
    retention configs quix-streams reads back. Topics that exist already are left as they
    are (and then tansu reports no retention for them: quix would fail on them)."""
    t = settings.topics
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        for name in (t.predictions, t.ground_truth):
            if name in existing:
                continue
            try:
                await admin.create_topics(
                    [
                        NewTopic(
                            name,
                            settings.partitions,
                            settings.replication_factor,
                            topic_configs=dict(QUIX_TOPIC_CONFIG),
                        )
                    ]
                )
            except TopicAlreadyExistsError:
                pass
    finally:
        await admin.close()


def _confluent_read(settings: Settings, expected: int, timeout: float) -> float:
    t = settings.topics
    consumer = Consumer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "group.id": f"{settings.app_id}-confluent-read",  # assign() joins no group
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "max.partition.fetch.bytes": 4 * 1024 * 1024,
            # librdkafka's default (100,000) read 200,000 one-event pairs from tansu at
            # ~70,000 pairs/s, its fetcher idling in fetch.queue.backoff.ms; 10x: ~170,000
            "queued.min.messages": 1_000_000,
        }
    )
    try:
        tps = []
        for topic in (t.predictions, t.ground_truth):
            meta = consumer.list_topics(topic, timeout=10).topics[topic]
            if meta.error is not None:
                raise RuntimeError(f"confluent read: topic {topic}: {meta.error}")
            tps += [TopicPartition(topic, p, OFFSET_BEGINNING) for p in sorted(meta.partitions)]
        consumer.assign(tps)
        count = EventCount(expected, timeout, "confluent read")
        while count.reading:
            count.batch(_values(consumer.consume(num_messages=10_000, timeout=0.3)))
        return count.seconds()
    finally:
        consumer.close()


def _values(messages: list[Message]) -> Iterator[bytes]:
    """The values of a ``consume()`` batch; an end-of-partition event is no record, any
    other error stops the read."""
    for msg in messages:
        err = msg.error()
        if err is not None:
            if err.code() == KafkaError._PARTITION_EOF:
                continue
            raise RuntimeError(f"confluent read: {err}")
        yield msg.value()


async def confluent_read(settings: Settings, expected: int, timeout: float = 600) -> float:
    """Baseline: a bare confluent-kafka consumer (librdkafka, no group) assigned every
    partition of both input topics from the beginning, orjson-decoding every message in
    ``consume()`` batches, until it has seen ``expected`` events (an array counts its
    length). Tuned as ``plain_read`` is (4 MiB partition fetches), plus a deeper prefetch
    queue (``queued.min.messages``). Returns seconds from its first to its last record, as
    :func:`bench.harness.plain_read` does. The blocking client runs in a thread."""
    return await asyncio.to_thread(_confluent_read, settings, expected, timeout)


@dataclass
class QuixRun:
    pairs: int
    seconds: float  # from its first record read to its last pair through the detectors
    join_seconds: float  # from its first pair joined to its last
    detections: int  # ADWIN and Page-Hinkley drifts, added up over the models
    out_of_order: int  # pairs older (prediction time) than the model's previous pair
    errors: int  # pairs whose prediction was wrong (a check on the join)

    @property
    def pairs_per_s(self) -> float:
        return self.pairs / self.seconds


def quix_run(settings: Settings, pairs: int, timeout: float) -> QuixRun:
    """Peer: ``bench/quix_app.py`` (quix-streams with default settings: changelogs on,
    at-least-once, 5 s commits) joins the pairs already published and runs ADWIN and
    Page-Hinkley per model, in its own process. The input topics must have been made by
    :func:`create_quix_topics`. Its state dir is a fresh temporary directory beside
    ``settings.data_dir``, removed afterwards."""
    t = settings.topics
    parent = settings.data_dir.parent
    parent.mkdir(parents=True, exist_ok=True)
    out = parent / f"{settings.app_id}-quix.json"
    with tempfile.TemporaryDirectory(prefix=f"{settings.app_id}-quix-state-", dir=parent) as state:
        cmd = [
            sys.executable,
            "-m",
            "bench.quix_app",
            settings.bootstrap_servers,
            f"{settings.app_id}-quix",
            t.predictions,
            t.ground_truth,
            str(pairs),
            state,
            str(out),
        ]
        result = run_until_written(
            cmd, out, timeout=timeout, what=f"quix app (joining {pairs} pairs)"
        )
    return QuixRun(
        pairs=int(result["pairs"]),
        seconds=float(result["last"]) - float(result["first"]),
        join_seconds=float(result["last"]) - float(result["first_pair"]),
        detections=int(result["detections"]),
        out_of_order=int(result["out_of_order"]),
        errors=int(result["errors"]),
    )
