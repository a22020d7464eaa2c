"""Input signals with a real worker on the real broker: a model whose feature shifts raises
``feature_drift`` naming that feature, a model whose field is renamed upstream raises one
``schema_change`` naming both keys, a steady model with the same features raises neither,
and replay of the same topics gives the same alert ids."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import pytest
from test_pipeline import isolated_settings, run_scenario, worker_for

from detectors.config import DetectorSettings
from streams.dev.simulate import ModelSpec, Scenario
from streams.replay.backtest import expand_sweeps
from streams.replay.source import replay
from streams.topology import ensure_topics

pytestmark = [pytest.mark.integration, pytest.mark.slow]

H = 3_600_000
START = 1_795_000_000_000
SPAN_H = 12
CHANGE_H = 5
EVERY_MS = 15_000  # one prediction per 15 s per model, on average: ~2,900 per model
INPUT_KINDS = ("feature_drift", "schema_change")


def build() -> Scenario:
    """Three models with the same four features; ``moving``'s amount rises by 2.5 sd from
    hour 5, ``renamed``'s ``amount`` is sent as ``amount_eur`` from hour 5."""
    rng = random.Random(17)
    names = ("steady", "moving", "renamed")
    sc = Scenario([ModelSpec(n, "1.0.0", 0.05) for n in names], START, START + SPAN_H * H)
    timed: list[tuple[int, int, str, dict[str, Any]]] = []
    for name in names:
        ts = START
        i = 0
        while True:
            ts += int(rng.expovariate(1 / EVERY_MS))
            if ts >= START + SPAN_H * H:
                break
            i += 1
            changed = ts >= START + CHANGE_H * H
            mean = 195.0 if name == "moving" and changed else 120.0  # sd 30: +2.5 sd
            features: dict[str, Any] = {
                "amount": round(rng.gauss(mean, 30.0), 2),
                "country": rng.choice(("nl", "de", "fr", "be")),
                "age": rng.randint(18, 90),
                "vip": rng.random() < 0.1,
            }  # fmt: skip
            if name == "renamed" and changed:
                features["amount_eur"] = features.pop("amount")
            pid = f"{name}-{i:06d}"
            prediction = int(rng.random() < 0.2)
            event = {
                "prediction_id": pid,
                "model_id": name,
                "model_version": "1.0.0",
                "timestamp": ts,
                "prediction": prediction,
                "score": round(rng.uniform(0.6, 0.9) if prediction else rng.uniform(0.1, 0.4), 3),
                "features": features,
            }
            timed.append((ts, len(timed), "p", event))
            sc.predictions += 1
            arrival = ts + int(rng.expovariate(1 / 120_000))
            label = {"prediction_id": pid, "label": prediction, "timestamp": arrival}
            timed.append((arrival, len(timed), "g", label))
            sc.labels += 1
            sc.labelled_predictions += 1
    timed.sort(key=lambda item: (item[0], item[1]))
    sc.events = [(kind, event) for _, _, kind, event in timed]  # type: ignore[misc]
    return sc


def hours(a: dict[str, Any]) -> float:
    return (a["event_time_ms"] - START) / H


def test_feature_drift_and_schema_change_fire_on_their_cause_and_replay_agrees(
    kafka_bootstrap: str, redis_url: str, tmp_path: Path
) -> None:
    settings = isolated_settings(kafka_bootstrap, redis_url, tmp_path)
    asyncio.run(ensure_topics(settings))
    scenario = build()
    worker = worker_for(settings, tmp_path).start()
    try:
        _, alerts, _ = asyncio.run(
            run_scenario(settings, kafka_bootstrap, scenario, worker, dlq=0, malformed=False)
        )
    finally:
        assert worker.stop() == 0, worker.log_tail()
    inputs = [a for a in alerts if a["kind"] in INPUT_KINDS]

    assert not [a for a in inputs if a["model_id"] == "steady"], "a steady model raised one"

    drift = [a for a in inputs if a["model_id"] == "moving"]
    assert drift and {(a["kind"], a["signal"]) for a in drift} == {("feature_drift", "amount")}
    first = min(drift, key=hours)
    assert CHANGE_H <= hours(first) < CHANGE_H + 3, first  # 400 values measure it first
    assert first["severity"] == "critical" and first["after"]["mean"] > 170, first
    assert first["status"] == "firing" and "'amount'" in first["message"]

    (change,) = [a for a in inputs if a["model_id"] == "renamed"]
    assert change["kind"] == "schema_change" and change["severity"] == "critical"
    assert change["after"]["removed"] == ["amount"] and change["after"]["added"] == ["amount_eur"]
    # judged over windows of 500 events (about 2 h here): within two of them
    assert CHANGE_H <= hours(change) < CHANGE_H + 2 * 500 * EVERY_MS / H + 0.5, change

    (combo,) = expand_sweeps(DetectorSettings(), [])
    result = asyncio.run(replay(settings, [combo], start_ms=None, end_ms=None))
    replayed = {a["alert_id"] for a in result.alerts["default"] if a["kind"] in INPUT_KINDS}
    assert replayed == {a["alert_id"] for a in inputs}
