"""Small seeded input streams for the engine tests, and what a run of the engine found.

A scenario is a few models' predictions and labels on 2-4 partitions of each input topic,
as Kafka records: placed the way different producers place them (murmur2 of the key like
Java and aiokafka clients, CRC32 like librdkafka's default, anywhere when unkeyed), one
event per message or a few in a JSON array, with labels before and after their
predictions, duplicates, labels that never come and a malformed message. In every
partition an event trails the newest before it by less than ``LAG_MS``: exactly the
ordering the engine's watermarks assume, used to the full.
"""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from detectors.config import AdwinConfig, DetectorSettings, MonitorConfig, PageHinkleyConfig
from streams.contract.internal import Kind
from streams.engine.join_step import InputRecord
from streams.engine.local import LocalTopology
from streams.engine.partitioning import partition_for
from streams.engine.rules import InputRules

LAG_MS = 60_000
BASE_MS = 1_795_000_000_000  # 2026-11-18
TTL_MS = 7 * 86_400_000
TOPICS: dict[Kind, str] = {"p": "predictions", "g": "ground-truth"}
DETECTED_AT = datetime(2026, 12, 1, tzinfo=UTC)

SENSITIVE = DetectorSettings(
    MonitorConfig(
        task="classification",
        adwin=AdwinConfig(delta=0.2, clock=1, grace_period=4, min_window_length=2),
        page_hinkley=PageHinkleyConfig(min_instances=4, delta=0.05, threshold=1.5, after_window=8),
    )
)
"""Detectors that fire on a few dozen outcomes, so small scenarios raise alerts."""


@dataclass
class Scenario:
    partitions: int
    logs: dict[tuple[Kind, int], list[InputRecord]]  # per topic partition, offset order

    def records(self) -> list[InputRecord]:
        return [rec for log in self.logs.values() for rec in log]


def build(
    seed: int,
    *,
    partitions: int,
    models: int = 3,
    predictions: int = 150,
    base_ms: int = BASE_MS,
    arrays: bool = True,
) -> Scenario:
    """A seeded scenario; models ``m0`` and ``m1`` go from 5 % to 70 % error halfway."""
    rng = random.Random(seed)  # noqa: S311 - test data
    spread = LAG_MS  # an event is sent up to a lag after its time: disorder up to the lag
    emissions: list[tuple[int, int, Kind, dict[str, Any]]] = []  # (emitted at, seq, kind, event)

    def emit(kind: Kind, event: dict[str, Any], times: int = 1) -> None:
        for _ in range(times):  # a duplicate is the same event sent again, later
            at = event["timestamp"] + rng.randrange(spread)
            emissions.append((at, len(emissions), kind, event))

    clock = base_ms
    for i in range(predictions):
        clock += rng.randrange(8_000)
        model = rng.randrange(models)
        rate = 0.7 if model < 2 and i >= predictions // 2 else 0.05
        pid = f"m{model}-{i:04d}"
        prediction = rng.randrange(2)
        label = 1 - prediction if rng.random() < rate else prediction
        p = {"prediction_id": pid, "model_id": f"m{model}", "model_version": "1",
             "timestamp": clock, "prediction": prediction}  # fmt: skip
        emit("p", p, 2 if rng.random() < 0.05 else 1)
        fate = rng.random()
        if fate < 0.1:
            continue  # never labelled
        delay = -rng.randrange(1, 20_000) if fate < 0.25 else rng.randrange(1, 600_000)
        g = {"prediction_id": pid, "label": label, "timestamp": clock + delay}
        emit("g", g, 2 if rng.random() < 0.05 else 1)
    emissions.sort(key=lambda e: (e[0], e[1]))

    placed: dict[tuple[Kind, int], list[tuple[int, bytes | None, dict[str, Any]]]] = {
        (kind, q): [] for kind in TOPICS for q in range(partitions)
    }
    for at, _, kind, event in emissions:
        key = event["prediction_id"].encode()
        style = rng.random()
        if style < 0.5:
            q = partition_for(key, partitions)  # murmur2: Java, aiokafka, our producer
        elif style < 0.8:
            q = zlib.crc32(key) % partitions  # librdkafka's default for keyed messages
        else:
            key, q = None, rng.randrange(partitions)  # unkeyed
        placed[(kind, q)].append((at, key, event))

    messages: dict[tuple[Kind, int], list[tuple[bytes | None, bytes, int]]] = {}
    for (kind, q), items in placed.items():
        out = messages[(kind, q)] = []  # (key, value, record timestamp)
        i = 0
        while i < len(items):
            size = rng.randrange(1, 5) if arrays and rng.random() < 0.3 else 1
            chunk = items[i : i + size]
            i += len(chunk)
            events = [event for _, _, event in chunk]
            value = orjson.dumps(events if len(events) > 1 else events[0])
            out.append((chunk[0][1] if size == 1 else None, value, chunk[-1][0]))
    bad = messages[("p", rng.randrange(partitions))]
    at = rng.randrange(len(bad) + 1)
    bad.insert(at, (None, b"{not json", bad[at - 1][2] if at else base_ms))
    logs = {
        (kind, q): [
            InputRecord(kind, TOPICS[kind], q, first + n, key, value, stamp)
            for n, (key, value, stamp) in enumerate(out)
        ]
        for (kind, q), out in messages.items()
        for first in [rng.randrange(100)]  # a replay starts anywhere
    }
    return Scenario(partitions, logs)


def topology(partitions: int, *, rules: InputRules | None = None, **kwargs: Any) -> LocalTopology:
    return LocalTopology(
        partitions,
        detectors=[SENSITIVE],
        ttl_ms=TTL_MS,
        rules=rules or InputRules(lag_ms=LAG_MS),
        **kwargs,
    )


def found(topo: LocalTopology) -> list[tuple[Any, ...]]:
    """What configuration 0 detected, in a comparable form (alert ids included)."""
    return [
        (
            a["model_id"],
            a["alert_id"],
            a["detector"],
            a["outcome_index"],
            a["event_time_ms"],
            a["before"],
            a["after"],
        )
        for a in topo.alerts(0, DETECTED_AT)
    ]


def outcome_counts(topo: LocalTopology) -> dict[str, int]:
    return {m: c["outcomes"] for m, c in sorted(topo.per_model.items())}


def reference(scenario: Scenario, **kwargs: Any) -> LocalTopology:
    """The canonical run: every record fed at once, then the end of the stream."""
    topo = topology(scenario.partitions, **kwargs)
    topo.feed(scenario.records())
    topo.finish()
    return topo
