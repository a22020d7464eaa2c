"""``watchkeeper replay``: read a time range of ``predictions`` and ``ground-truth`` with
aiokafka and run the live engine over it (:mod:`streams.replay.backtest`).

The range is in Kafka record time: each partition starts at ``offsets_for_times(from)``
and is read until its first record after ``to`` (or its end). Partitions are read
together, so memory holds the pending joins and not the range. Nothing is published
unless ``--publish TOPIC`` asks for it; nobody is paged.
"""

from __future__ import annotations

import gc
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from streams.connections import aiokafka_kwargs
from streams.contract.internal import Kind
from streams.engine.join_step import InputRecord
from streams.engine.rules import InputRules
from streams.errors import TopologyError
from streams.replay.backtest import Backtest, BacktestResult, Combination
from streams.replay.times import parse_time
from streams.settings import KafkaSecurity, Settings

__all__ = ["parse_time", "publish_alerts", "read_range", "replay"]

Progress = Callable[[int, int], None]  # (records read, records expected)


async def read_range(
    settings: Settings,
    backtest: Backtest,
    *,
    start_ms: int | None,
    end_ms: int | None,
    progress: Progress | None = None,
    poll_records: int = 5000,
) -> None:
    """Feed every record of both topics in the range to ``backtest``, partitions in step:
    each read's records, per partition in offset order, as one batch."""
    t = settings.topics
    kinds: dict[str, Kind] = {t.predictions: "p", t.ground_truth: "g"}
    consumer = AIOKafkaConsumer(
        **aiokafka_kwargs(settings.bootstrap_servers, settings.kafka),
        enable_auto_commit=False,
        group_id=None,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    try:
        await consumer.start()
    except KafkaError as exc:
        raise TopologyError(f"cannot reach the broker at {settings.broker}: {exc}") from exc
    try:
        tps = await _partitions(consumer, list(kinds))
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        starts: dict[TopicPartition, int] = {}
        if start_ms is None:
            starts = await consumer.beginning_offsets(tps)
        else:
            found = await consumer.offsets_for_times({tp: start_ms for tp in tps})
            starts = {tp: (ends[tp] if f is None else f.offset) for tp, f in found.items()}
        live = [tp for tp in tps if starts[tp] < ends[tp]]
        for tp in tps:
            consumer.seek(tp, starts[tp])
        expected = sum(ends[tp] - starts[tp] for tp in live)
        done = {tp for tp in tps if tp not in live}
        if done:
            consumer.pause(*done)
        read = 0
        while len(done) < len(tps):
            batch = await consumer.getmany(timeout_ms=300, max_records=poll_records)
            if not batch:  # the end offset may be reported low (tansu): stop on an empty read
                for tp in set(tps) - done:
                    if await consumer.position(tp) >= ends[tp]:
                        done.add(tp)
                        consumer.pause(tp)
                continue
            items: list[InputRecord] = []
            for tp, records in batch.items():
                kind = kinds[tp.topic]
                topic, partition = tp.topic, tp.partition
                for rec in records:
                    ts = rec.timestamp
                    if end_ms is not None and ts > end_ms:
                        done.add(tp)
                        consumer.pause(tp)
                        break
                    items.append(
                        InputRecord(
                            kind,
                            topic,
                            partition,
                            rec.offset,
                            rec.key,
                            rec.value,
                            ts if ts is not None and ts > 0 else 0,
                        )
                    )
            read += len(items)
            backtest.feed(items)
            if progress is not None:
                progress(read, expected)
    finally:
        await consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer, topics: list[str]) -> list[TopicPartition]:
    existing = await consumer.topics()
    missing = [name for name in topics if name not in existing]
    if missing:
        raise TopologyError(f"topics not found on the broker: {', '.join(missing)}")
    tps = []
    for name in topics:
        partitions = consumer.partitions_for_topic(name) or set()
        tps += [TopicPartition(name, p) for p in sorted(partitions)]
    return tps


async def join_partitions(settings: Settings) -> int:
    """The partition count the live join runs with: that of both input topics, which
    must be co-partitioned (:func:`streams.topology.ensure_topics` checks the same)."""
    t = settings.topics
    consumer = AIOKafkaConsumer(
        **aiokafka_kwargs(settings.bootstrap_servers, settings.kafka), group_id=None
    )
    try:
        await consumer.start()
    except KafkaError as exc:
        raise TopologyError(f"cannot reach the broker at {settings.broker}: {exc}") from exc
    try:
        tps = await _partitions(consumer, [t.predictions, t.ground_truth])
    finally:
        await consumer.stop()
    counts = Counter(tp.topic for tp in tps)
    if counts[t.predictions] != counts[t.ground_truth]:
        raise TopologyError(
            f"the join needs co-partitioned inputs but {t.predictions} has "
            f"{counts[t.predictions]} and {t.ground_truth} has {counts[t.ground_truth]} "
            "partitions"
        )
    return counts[t.predictions]


async def replay(
    settings: Settings,
    combinations: list[Combination],
    *,
    start_ms: int | None,
    end_ms: int | None,
    models: set[str] | None = None,
    progress: Progress | None = None,
) -> BacktestResult:
    """Run a backtest over the range; see the module docstring."""
    partitions = await join_partitions(settings)
    backtest = Backtest(
        combinations,
        partitions=partitions,
        ttl_ms=settings.join_ttl_ms,
        rules=InputRules.from_settings(settings),
        models=models,
        start_ms=start_ms,
        end_ms=end_ms,
    )
    began = time.perf_counter()
    with _fewer_collections():
        await read_range(settings, backtest, start_ms=start_ms, end_ms=end_ms, progress=progress)
        result = backtest.finish()
    result.elapsed_s = time.perf_counter() - began
    return result


@contextmanager
def _fewer_collections(young: int = 50_000) -> Iterator[None]:
    """Run young garbage collections every ``young`` allocations instead of every 700.

    A batch keeps thousands of small objects alive at once (records, events, outcomes):
    at the default threshold they outlive young collections, which makes the collector
    run full ones, each walking the whole join state. They hold no reference cycles, so
    reference counting frees them either way."""
    before = gc.get_threshold()
    gc.set_threshold(max(young, before[0]), *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)


async def publish_alerts(
    bootstrap: str,
    topic: str,
    alerts: list[dict[str, Any]],
    *,
    kafka: KafkaSecurity | None = None,
) -> int:
    """Re-emit replayed alerts (key = model_id), as the live worker would have.
    ``kafka``: security settings (None: WATCHKEEPER_KAFKA_* from the environment)."""
    producer = AIOKafkaProducer(**aiokafka_kwargs(bootstrap, kafka or KafkaSecurity()), acks="all")
    await producer.start()
    try:
        for alert in alerts:
            await producer.send(topic, key=alert["model_id"].encode(), value=orjson.dumps(alert))
        await producer.flush()
    finally:
        await producer.stop()
    return len(alerts)
