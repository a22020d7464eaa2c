"""Shared machinery of the Kafka benchmarks: an embedded stack, seeded traffic, a worker
timed through its own counters, and the baselines read from the same topics.

Everything runs against the embedded tansu broker and redis-server the demo uses, on
loopback, and every process started here is stopped here by its pid.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import psutil
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from redis import Redis

from detectors.config import DetectorSettings
from streams.dev.embedded import EmbeddedBroker, EmbeddedRedis, embedded_stack
from streams.dev.process import WorkerProcess, stop_process
from streams.engine.partitioning import partition_for
from streams.producer import WatchkeeperProducer
from streams.replay.backtest import expand_sweeps
from streams.replay.source import replay
from streams.settings import Settings, Topics
from streams.topology import ensure_topics

__all__ = [
    "Stack",
    "Traffic",
    "WorkerRun",
    "faust_count",
    "plain_read",
    "produce",
    "replay_read",
    "run_until_written",
    "run_worker",
    "stack",
    "start_worker",
    "wait_counter",
]

T0_MS = 1_790_000_000_000  # 2026-09-21, a fixed event-time origin


@dataclass
class Stack:
    broker: EmbeddedBroker
    redis: EmbeddedRedis
    tmp: Path

    def settings(self, name: str, partitions: int = 4, **extra: Any) -> Settings:
        """Settings with topics, app id and Redis prefix of their own, so that several
        runs share one broker without reading each other's records."""
        topics = Topics(
            predictions=f"{name}-predictions",
            ground_truth=f"{name}-ground-truth",
            outcomes=f"{name}-outcomes",
            alerts=f"{name}-alerts",
            dlq=f"{name}-dlq",
            rekey=f"{name}-rekey",
        )
        return Settings(
            broker=self.broker.url,
            redis_url=self.redis.url,
            app_id=f"wk-{name}",
            partitions=partitions,
            topics=topics,
            redis_prefix=f"{name}:",
            data_dir=self.tmp / name,
            **extra,
        )


@contextlib.contextmanager
def stack() -> Iterator[Stack]:
    with embedded_stack() as (broker, redis), tempfile.TemporaryDirectory() as tmp:
        yield Stack(broker, redis, Path(tmp))


@dataclass
class Traffic:
    """Seeded pairs: prediction i of model ``i % models`` at ``T0 + i * spacing``, its
    label ``label_delay_ms`` later, wrong with probability ``error_rate``."""

    pairs: int
    models: int
    seed: int = 5
    error_rate: float = 0.1
    spacing_ms: int = 10
    label_delay_ms: int = 60_000

    def events(self) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
        rng = random.Random(self.seed)
        models = [f"model-{m:05d}" for m in range(self.models)]
        for i in range(self.pairs):
            pid = f"p-{self.seed}-{i:08d}"
            ts = T0_MS + i * self.spacing_ms
            prediction = rng.random() < 0.5
            label = prediction if rng.random() >= self.error_rate else not prediction
            yield (
                {
                    "prediction_id": pid,
                    "model_id": models[i % self.models],
                    "model_version": "1.0",
                    "timestamp": ts,
                    "prediction": int(prediction),
                },
                {"prediction_id": pid, "label": int(label), "timestamp": ts + self.label_delay_ms},
            )


async def produce(settings: Settings, traffic: Traffic, form: str) -> int:
    """Publish ``traffic`` in one of two forms; returns the number of Kafka messages.

    ``single``: one event per message keyed by prediction_id, what kcat sends.
    ``batched``: JSON arrays per partition, what :class:`WatchkeeperProducer` sends.
    """
    await ensure_topics(settings)
    t = settings.topics
    if form == "batched":
        async with WatchkeeperProducer(
            settings.bootstrap_servers,
            predictions_topic=t.predictions,
            ground_truth_topic=t.ground_truth,
            validate=False,
            linger_ms=0,
        ) as producer:
            labels = []
            for p, g in traffic.events():
                await producer.predict(
                    p["prediction_id"],
                    p["model_id"],
                    p["prediction"],
                    model_version=p["model_version"],
                    timestamp=p["timestamp"],
                )
                labels.append(g)
            for g in labels:
                await producer.label(g["prediction_id"], g["label"], timestamp=g["timestamp"])
            await producer.flush()
            return sum(s.messages for s in producer.stats.values())
    if form != "single":
        raise ValueError(f"form must be 'single' or 'batched', got {form!r}")
    n = settings.partitions
    raw = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, linger_ms=5)
    await raw.start()
    try:
        by_part: dict[tuple[str, int], list[tuple[bytes, bytes]]] = defaultdict(list)
        for p, g in traffic.events():
            key = p["prediction_id"].encode()
            part = partition_for(key, n)
            by_part[t.predictions, part].append((key, orjson.dumps(p)))
            by_part[t.ground_truth, part].append((key, orjson.dumps(g)))
        messages = 0
        for (topic, part), records in by_part.items():
            batch = raw.create_batch()
            for key, value in records:
                if batch.append(key=key, value=value, timestamp=None) is None:
                    await (await raw.send_batch(batch, topic, partition=part))
                    batch = raw.create_batch()
                    batch.append(key=key, value=value, timestamp=None)
                messages += 1
            await (await raw.send_batch(batch, topic, partition=part))
        return messages
    finally:
        await raw.stop()


class EventCount:
    """The events a plain reader decoded (a JSON array counts its length), and the time
    from its first record to its last: the loop the baseline readers share."""

    def __init__(self, expected: int, timeout: float, who: str) -> None:
        self.expected = expected
        self.who = who
        self.events = 0
        self.began = self.last = 0.0
        self._timeout = timeout
        self._deadline = time.monotonic() + timeout

    @property
    def reading(self) -> bool:
        """Not all events yet (and still within the timeout, else TimeoutError)."""
        if self.events >= self.expected:
            return False
        if time.monotonic() > self._deadline:
            raise TimeoutError(
                f"{self.who} {self.events}/{self.expected} events in {self._timeout}s"
            )
        return True

    def batch(self, values: Iterable[bytes]) -> None:
        """Decode and count one fetched batch (empty: a fetch that returned nothing)."""
        events, began = self.events, self.began
        for value in values:
            if not began:
                began = self.began = time.perf_counter()
            doc = orjson.loads(value)
            events += len(doc) if isinstance(doc, list) else 1
        self.events = events
        self.last = time.perf_counter()

    def seconds(self) -> float:
        """From the first record to the last, once exactly ``expected`` were read."""
        if self.events != self.expected:
            raise RuntimeError(f"{self.who} {self.events} events, expected {self.expected}")
        return self.last - self.began


async def plain_read(settings: Settings, expected: int, timeout: float = 600) -> float:
    """Baseline: a bare aiokafka consumer reads both input topics and orjson-decodes every
    message until it has seen ``expected`` events. Returns seconds from its first to its
    last record. (It counts rather than asking for end offsets: tansu was seen to report
    end offsets short of the log end right after a produce.)"""
    t = settings.topics
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    try:
        await consumer.topics()
        tps = [
            TopicPartition(topic, p)
            for topic in (t.predictions, t.ground_truth)
            for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        count = EventCount(expected, timeout, "baseline read")
        while count.reading:
            batch = await consumer.getmany(timeout_ms=300, max_records=10_000)
            count.batch(rec.value for records in batch.values() for rec in records)
        return count.seconds()
    finally:
        await consumer.stop()


async def replay_read(settings: Settings, pairs: int) -> float:
    """Ceiling: the replay engine reads both input topics with aiokafka and runs the same
    join and detectors (default configuration) in process, writing nothing. Returns pairs
    per second from the end of its first batch to the end of the replay."""
    marks: list[tuple[float, int, int]] = []

    def progress(read: int, expected: int) -> None:
        if not marks:
            marks.append((time.perf_counter(), read, expected))

    result = await replay(
        settings,
        expand_sweeps(DetectorSettings(), []),
        start_ms=None,
        end_ms=None,
        progress=progress,
    )
    ended = time.perf_counter()
    if result.events != 2 * pairs:
        raise RuntimeError(f"replay read {result.events} events, expected {2 * pairs}")
    began, read, expected = marks[0]
    if read >= expected:  # a tiny range read in one batch: time the whole replay
        return pairs / result.elapsed_s
    return pairs * (expected - read) / expected / (ended - began)


def run_until_written(cmd: list[str], out: Path, *, timeout: float, what: str) -> Any:
    """Run ``cmd`` (a module of this repository) in its own process until it writes the
    JSON file ``out``, and return what it wrote. Its output goes to ``out`` with the suffix
    ``.log``, whose tail a failure shows; the process is stopped by its pid either way."""
    out.unlink(missing_ok=True)
    repo = Path(__file__).parent.parent
    log_path = out.with_suffix(".log")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=repo,
            env={**os.environ, "PYTHONPATH": str(repo)},
        )
        try:
            deadline = time.monotonic() + timeout
            while not out.exists():
                if proc.poll() is not None and not out.exists():
                    tail = log_path.read_text(errors="replace")[-3000:]
                    raise RuntimeError(f"{what} exited {proc.returncode}:\n{tail}")
                if time.monotonic() > deadline:
                    tail = log_path.read_text(errors="replace")[-3000:]
                    raise TimeoutError(f"{what} did not finish in {timeout}s:\n{tail}")
                time.sleep(0.1)
            return json.loads(out.read_text())
        finally:
            stop_process(proc, timeout=20)


def faust_count(settings: Settings, messages: int, timeout: float) -> tuple[int, float]:
    """Baseline: a bare Faust agent with default settings counts the messages of both
    input topics (``bench/faust_counter.py``, in its own process as a worker runs).
    Returns (messages, seconds from its first to its last message)."""
    t = settings.topics
    out = settings.data_dir.with_name(settings.app_id + "-faust-count.json")
    cmd = [
        sys.executable,
        "-m",
        "bench.faust_counter",
        settings.broker,
        f"{settings.app_id}-faust-counter",
        f"{t.predictions},{t.ground_truth}",
        str(messages),
        str(out),
    ]
    result = run_until_written(
        cmd, out, timeout=timeout, what=f"faust counter (counting {messages})"
    )
    return int(result["messages"]), float(result["last"]) - float(result["first"])


@dataclass
class WorkerRun:
    pairs: int
    seconds: float  # from the first event joined to the last outcome through the detectors
    rss_idle: int  # bytes, after startup, before the first outcome
    rss_end: int  # bytes, once every outcome was processed

    @property
    def pairs_per_s(self) -> float:
        return self.pairs / self.seconds


def start_worker(settings: Settings, env: dict[str, str] | None = None) -> WorkerProcess:
    """A ``watchkeeper worker`` process configured from ``settings`` (plus ``env``)."""
    names = settings.topics.model_dump()
    return WorkerProcess(
        settings.broker,
        settings.redis_url,
        settings.data_dir.with_name(settings.app_id + "-worker.log"),
        env={
            "WATCHKEEPER_APP_ID": settings.app_id,
            "WATCHKEEPER_PARTITIONS": str(settings.partitions),
            "WATCHKEEPER_REDIS_PREFIX": settings.redis_prefix,
            "WATCHKEEPER_DATA_DIR": str(settings.data_dir),
            "WATCHKEEPER_REORDER_LAG_MS": str(settings.reorder_lag_ms),
            **{f"WATCHKEEPER_TOPIC_{name.upper()}": value for name, value in names.items()},
            **(env or {}),
        },
    ).start()


def wait_counter(settings: Settings, name: str, value: int, timeout: float) -> None:
    """Wait until the workers' Redis counter ``name`` reaches ``value``."""
    redis = Redis.from_url(settings.redis_url)
    try:
        deadline = time.monotonic() + timeout
        while int(redis.hget(f"{settings.redis_prefix}stats", name) or 0) < value:
            if time.monotonic() > deadline:
                raise TimeoutError(f"counter {name} did not reach {value} in {timeout}s")
            time.sleep(0.05)
    finally:
        redis.close()


def run_worker(
    settings: Settings,
    pairs: int,
    *,
    timeout: float,
    env: dict[str, str] | None = None,
) -> WorkerRun:
    """Start a worker on events already published and time it from the first prediction
    joined to the last outcome through the detectors, read off the worker's own counters
    in Redis (polled every 20 ms). Starting at the first outcome instead would leave out
    the join's work on whatever it read before the first label."""
    # the counters are the clock: written every 20 ms, as often as they are polled (the
    # default 0.5 s would swallow a short run whole and leave nothing to time)
    worker = start_worker(settings, {"WATCHKEEPER_HEALTH_INTERVAL_S": "0.02", **(env or {})})
    redis = Redis.from_url(settings.redis_url)
    key = f"{settings.redis_prefix}stats"
    try:
        assert worker.proc is not None
        proc = psutil.Process(worker.proc.pid)
        deadline = time.monotonic() + timeout
        rss_idle = 0
        began = None
        while True:
            started, done = (int(v or 0) for v in redis.hmget(key, "predictions", "outcomes"))
            now = time.perf_counter()
            if started and began is None:
                began = now
            if began is None:
                rss_idle = proc.memory_info().rss
            if done >= pairs:
                break
            if not worker.alive():
                raise RuntimeError(f"worker exited:\n{worker.log_tail()}")
            if time.monotonic() > deadline:
                tail = worker.log_tail()
                raise TimeoutError(f"{done}/{pairs} outcomes after {timeout}s:\n{tail}")
            time.sleep(0.02)
        rss_end = proc.memory_info().rss
        if began is None or now <= began:
            raise RuntimeError(
                f"{pairs} pairs went through between two counter writes: too few to time"
            )
        return WorkerRun(pairs, now - began, rss_idle, rss_end)
    finally:
        redis.close()
        worker.stop()
