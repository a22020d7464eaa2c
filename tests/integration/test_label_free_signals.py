"""Label-free and liveness signals with a real worker on the real broker: each fires on its
cause and resolves when the cause goes away, a steady model raises none, replay of the
same topics gives the same alert ids, and the whole stream stopping raises the fleet
``model_silent`` on the wall clock."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from typing import Any

import pytest
from test_pipeline import isolated_settings, run_scenario, worker_for

from detectors.config import DetectorSettings
from streams.dev.demo import AlertCollector, produce_scenario
from streams.dev.simulate import ModelSpec, Scenario
from streams.replay.backtest import expand_sweeps
from streams.replay.source import replay
from streams.topology import ensure_topics

pytestmark = [pytest.mark.integration, pytest.mark.slow]

H = 3_600_000
START = 1_795_000_000_000
SPAN_H = 24
EVERY_MS = 30_000  # one prediction per 30 s per model, on average
LABEL_FREE = (
    "prediction_drift",
    "labels_missing",
    "model_silent",
    "input_quality",
    "estimated_degradation",
)


def build() -> tuple[Scenario, int]:
    """Six models over 24 h of event time, each with one cause that comes and goes;
    returns the scenario and its number of invalid events."""
    rng = random.Random(3)
    timed: list[tuple[int, int, str, dict[str, Any]]] = []
    names = ("steady", "labels-gap", "quiet", "bad-input", "drifting", "unsure")
    sc = Scenario([ModelSpec(n, "1.0.0", 0.05) for n in names], START, START + SPAN_H * H)
    invalid = 0
    for name in names:
        ts = START
        i = 0
        while True:
            ts += int(rng.expovariate(1 / EVERY_MS))
            if ts >= START + SPAN_H * H:
                break
            hour = (ts - START) / H
            i += 1
            if name == "quiet" and 8 <= hour < 10:
                continue  # stops serving for two hours
            pid = f"{name}-{i:06d}"
            if name == "bad-input" and 6 <= hour < 9 and rng.random() < 0.2:
                bad = {"prediction_id": pid, "model_id": name, "prediction": {"x": 1}}
                timed.append((ts, len(timed), "p", bad))
                invalid += 1
                continue
            positive_rate = 0.5 if name == "drifting" and 12 <= hour < 17 else 0.2
            unsure = name == "unsure" and 12 <= hour < 18
            prediction = rng.random() < positive_rate
            w = rng.uniform(0, 0.6 if unsure else 0.1)  # calibrated: wrong with probability w
            wrong = rng.random() < w
            event = {
                "prediction_id": pid,
                "model_id": name,
                "model_version": "1.0.0",
                "timestamp": ts,
                "prediction": int(prediction),
                "score": round(1 - w if prediction else w, 4),
            }
            timed.append((ts, len(timed), "p", event))
            sc.predictions += 1
            arrival = ts + int(rng.expovariate(1 / 300_000))  # labels ~5 min later
            if name == "labels-gap" and 10 * H <= arrival - START < 14 * H:
                continue  # the label pipeline is down from 10 h to 14 h
            label = int(prediction != wrong)
            timed.append(
                (
                    arrival,
                    len(timed),
                    "g",
                    {"prediction_id": pid, "label": label, "timestamp": arrival},
                )
            )
            sc.labels += 1
            sc.labelled_predictions += 1
    timed.sort(key=lambda item: (item[0], item[1]))
    sc.events = [(kind, event) for _, _, kind, event in timed]  # type: ignore[misc]
    return sc, invalid


def hours(a: dict[str, Any]) -> float:
    return (a["event_time_ms"] - START) / H


def test_each_signal_fires_on_its_cause_resolves_and_replay_agrees(
    kafka_bootstrap: str, redis_url: str, tmp_path: Path
) -> None:
    settings = isolated_settings(kafka_bootstrap, redis_url, tmp_path)
    asyncio.run(ensure_topics(settings))
    scenario, invalid = build()
    worker = worker_for(settings, tmp_path).start()
    try:
        _, alerts, _ = asyncio.run(
            run_scenario(settings, kafka_bootstrap, scenario, worker, dlq=invalid, malformed=False)
        )
    finally:
        assert worker.stop() == 0, worker.log_tail()
    signals = [a for a in alerts if a["kind"] in LABEL_FREE]

    def of(model: str, kind: str, status: str = "firing") -> list[dict[str, Any]]:
        return sorted(
            (
                a
                for a in signals
                if a["model_id"] == model and a["kind"] == kind and a["status"] == status
                and a["detector"] != "reconcile"
            ),
            key=hours,
        )  # fmt: skip

    assert not [a for a in signals if a["model_id"] == "steady"], "a steady model raised one"

    (fired,) = of("labels-gap", "labels_missing")
    (back,) = of("labels-gap", "labels_missing", "resolved")
    assert 10 < hours(fired) < 13 and hours(fired) < hours(back) <= 17, (fired, back)
    assert fired["severity"] in ("warning", "critical")

    (fired,) = of("quiet", "model_silent")
    (back,) = of("quiet", "model_silent", "resolved")
    assert 8 < hours(fired) < 8.5 and 10 <= hours(back) < 10.1, (fired, back)
    assert fired["alert_id"] != back["alert_id"]

    fired, *grown = of("bad-input", "input_quality")  # at 20 % it is critical, at once or later
    (back,) = of("bad-input", "input_quality", "resolved")
    # measured over 400 events (3.3 h at this model's pace) before it goes out
    assert 6 <= hours(fired) < 10 and 9 <= hours(back) < 20, (fired, back)
    assert [a["severity"] for a in [fired, *grown]][-1] == "critical"

    drift = [a for a in of("drifting", "prediction_drift") if a["signal"] == "positive_rate"]
    assert drift and 12 <= hours(drift[0]) < 16.5, drift  # 400 predictions measure it
    assert drift[-1]["severity"] == "critical" and drift[-1]["after"]["mean"] > 0.4, drift
    (back,) = of("drifting", "prediction_drift", "resolved")  # every drifted signal is back
    assert 17 <= hours(back) < 24 and back["after"]["mean"] < 0.35, back
    assert back["alert_id"] not in {a["alert_id"] for a in of("drifting", "prediction_drift")}

    fired, *grown = of("unsure", "estimated_degradation")
    assert len(grown) <= 1 and all(a["severity"] == "critical" for a in grown), grown
    (back,) = of("unsure", "estimated_degradation", "resolved")
    assert 12 <= hours(fired) < 13 and 18 <= hours(back) < 22.5, (fired, back)
    degradations = [
        a for a in alerts if a["model_id"] == "unsure" and a["kind"] == "performance_degradation"
    ]
    assert not degradations or hours(fired) <= min(map(hours, degradations))

    for model in ("labels-gap", "quiet", "bad-input"):  # each raised only its own kind
        kinds = {a["kind"] for a in signals if a["model_id"] == model}
        assert len(kinds) == 1, (model, kinds)

    (combo,) = expand_sweeps(DetectorSettings(), [])
    result = asyncio.run(replay(settings, [combo], start_ms=None, end_ms=None))
    replayed = {a["alert_id"] for a in result.alerts["default"] if a["kind"] in LABEL_FREE}
    assert replayed == {a["alert_id"] for a in signals}


def test_the_whole_stream_stopping_raises_and_resolves_the_fleet_alert(
    kafka_bootstrap: str, redis_url: str, tmp_path: Path
) -> None:
    """Wall clock, live only: no prediction reaches the topic for stream_silent_s."""
    settings = isolated_settings(kafka_bootstrap, redis_url, tmp_path)
    asyncio.run(ensure_topics(settings))
    scenario, _ = build()
    first = Scenario(scenario.models, START, START + H, scenario.events[:200])
    then = Scenario(scenario.models, START, START + H, scenario.events[200:400])
    worker = worker_for(settings, tmp_path)
    worker.env["WATCHKEEPER_STREAM_SILENT_S"] = "3"
    worker.start()

    async def run() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        collector = await AlertCollector(kafka_bootstrap, settings.topics.alerts).start()
        try:
            await produce_scenario(kafka_bootstrap, first, settings, malformed=False)
            fired = await wait_for(collector, "firing", worker.alive)
            await produce_scenario(kafka_bootstrap, then, settings, malformed=False)
            back = await wait_for(collector, "resolved", worker.alive)
        finally:
            await collector.stop()
        return fired, back

    try:
        fired, back = asyncio.run(run())
    finally:
        assert worker.stop() == 0, worker.log_tail()
    (a,) = fired
    assert a["model_id"] == "*" and a["severity"] == "critical" and a["signal"] == "stream"
    assert "watchkeeper worker ready: group" in worker.log_path.read_text()  # default level
    (b,) = back
    assert b["alert_id"] != a["alert_id"] and b["status"] == "resolved"


async def wait_for(collector: AlertCollector, status: str, alive: Any) -> list[dict[str, Any]]:
    """The fleet model_silent alerts with ``status``, once there is one (60 s at most)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = [
            a
            for a in collector.alerts
            if a["kind"] == "model_silent" and a["model_id"] == "*" and a["status"] == status
        ]
        if found:
            return found
        assert alive(), "the worker died"
        await asyncio.sleep(0.2)
    raise AssertionError(f"no fleet model_silent alert with status {status} within 60 s")
