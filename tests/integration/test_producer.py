"""The producer helper against a real broker: every event once, on its key's partition."""

from __future__ import annotations

import asyncio
import inspect
import math
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaConnectionError

from streams.contract.events import (
    GroundTruth,
    Prediction,
    parse_ground_truth,
    parse_predictions,
    parse_timestamp_ms,
)
from streams.engine.partitioning import partition_for
from streams.producer import WatchkeeperProducer

pytestmark = pytest.mark.integration

PARTITIONS = 3
BASE = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)


async def new_topic(make_topic: Callable[..., Any], prefix: str) -> str:
    name = make_topic(prefix, partitions=PARTITIONS)
    return await name if inspect.isawaitable(name) else name


async def read_all(bootstrap: str, topic: str) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record in ``topic`` up to its current end offsets, with a plain consumer."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        records: list[ConsumerRecord[bytes, bytes]] = []
        async with asyncio.timeout(60):
            while [tp for tp in tps if await consumer.position(tp) < end[tp]]:
                for batch in (await consumer.getmany(timeout_ms=500)).values():
                    records.extend(batch)
        return records
    finally:
        await consumer.stop()


def event_time(i: int) -> datetime | int | None:
    """A mix of the timestamp forms the helper accepts."""
    if i % 3 == 0:
        return None
    if i % 3 == 1:
        return (BASE + timedelta(seconds=i)).astimezone(timezone(timedelta(hours=-5)))
    return int((BASE + timedelta(seconds=i)).timestamp() * 1000)


def expected_ms(i: int, record: ConsumerRecord[bytes, bytes]) -> int:
    ts = event_time(i)
    if ts is None:
        return record.timestamp
    return ts if isinstance(ts, int) else parse_timestamp_ms(ts.isoformat())


def check_messages(
    records: list[ConsumerRecord[bytes, bytes]], batch_size: int
) -> list[tuple[ConsumerRecord[bytes, bytes], dict[str, Any]]]:
    """Shape of each message as the contract says; returns (record, element) pairs."""
    elements = []
    for record in records:
        doc = orjson.loads(record.value)
        if batch_size == 1:
            assert isinstance(doc, dict)
            assert record.key == doc["prediction_id"].encode()
            doc = [doc]
        else:
            assert isinstance(doc, list)
            assert record.key is None
            assert 1 <= len(doc) <= batch_size
        for element in doc:
            assert record.partition == partition_for(element["prediction_id"], PARTITIONS)
            elements.append((record, element))
    return elements


@pytest.mark.parametrize("batch_size", [100, 1])
async def test_every_event_arrives_once_on_its_key_partition(
    kafka_bootstrap: str, make_topic: Callable[..., Any], batch_size: int
) -> None:
    n = 1000 if batch_size > 1 else 300
    predictions_topic = await new_topic(make_topic, "wk-pred")
    labels_topic = await new_topic(make_topic, "wk-gt")
    ids = [f"p-{i:05d}" for i in range(n)]

    async with WatchkeeperProducer(
        kafka_bootstrap,
        predictions_topic=predictions_topic,
        ground_truth_topic=labels_topic,
        batch_size=batch_size,
    ) as producer:
        for i, pid in enumerate(ids):
            await producer.predict(
                pid,
                f"model-{i % 4}",
                i % 2,
                model_version="3.2.0",
                timestamp=event_time(i),
                score=i / n,
                features={"amount": i * 1.5, "country": "nl"},
                segment="eu" if i % 2 else None,
            )
        for i, pid in enumerate(reversed(ids)):  # labels in another order, as in life
            await producer.label(pid, "yes" if i % 5 else True, timestamp=event_time(i))
    assert producer.stats[predictions_topic].events == n
    assert producer.stats[labels_topic].events == n

    pred_records = await read_all(kafka_bootstrap, predictions_topic)
    label_records = await read_all(kafka_bootstrap, labels_topic)
    assert producer.stats[predictions_topic].messages == len(pred_records)
    assert producer.stats[labels_topic].messages == len(label_records)
    if batch_size == 1:
        assert len(pred_records) == n

    pred_elements = check_messages(pred_records, batch_size)
    label_elements = check_messages(label_records, batch_size)
    assert Counter(e["prediction_id"] for _, e in pred_elements) == Counter(ids)
    assert Counter(e["prediction_id"] for _, e in label_elements) == Counter(ids)

    by_id: dict[str, Prediction] = {}
    for record in pred_records:
        parsed, rejected = parse_predictions(record.value, record_timestamp_ms=record.timestamp)
        assert rejected == []
        by_id.update((p.prediction_id, p) for p in parsed)
    record_of = {e["prediction_id"]: r for r, e in pred_elements}
    for i, pid in enumerate(ids):
        assert by_id[pid] == Prediction(
            pid,
            f"model-{i % 4}",
            "3.2.0",
            expected_ms(i, record_of[pid]),
            i % 2,
            i / n,
            "eu" if i % 2 else None,
        )

    labels: dict[str, GroundTruth] = {}
    for record in label_records:
        parsed_labels, rejected = parse_ground_truth(
            record.value, record_timestamp_ms=record.timestamp
        )
        assert rejected == []
        labels.update((g.prediction_id, g) for g in parsed_labels)
    label_record_of = {e["prediction_id"]: r for r, e in label_elements}
    for i, pid in enumerate(reversed(ids)):
        assert labels[pid] == GroundTruth(
            pid, "yes" if i % 5 else True, expected_ms(i, label_record_of[pid])
        )
        # co-partitioned: the join meets each prediction and its label on one partition
        assert label_record_of[pid].partition == record_of[pid].partition


async def test_linger_sends_partial_batches_without_flush(
    kafka_bootstrap: str, make_topic: Callable[..., Any]
) -> None:
    topic = await new_topic(make_topic, "wk-linger")
    async with WatchkeeperProducer(
        kafka_bootstrap, predictions_topic=topic, batch_size=500, linger_ms=50
    ) as producer:
        for i in range(7):
            await producer.predict(f"p-{i}", "fraud", 1)
        async with asyncio.timeout(10):
            while producer.stats[topic].events < 7:
                await asyncio.sleep(0.02)
        records = await read_all(kafka_bootstrap, topic)
    assert sum(len(orjson.loads(r.value)) for r in records) == 7


async def test_batches_split_to_stay_under_the_message_limit(
    kafka_bootstrap: str, make_topic: Callable[..., Any]
) -> None:
    topic = await new_topic(make_topic, "wk-big")
    blob = "x" * 100_000
    async with WatchkeeperProducer(
        kafka_bootstrap, predictions_topic=topic, batch_size=100, linger_ms=0
    ) as producer:
        for i in range(40):
            await producer.predict(f"p-{i}", "fraud", 1, features={"blob": blob})
        with pytest.raises(ValueError, match="message limit"):
            await producer.predict("p-huge", "fraud", 1, features={"blob": blob * 11})
    records = await read_all(kafka_bootstrap, topic)
    assert all(len(r.value) <= 1_048_576 for r in records)
    assert sum(len(orjson.loads(r.value)) for r in records) == 40
    assert all(parse_predictions(r.value, record_timestamp_ms=0)[1] == [] for r in records)


# --- the caller's mistakes are raised at once, before anything is sent ----------------------


@pytest.mark.parametrize(
    ("call", "says"),
    [
        (lambda p: p.predict("", "fraud", 1), "'prediction_id'"),
        (lambda p: p.predict("p-1", "m" * 300, 1), "'model_id'"),
        (lambda p: p.predict("p-1", "fraud", [1]), "'prediction'"),
        (lambda p: p.predict("p-1", "fraud", math.nan), "'prediction'"),
        (lambda p: p.predict("p-1", "fraud", 1, score=math.inf), "'score'"),
        (lambda p: p.predict("p-1", "fraud", 1, timestamp=-5), "'timestamp'"),
        (lambda p: p.predict("p-1", "fraud", 1, timestamp=datetime(2026, 1, 1)), "naive"),
        (lambda p: p.predict("p-1", "fraud", 1, features={"x": object()}), "not JSON-serialisable"),
        (lambda p: p.label("p-1", None), "'label'"),
        (lambda p: p.label("p-1", 1, timestamp=datetime(2026, 1, 1)), "naive"),
    ],
)
async def test_invalid_events_raise_value_error(
    call: Callable[[WatchkeeperProducer], Any], says: str
) -> None:
    producer = WatchkeeperProducer("127.0.0.1:1")  # never started: nothing may be sent
    with pytest.raises(ValueError, match=says):
        await call(producer)


@pytest.mark.parametrize("kwargs", [{"batch_size": 0}, {"linger_ms": -1}])
def test_settings_are_checked(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        WatchkeeperProducer("127.0.0.1:1", **kwargs)


async def test_concurrent_callers_and_linger_lose_and_duplicate_nothing(
    kafka_bootstrap: str, make_topic: Callable[..., Any]
) -> None:
    topic = await new_topic(make_topic, "wk-concurrent")

    async def serve(producer: WatchkeeperProducer, worker: int) -> None:
        for i in range(250):
            await producer.predict(f"w{worker}-{i}", "fraud", i % 2)
            if i % 50 == 0:
                await asyncio.sleep(0.003)  # let the 2 ms linger fire mid-stream

    async with WatchkeeperProducer(
        kafka_bootstrap, predictions_topic=topic, batch_size=64, linger_ms=2
    ) as producer:
        await asyncio.gather(*(serve(producer, w) for w in range(8)))
    elements = check_messages(await read_all(kafka_bootstrap, topic), 64)
    expected = Counter(f"w{w}-{i}" for w in range(8) for i in range(250))
    assert Counter(e["prediction_id"] for _, e in elements) == expected
    assert producer.stats[topic].events == 2000


async def test_unreachable_broker_fails_start_cleanly() -> None:
    producer = WatchkeeperProducer("127.0.0.1:1", request_timeout_ms=1000)
    with pytest.raises(KafkaConnectionError):
        await producer.start()
    await producer.stop()  # nothing to stop: no error


async def test_a_single_caller_keeps_each_partitions_order_under_backpressure(
    kafka_bootstrap: str, make_topic: Callable[..., Any]
) -> None:
    """Events of one caller reach each partition in the order they were given, even when
    aiokafka's buffer is full and the linger task flushes at the same time (a reorder
    here once put whole label batches hours behind their partition)."""
    topic = await new_topic(make_topic, "wk-order")
    async with WatchkeeperProducer(
        kafka_bootstrap,
        predictions_topic=topic,
        batch_size=200,
        linger_ms=1,
        max_batch_size=16_384,  # aiokafka's accumulator fills up, and send() waits
    ) as producer:
        for i in range(30_000):
            await producer.predict(f"p-{i}", "fraud", i % 2, timestamp=1_795_000_000_000 + i)
    elements = check_messages(await read_all(kafka_bootstrap, topic), 200)
    by_partition: dict[int, list[int]] = {}
    for record, element in elements:
        by_partition.setdefault(record.partition, []).append(int(element["prediction_id"][2:]))
    assert sum(len(v) for v in by_partition.values()) == 30_000
    for partition, order in by_partition.items():
        assert order == sorted(order), f"partition {partition} out of order"
