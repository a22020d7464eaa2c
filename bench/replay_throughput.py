"""Replay throughput against a plain aiokafka read of the same range, in the same run.

Publishes a seeded scenario to an embedded tansu broker, then times (best of ``--repeat``)
1. the baseline: one aiokafka consumer reading both topics to their end and
   orjson-decoding every message (what any reader must at least do), and
2. ``streams.replay.replay`` over the same range: parse, join, detect.
Prints events/s for both and their ratio, and writes ``bench/results-replay.json``.

    python -m bench.replay_throughput [--models 24] [--predictions-per-model 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import tracemalloc
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from detectors.config import DetectorSettings
from streams.dev.demo import produce_scenario
from streams.dev.embedded import EmbeddedBroker
from streams.dev.simulate import build_scenario
from streams.replay.backtest import expand_sweeps
from streams.replay.source import replay
from streams.settings import Settings, Topics
from streams.topology import ensure_topics

OUT = Path(__file__).with_name("results-replay.json")


async def plain_read(settings: Settings) -> tuple[int, float]:
    """Events decoded per second by a bare consumer over both topics."""
    t = settings.topics
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        group_id=None,
        enable_auto_commit=False,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    try:
        tps = [
            TopicPartition(topic, p)
            for topic in (t.predictions, t.ground_truth)
            for p in sorted(consumer.partitions_for_topic(topic) or await _meta(consumer, topic))
        ]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)
        began = time.perf_counter()
        events = 0
        while True:
            batch = await consumer.getmany(timeout_ms=300, max_records=5000)
            if not batch:
                positions = [await consumer.position(tp) for tp in tps]
                if all(pos >= ends[tp] for pos, tp in zip(positions, tps, strict=True)):
                    break
                continue
            for records in batch.values():
                for rec in records:
                    doc = orjson.loads(rec.value)
                    events += len(doc) if isinstance(doc, list) else 1
        return events, time.perf_counter() - began
    finally:
        await consumer.stop()


async def _meta(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    await consumer.topics()
    return consumer.partitions_for_topic(topic) or set()


async def run(models: int, per_model: int, repeat: int) -> dict[str, float]:
    broker = EmbeddedBroker().start()
    try:
        settings = Settings(
            broker=broker.url,
            partitions=4,
            topics=Topics(predictions="bench-predictions", ground_truth="bench-ground-truth"),
        )
        await ensure_topics(settings)
        scenario = build_scenario(models=models, predictions_per_model=per_model, seed=3)
        await produce_scenario(broker.bootstrap, scenario, settings, malformed=False)
        combos = expand_sweeps(DetectorSettings(), [])
        base_rates, replay_rates, peak = [], [], 0
        for _ in range(repeat):
            events, seconds = await plain_read(settings)
            base_rates.append(events / seconds)
            result = await replay(settings, combos, start_ms=None, end_ms=None)
            replay_rates.append(result.events / result.elapsed_s)
        # memory in a separate pass: tracing allocations slows Python down several times
        tracemalloc.start()
        await replay(settings, combos, start_ms=None, end_ms=None)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return {
            "events": float(len(scenario.events)),
            "plain_aiokafka_events_per_s": max(base_rates),
            "replay_events_per_s": max(replay_rates),
            "ratio": max(replay_rates) / max(base_rates),
            "replay_peak_traced_mib": peak / 2**20,
            "alerts": float(len(result.alerts["default"])),
        }
    finally:
        broker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", type=int, default=24)
    parser.add_argument("--predictions-per-model", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    figures = asyncio.run(run(args.models, args.predictions_per_model, args.repeat))
    OUT.write_text(json.dumps(figures, indent=2) + "\n")
    print(
        f"replay {figures['replay_events_per_s']:,.0f} events/s, plain aiokafka read "
        f"{figures['plain_aiokafka_events_per_s']:,.0f} events/s, ratio {figures['ratio']:.3f} "
        f"({figures['events']:,.0f} events; replay peak traced memory "
        f"{figures['replay_peak_traced_mib']:.1f} MiB)"
    )


if __name__ == "__main__":
    main()
