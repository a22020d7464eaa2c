"""Model versions with a real worker on the real broker: a canary that errs more raises
``version_regression`` (after ``version_changed``) naming both versions, a better version
and a stable model raise none, and replay of the same topics gives the same alert ids."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import pytest
from test_pipeline import isolated_settings, run_scenario, worker_for

from detectors.config import DetectorSettings
from streams.contract.alerts import LIFECYCLE_KINDS
from streams.dev.simulate import ModelSpec, Scenario
from streams.replay.backtest import expand_sweeps
from streams.replay.source import replay
from streams.topology import ensure_topics

pytestmark = [pytest.mark.integration, pytest.mark.slow]

H = 3_600_000
START = 1_795_000_000_000
SPAN_H = 12
SWITCH_H = 4
EVERY_MS = 10_000  # one prediction per 10 s per model, on average
# model -> (v2's share of the traffic from SWITCH_H on, v1's error rate, v2's)
MODELS = {
    "canary": (0.3, 0.05, 0.30),  # a canary on 30 %, 25 points worse
    "better": (1.0, 0.10, 0.02),  # a switch to a better version
    "stable": (0.0, 0.05, 0.05),  # never changes version
}


def build() -> Scenario:
    rng = random.Random(17)
    timed: list[tuple[int, int, str, dict[str, Any]]] = []
    sc = Scenario([ModelSpec(n, "1.0.0", MODELS[n][1]) for n in MODELS], START, START + SPAN_H * H)
    for name, (share, old_rate, new_rate) in MODELS.items():
        ts, i = START, 0
        while True:
            ts += int(rng.expovariate(1 / EVERY_MS)) + 1
            if ts >= START + SPAN_H * H:
                break
            i += 1
            new = ts >= START + SWITCH_H * H and rng.random() < share
            version, rate = ("2.0.0", new_rate) if new else ("1.0.0", old_rate)
            pid = f"{name}-{i:06d}"
            prediction = int(rng.random() < 0.3)
            event = {
                "prediction_id": pid,
                "model_id": name,
                "model_version": version,
                "timestamp": ts,
                "prediction": prediction,
            }
            timed.append((ts, len(timed), "p", event))
            sc.predictions += 1
            arrival = ts + int(rng.expovariate(1 / 300_000))  # labels ~5 min later
            label = prediction if rng.random() >= rate else 1 - prediction
            label_event = {"prediction_id": pid, "label": label, "timestamp": arrival}
            timed.append((arrival, len(timed), "g", label_event))
            sc.labels += 1
            sc.labelled_predictions += 1
    timed.sort(key=lambda item: (item[0], item[1]))
    sc.events = [(kind, event) for _, _, kind, event in timed]  # type: ignore[misc]
    return sc


def test_a_worse_canary_raises_a_regression_and_replay_agrees(
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
    lifecycle = [a for a in alerts if a["kind"] in LIFECYCLE_KINDS]

    def of(model: str, kind: str) -> list[dict[str, Any]]:
        return [a for a in lifecycle if a["model_id"] == model and a["kind"] == kind]

    (changed,) = of("canary", "version_changed")
    assert changed["severity"] == "info" and changed["model_version"] == "2.0.0"
    assert changed["before"] == {"model_version": "1.0.0"}
    assert (changed["event_time_ms"] - START) / H >= SWITCH_H
    (regression,) = of("canary", "version_regression")
    assert regression["severity"] in ("warning", "critical")
    assert regression["model_version"] == "2.0.0"
    assert regression["before"]["model_version"] == "1.0.0"
    assert regression["after"]["compared"] == "concurrent"
    assert regression["after"]["error_rate"] > regression["before"]["error_rate"] + 0.1
    assert min(regression["before"]["count"], regression["after"]["count"]) >= 200
    assert "roll back to 1.0.0?" in regression["message"]
    assert regression["event_time_ms"] > changed["event_time_ms"]

    # any degradation of the canary model after the switch names both versions
    for a in alerts:
        if a["model_id"] == "canary" and a["kind"] == "performance_degradation":
            assert a["versions"]["before"] == "1.0.0" and a["versions"]["after"] == "2.0.0", a

    assert len(of("better", "version_changed")) == 1
    assert of("better", "version_regression") == [], "a better version raised a regression"
    assert [a for a in lifecycle if a["model_id"] == "stable"] == [], "a stable model did"

    (combo,) = expand_sweeps(DetectorSettings(), [])
    result = asyncio.run(replay(settings, [combo], start_ms=None, end_ms=None))
    replayed = {a["alert_id"] for a in result.alerts["default"] if a["kind"] in LIFECYCLE_KINDS}
    assert replayed == {a["alert_id"] for a in lifecycle}
