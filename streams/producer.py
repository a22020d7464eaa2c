"""The producer helper that serving systems and label pipelines embed.

It publishes predictions and labels in the Watchkeeper contract (see :mod:`streams.records`)
and cuts per-message cost by batching: events are buffered per (topic, partition) and sent
as one message whose value is a JSON array. The partition is the one a plain client keying
the message by prediction_id would pick (:func:`~streams.partitioning.partition_for`), so a
prediction and its label always meet on the same partition, batched or not::

    async with WatchkeeperProducer("localhost:9092") as wk:
        await wk.predict("p-123", "fraud", 1, score=0.91, model_version="3.2.0")
        await wk.label("p-123", 0)
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from types import TracebackType
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from streams.connections import aiokafka_kwargs
from streams.contract.events import (
    DAY_MS,
    DEFAULT_MAX_BYTES,
    MIN_EVENT_TIME_MS,
    Scalar,
    ground_truth_from_dict,
    prediction_from_dict,
)
from streams.engine.partitioning import partition_for
from streams.settings import KafkaSecurity

__all__ = ["TopicStats", "WatchkeeperProducer"]

_RECORD_OVERHEAD = 512
"""Bytes kept free under the message limit for Kafka's record framing."""


@dataclass(slots=True)
class TopicStats:
    """Events and Kafka messages delivered (acknowledged) to one topic."""

    events: int = 0
    messages: int = 0


class _Batch:
    __slots__ = ("parts", "size")

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 2  # the brackets

    def value(self) -> bytes:
        return b"[" + b",".join(self.parts) + b"]"


class WatchkeeperProducer:
    """Publishes predictions and labels in the Watchkeeper contract, batched per partition.

    A partition's buffer is sent when it holds ``batch_size`` events, when the next event
    would push it past the message limit (the smaller of ``max_request_size`` and the
    parser's 1 MiB), or at the latest ``linger_ms`` later (0 turns that timer off).
    ``batch_size=1`` sends each event as a plain object keyed by prediction_id, exactly what
    kcat or any plain client would send. ``validate=True`` applies the parser's rules to
    every event and raises ValueError at the caller instead of dead-lettering it downstream.
    Timestamps are checked against the wall clock at the call, standing in for the Kafka
    record timestamp the worker will compare them with (the helper lets Kafka stamp the
    record with the send time): an event time more than ``max_clock_skew_ms`` ahead of
    now, or before ``min_event_time_ms``, is refused. Pass the worker's settings of the
    same names if it runs with other bounds.
    A delivery that fails in the background is raised by the next call.
    ``security`` is how to authenticate and encrypt (``KafkaSecurity(security_protocol=
    "SASL_SSL", sasl_username=..., ...)``); None reads WATCHKEEPER_KAFKA_* from the
    environment, PLAINTEXT when unset. ``producer_kwargs`` go to
    :class:`aiokafka.AIOKafkaProducer` and win over both.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        predictions_topic: str = "predictions",
        ground_truth_topic: str = "ground-truth",
        batch_size: int = 500,
        linger_ms: int = 50,
        validate: bool = True,
        max_clock_skew_ms: int = DAY_MS,
        min_event_time_ms: int = MIN_EVENT_TIME_MS,
        security: KafkaSecurity | None = None,
        **producer_kwargs: Any,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if linger_ms < 0:
            raise ValueError(f"linger_ms must be >= 0, got {linger_ms}")
        if max_clock_skew_ms < 0 or min_event_time_ms < 0:
            raise ValueError(
                "max_clock_skew_ms and min_event_time_ms must be >= 0, "
                f"got {max_clock_skew_ms} and {min_event_time_ms}"
            )
        self.predictions_topic = predictions_topic
        self.ground_truth_topic = ground_truth_topic
        self.batch_size = batch_size
        self.linger_ms = linger_ms
        self.validate = validate
        self._bounds = {"max_skew_ms": max_clock_skew_ms, "min_timestamp_ms": min_event_time_ms}
        self.stats: dict[str, TopicStats] = {
            predictions_topic: TopicStats(),
            ground_truth_topic: TopicStats(),
        }
        # "host:port", "kafka://host:port" or several, split by "," or ";"
        self._bootstrap_servers = ",".join(
            part.strip().removeprefix("kafka://")
            for part in bootstrap_servers.replace(";", ",").split(",")
            if part.strip()
        )
        self._security = security if security is not None else KafkaSecurity()
        self._producer_kwargs = producer_kwargs
        request_limit = int(producer_kwargs.get("max_request_size", DEFAULT_MAX_BYTES))
        self._max_value = min(request_limit, DEFAULT_MAX_BYTES) - _RECORD_OVERHEAD
        self._producer: AIOKafkaProducer | None = None
        self._buffers: dict[tuple[str, int], _Batch] = {}
        self._in_flight: set[asyncio.Future[Any]] = set()
        self._error: BaseException | None = None
        self._linger_task: asyncio.Task[None] | None = None
        self._closing = asyncio.Event()
        # Batches leave in the order they were closed: a closed batch joins this queue
        # without an await, and one sender at a time empties it. (aiokafka's send() can
        # wait for buffer space; two senders could then reorder a partition's batches,
        # which the tests saw as label batches arriving hours behind their partition.)
        self._outbox: collections.deque[tuple[str, int, bytes, bytes | None, int]] = (
            collections.deque()
        )
        self._flushing = asyncio.Lock()

    async def start(self) -> None:
        """Connect (the aiokafka producer needs a running loop, so it is built here)."""
        producer = AIOKafkaProducer(
            **{
                **aiokafka_kwargs(self._bootstrap_servers, self._security),
                **self._producer_kwargs,
            }
        )
        try:
            await producer.start()
        except BaseException:
            await producer.stop()
            raise
        self._producer = producer
        self._closing = asyncio.Event()
        if self.linger_ms and self.batch_size > 1:
            self._linger_task = asyncio.create_task(self._linger(), name="watchkeeper-linger")

    async def stop(self) -> None:
        """Flush every buffer, wait for delivery, then disconnect."""
        if self._producer is None:
            return
        try:
            if self._linger_task is not None:
                # Not cancelled: a cancelled send would drop the batch it was sending.
                self._closing.set()
                await self._linger_task
                self._linger_task = None
            await self.flush()
        finally:
            await self._producer.stop()
            self._producer = None

    async def __aenter__(self) -> WatchkeeperProducer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def predict(
        self,
        prediction_id: str,
        model_id: str,
        prediction: Scalar,
        *,
        model_version: str | None = None,
        timestamp: datetime | int | None = None,
        score: float | None = None,
        features: Mapping[str, Any] | None = None,
        segment: str | None = None,
    ) -> None:
        """Queue one prediction; a missing timestamp means the Kafka record time is used."""
        event: dict[str, Any] = {
            "prediction_id": prediction_id,
            "model_id": model_id,
            "prediction": prediction,
        }
        if model_version is not None:
            event["model_version"] = model_version
        if timestamp is not None:
            event["timestamp"] = _timestamp(timestamp)
        if score is not None:
            event["score"] = score
        if features is not None:
            event["features"] = features if isinstance(features, dict) else dict(features)
        if segment is not None:
            event["segment"] = segment
        if self.validate:
            prediction_from_dict(event, _now_ms(), **self._bounds)
        await self._add(self.predictions_topic, prediction_id, event)

    async def label(
        self, prediction_id: str, label: Scalar, *, timestamp: datetime | int | None = None
    ) -> None:
        """Queue the ground truth for ``prediction_id``."""
        event: dict[str, Any] = {"prediction_id": prediction_id, "label": label}
        if timestamp is not None:
            event["timestamp"] = _timestamp(timestamp)
        if self.validate:
            ground_truth_from_dict(event, _now_ms(), **self._bounds)
        await self._add(self.ground_truth_topic, prediction_id, event)

    async def flush(self) -> None:
        """Send every buffer and wait until Kafka has acknowledged all that was sent."""
        self._raise_failure()
        await self._send_buffers()
        if self._in_flight:
            await asyncio.wait(set(self._in_flight))
        self._raise_failure()

    async def _send_buffers(self) -> None:
        buffers, self._buffers = self._buffers, {}
        for (topic, partition), batch in buffers.items():
            self._outbox.append((topic, partition, batch.value(), None, len(batch.parts)))
        await self._drain_outbox()

    async def _drain_outbox(self) -> None:
        async with self._flushing:
            while self._outbox:
                await self._send(*self._outbox.popleft())

    async def _add(self, topic: str, prediction_id: str, event: dict[str, Any]) -> None:
        try:
            value = orjson.dumps(event, option=orjson.OPT_SERIALIZE_NUMPY)
        except orjson.JSONEncodeError as exc:
            raise ValueError(
                f"event for {prediction_id!r} is not JSON-serialisable: {exc}"
            ) from None
        if len(value) + 2 > self._max_value:  # + 2: it may travel alone in brackets
            raise ValueError(
                f"event for {prediction_id!r} is {len(value)} bytes, over the "
                f"{self._max_value}-byte message limit"
            )
        self._raise_failure()
        n = len(await self._require_started().partitions_for(topic))
        partition = partition_for(prediction_id, n)
        if self.batch_size == 1:
            self._outbox.append((topic, partition, value, prediction_id.encode(), 1))
            await self._drain_outbox()
            return
        # No await between reading and updating the buffers: other callers and the linger
        # task cannot interleave here.
        key = (topic, partition)
        ready: list[_Batch] = []
        batch = self._buffers.get(key)
        if batch is not None and batch.size + len(value) + 1 > self._max_value:
            ready.append(self._buffers.pop(key))
            batch = None
        if batch is None:
            batch = self._buffers[key] = _Batch()
        # an exact-size copy: orjson's result holds a 4 KiB allocation however short it is
        batch.parts.append(bytes(memoryview(value)))
        batch.size += len(value) + 1
        if len(batch.parts) >= self.batch_size:
            ready.append(self._buffers.pop(key))
        for full in ready:
            self._outbox.append((topic, partition, full.value(), None, len(full.parts)))
        if ready:
            await self._drain_outbox()

    async def _send(
        self, topic: str, partition: int, value: bytes, key: bytes | None, events: int
    ) -> None:
        delivery = await self._require_started().send(topic, value, key=key, partition=partition)
        self._in_flight.add(delivery)
        delivery.add_done_callback(partial(self._delivered, topic, events))

    def _delivered(self, topic: str, events: int, delivery: asyncio.Future[Any]) -> None:
        self._in_flight.discard(delivery)
        if delivery.cancelled():
            exc: BaseException | None = RuntimeError("Kafka delivery was cancelled")
        else:
            exc = delivery.exception()
        if exc is not None:
            self._error = self._error or exc
            return
        stats = self.stats.setdefault(topic, TopicStats())
        stats.events += events
        stats.messages += 1

    async def _linger(self) -> None:
        while not self._closing.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), self.linger_ms / 1000)
            try:
                await self._send_buffers()
            except Exception as exc:  # surfaced by the next call instead of lost
                self._error = self._error or exc

    def _raise_failure(self) -> None:
        if self._error is not None:
            exc, self._error = self._error, None
            raise exc

    def _require_started(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise RuntimeError("WatchkeeperProducer is not started; call start() first")
        return self._producer


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _timestamp(value: datetime | int) -> str | int:
    """RFC 3339 with Z for datetimes (naive ones refused: their zone is a guess)."""
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"timestamp {value!r} is naive; pass a timezone-aware datetime")
        return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return value
