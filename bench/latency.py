"""Detection latency at a steady load: from the label that completes a drifting window
being handed to the producer helper, to the alert being readable on the alerts topic.

A worker runs on the embedded stack. Serving traffic is generated live at a fixed rate of
pairs per second, each label sent right after its prediction and stamped with the wall
clock, for models whose error rate steps from 5% to 40% at staggered times and back.
An alert's ``event_time_ms`` is the completion time of the outcome that triggered it,
which is the wall time its label was sent, so latency = read time - event_time_ms.
The worker's reorder lag holds every outcome that long by design; it is set here (and
reported) so the figure shows the pipeline, not the configured wait.

    python -m bench.latency [--quick] [--rate 5000] [--seconds 60] [--reorder-lag-ms 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from typing import Any

import numpy as np
import orjson
from aiokafka import AIOKafkaConsumer

from streams.producer import WatchkeeperProducer
from streams.settings import Settings

from .harness import stack, start_worker, wait_counter
from .report import Row, Suite, markdown


class AlertReader:
    """Reads the alerts topic from the start and stamps each alert when it arrives."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.seen: list[tuple[float, dict[str, Any]]] = []
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> AlertReader:
        consumer = AIOKafkaConsumer(
            self.settings.topics.alerts,
            bootstrap_servers=self.settings.bootstrap_servers,
            group_id=None,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=5,
        )
        await consumer.start()
        self._task = asyncio.create_task(self._run(consumer))
        return self

    async def _run(self, consumer: AIOKafkaConsumer) -> None:
        try:
            async for record in consumer:
                self.seen.append((time.time(), orjson.loads(record.value)))
        finally:
            await consumer.stop()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


async def drive(settings: Settings, rate: int, seconds: float, models: int, seed: int) -> int:
    """Send ``rate`` pairs per second for ``seconds``; returns the pairs sent."""
    rng = random.Random(seed)
    names = [f"lat-{m:03d}" for m in range(models)]
    # each model degrades once, during the middle 80% of the run, for a fifth of it
    starts = {n: seconds * (0.1 + 0.6 * rng.random()) for n in names}
    tick = 0.01
    per_tick = max(1, round(rate * tick))
    sent = 0
    async with WatchkeeperProducer(
        settings.bootstrap_servers,
        predictions_topic=settings.topics.predictions,
        ground_truth_topic=settings.topics.ground_truth,
        validate=False,
        linger_ms=5,
        batch_size=200,
    ) as producer:
        began = time.monotonic()
        next_tick = began
        while (now := time.monotonic()) - began < seconds:
            elapsed = now - began
            for _ in range(per_tick):
                model = names[sent % models]
                start = starts[model]
                bad = start <= elapsed < start + seconds / 5
                pid = f"lat-{seed}-{sent}"
                stamp = int(time.time() * 1000)
                prediction = rng.random() < 0.5
                wrong = rng.random() < (0.4 if bad else 0.05)
                await producer.predict(pid, model, int(prediction), timestamp=stamp)
                await producer.label(pid, int(prediction != wrong), timestamp=stamp)
                sent += 1
            next_tick += tick
            delay = next_tick - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
    return sent


async def warm_up(settings: Settings) -> None:
    """One pair through the worker first: latency is not startup time."""
    async with WatchkeeperProducer(
        settings.bootstrap_servers,
        predictions_topic=settings.topics.predictions,
        ground_truth_topic=settings.topics.ground_truth,
    ) as producer:
        stamp = int(time.time() * 1000)
        await producer.predict("warm-up", "warm-up", 1, timestamp=stamp)
        await producer.label("warm-up", 1, timestamp=stamp)
    await asyncio.to_thread(wait_counter, settings, "outcomes", 1, 120.0)


async def measure(
    settings: Settings, rate: int, seconds: float, models: int
) -> tuple[list[float], int, int]:
    reader = await AlertReader(settings).start()
    try:
        await warm_up(settings)
        sent = await drive(settings, rate, seconds, models, seed=11)
        # the last alerts may still be on their way: wait until the worker has every outcome
        await asyncio.to_thread(wait_counter, settings, "outcomes", sent + 1, 120.0)
        await asyncio.sleep(2 * settings.reorder_lag_ms / 1000 + 1)
    finally:
        await reader.stop()
    latencies = [
        read - alert["event_time_ms"] / 1000
        for read, alert in reader.seen
        if alert.get("kind") == "performance_degradation"
    ]
    return latencies, sent, len(reader.seen)


def run(
    quick: bool = False,
    *,
    rate: int | None = None,
    seconds: float | None = None,
    reorder_lag_ms: int = 1000,
) -> Suite:
    rate = rate or (1000 if quick else 5000)
    seconds = seconds or (8.0 if quick else 60.0)
    models = 10 if quick else 50
    suite = Suite(f"Detection latency: {rate:,} pairs/s for {seconds:.0f} s, {models} models")
    with stack() as s:
        settings = s.settings("lat", reorder_lag_ms=reorder_lag_ms)
        worker = start_worker(settings)
        try:
            latencies, sent, alerts = asyncio.run(measure(settings, rate, seconds, models))
        finally:
            worker.stop()
    achieved = sent / seconds
    if latencies:
        p50, p99 = (float(x) for x in np.percentile(latencies, [50, 99]))
        lag = reorder_lag_ms / 1000
        suite.rows += [
            Row("latency p50", p50, "s", f"reorder lag {lag:g} s", lag, None),
            Row("latency p99", p99, "s", f"reorder lag {lag:g} s", lag, None),
        ]
    suite.details = {
        "pairs_sent": sent,
        "pairs_per_s_sent": achieved,
        "degradation_alerts": len(latencies),
        "alerts_read": alerts,
        "reorder_lag_ms": reorder_lag_ms,
        "latencies_s": sorted(round(x, 4) for x in latencies),
    }
    suite.notes.append(
        f"{len(latencies)} degradation alerts; sent {achieved:,.0f} pairs/s; outcomes are "
        f"held reorder_lag_ms={reorder_lag_ms} by design (the default, 300 s, adds 299 s)"
    )
    return suite


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rate", type=int)
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--reorder-lag-ms", type=int, default=1000)
    args = parser.parse_args()
    suite = run(
        args.quick, rate=args.rate, seconds=args.seconds, reorder_lag_ms=args.reorder_lag_ms
    )
    print(markdown([suite.as_dict()]))


if __name__ == "__main__":
    main()
