"""Replay equals the live stream: the same events give the same alert ids, read back from
the real broker by time range, with labels early, late, duplicated and never."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
import pytest
from redis.asyncio import Redis
from test_pipeline import isolated_settings, read_topic, run_scenario, worker_for

from detectors.config import DetectorSettings
from streams.cli.main import main as cli
from streams.dev.demo import MALFORMED
from streams.dev.simulate import build_scenario
from streams.replay.backtest import expand_sweeps
from streams.replay.source import replay
from streams.store.health import HealthStore
from streams.topology import ensure_topics

pytestmark = [pytest.mark.integration, pytest.mark.slow]


async def live_late_outcomes(settings) -> int:  # type: ignore[no-untyped-def]
    redis = Redis.from_url(settings.redis_url)
    try:
        return await HealthStore(redis, settings.redis_prefix).late_outcomes()
    finally:
        await redis.aclose()


def test_replay_gives_the_live_alert_ids_and_the_cli_writes_and_publishes_them(
    kafka_bootstrap: str, redis_url: str, tmp_path: Path
) -> None:
    settings = isolated_settings(kafka_bootstrap, redis_url, tmp_path)
    asyncio.run(ensure_topics(settings))
    scenario = build_scenario(models=8, predictions_per_model=2500, degraded=3, seed=5)
    published_from = int(time.time() * 1000) - 1000
    worker = worker_for(settings, tmp_path).start()
    try:
        _, live_alerts, _ = asyncio.run(
            run_scenario(settings, kafka_bootstrap, scenario, worker, dlq=len(MALFORMED))
        )
        late = asyncio.run(live_late_outcomes(settings))
    finally:
        assert worker.stop() == 0, worker.log_tail()
    assert late == 0, "the live worker saw outcomes out of canonical order"
    live = {a["alert_id"]: a for a in live_alerts if a["kind"] != "orphaned_model"}
    assert any(a["kind"] == "performance_degradation" for a in live.values())

    # the pure engine, straight from the topics, whole range
    (combo,) = expand_sweeps(DetectorSettings(), [])
    result = asyncio.run(replay(settings, [combo], start_ms=None, end_ms=None))
    replayed = {a["alert_id"]: a for a in result.alerts["default"]}
    assert set(replayed) == set(live)
    for alert_id, a in replayed.items():
        for key in ("model_id", "detector", "outcome_index", "event_time_ms", "before", "after"):
            assert a[key] == live[alert_id][key], (alert_id, key)
    assert result.late_outcomes == 0
    assert result.dead_letters == len(MALFORMED)
    assert sum(m.joined for m in result.models.values()) == scenario.labelled_predictions

    # the command an analyst types: a time range, a sweep, files, and a topic of their own
    out = tmp_path / "out"
    t = settings.topics
    argv = [
        "replay", "--broker", settings.broker, "--from", str(published_from),
        "--sweep", "adwin.delta=0.002,0.0001", "--out", str(out),
        "--publish", f"{t.alerts}-replayed",
    ]  # fmt: skip
    env = {
        "WATCHKEEPER_TOPIC_PREDICTIONS": t.predictions,
        "WATCHKEEPER_TOPIC_GROUND_TRUTH": t.ground_truth,
    }
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        assert cli(argv) == 0
    document = orjson.loads((out / "results.json").read_text())
    assert document["events"] == result.events
    plots = sorted((out / "plots").glob("*.png"))
    assert len(plots) == len(scenario.models)
    republished = asyncio.run(read_topic(kafka_bootstrap, f"{t.alerts}-replayed", len(live)))
    assert {orjson.loads(r.value)["alert_id"] for r in republished} == set(live)
