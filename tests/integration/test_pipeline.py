"""A seeded scenario through a real worker process on the real broker and Redis."""

from __future__ import annotations

import asyncio
import base64
import itertools
import re
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from helpers.pipeline import settings_env
from redis.asyncio import Redis

from streams.dev.demo import (
    MALFORMED,
    AlertCollector,
    produce_scenario,
    register_owners,
    wait_for_pipeline,
)
from streams.dev.embedded import EmbeddedRedis
from streams.dev.process import WorkerProcess
from streams.dev.simulate import Scenario, build_scenario
from streams.settings import Settings, Topics
from streams.store.health import HealthStore
from streams.topology import ensure_topics

pytestmark = [pytest.mark.integration, pytest.mark.slow]

_ids = itertools.count()
# what Faust, mode and aiokafka say at info: their services' starts and stops, subscriptions
FRAMEWORK_CHATTER = (
    r"\[\^-*(Worker|Monitor|Producer|Conductor|Recovery|Fetcher|AgentManager|TableManager)\]"
    r"|Updating subscribed topics|Joined group"
)


def isolated_settings(kafka_bootstrap: str, redis_url: str, tmp_path: Path) -> Settings:
    """Fresh topics, consumer group and Redis keys for one test."""
    n = f"{next(_ids)}-{tmp_path.name[-12:]}".replace("_", "-")
    topics = Topics(
        predictions=f"pred-{n}",
        ground_truth=f"truth-{n}",
        outcomes=f"outcomes-{n}",
        alerts=f"alerts-{n}",
        dlq=f"dlq-{n}",
        rekey=f"rekey-{n}",
    )
    return Settings(
        broker=f"kafka://{kafka_bootstrap}",
        redis_url=redis_url,
        app_id=f"wk-{n}",
        topics=topics,
        partitions=2,
        redis_prefix=f"t{n}:",
        data_dir=tmp_path / "data",
    )


def worker_for(settings: Settings, tmp_path: Path, name: str = "worker") -> WorkerProcess:
    env = settings_env(settings)
    return WorkerProcess(
        settings.broker,
        settings.redis_url,
        tmp_path / f"{name}.log",
        env=env,
        args=["--app-id", settings.app_id, "--data-dir", str(settings.data_dir)],
    )


async def read_topic(bootstrap: str, topic: str, expected: int, timeout: float = 30) -> list:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    records: list[Any] = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(records) < expected and loop.time() < deadline:
            for batch in (await consumer.getmany(timeout_ms=300)).values():
                records.extend(batch)
    finally:
        await consumer.stop()
    return records


async def uncommitted(settings: Settings, timeout: float) -> dict[str, int]:
    """Records of the input and outcomes topics not yet committed by the worker's group,
    per topic-partition, once there are none (or ``timeout`` passed)."""
    t = settings.topics
    # a consumer in the worker's group that never joins it: it only reads offsets
    reader = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        group_id=settings.app_id,
        enable_auto_commit=False,
    )
    await reader.start()
    try:
        tps = [
            TopicPartition(topic, p)
            for topic in (t.predictions, t.ground_truth, t.outcomes)
            for p in range(settings.partitions)
        ]
        ends = await reader.end_offsets(tps)
        deadline = time.monotonic() + timeout
        while True:
            behind = {}
            for tp in tps:
                done = await reader.committed(tp) or 0
                if done < ends[tp]:
                    behind[f"{tp.topic}[{tp.partition}]"] = ends[tp] - done
            if not behind or time.monotonic() > deadline:
                return behind
            await asyncio.sleep(0.5)
    finally:
        await reader.stop()


async def run_scenario(
    settings: Settings,
    bootstrap: str,
    scenario: Scenario,
    worker: WorkerProcess,
    *,
    dlq: int,
    malformed: bool = True,
) -> tuple[dict[str, int], list[dict[str, Any]], dict[str, tuple[dict, dict]]]:
    """Publish, wait until the worker drained it; totals, alerts and per-model views."""
    collector = await AlertCollector(bootstrap, settings.topics.alerts).start()
    redis = Redis.from_url(settings.redis_url)
    health = HealthStore(redis, settings.redis_prefix)
    try:
        await produce_scenario(bootstrap, scenario, settings, batch_size=200, malformed=malformed)
        totals = await wait_for_pipeline(
            health,
            collector,
            joined=scenario.labelled_predictions,
            dlq=dlq,
            timeout=120,
            alive=worker.alive,
        )
        views = {
            m.model_id: (await health.model_counters(m.model_id), await health.health(m.model_id))
            for m in scenario.models
        }
    finally:
        await collector.stop()
        await redis.aclose()
    return totals, collector.alerts, views


async def register_owners_with(settings: Settings, scenario: Scenario) -> str:
    redis = Redis.from_url(settings.redis_url)
    try:
        return await register_owners(redis, settings, scenario, "http://127.0.0.1:9")
    finally:
        await redis.aclose()


def test_degraded_models_alert_after_their_change_and_stable_ones_stay_quiet(
    kafka_bootstrap: str, redis_url: str, tmp_path: Path
) -> None:
    settings = isolated_settings(kafka_bootstrap, redis_url, tmp_path)
    asyncio.run(ensure_topics(settings))
    scenario = build_scenario(models=10, predictions_per_model=2500, degraded=2, seed=11)
    orphan = asyncio.run(register_owners_with(settings, scenario))
    worker = worker_for(settings, tmp_path).start()
    try:
        totals, alerts, _ = asyncio.run(
            run_scenario(settings, kafka_bootstrap, scenario, worker, dlq=len(MALFORMED))
        )
        dlq_records = asyncio.run(read_topic(kafka_bootstrap, settings.topics.dlq, len(MALFORMED)))
        # every input and outcomes record was acked: the group's offsets reach the log end
        behind = asyncio.run(uncommitted(settings, timeout=30))
    finally:
        code = worker.stop()
    assert code == 0, worker.log_tail()
    assert behind == {}, f"offsets not committed up to the end: {behind}"

    assert totals["joined"] == scenario.labelled_predictions
    assert totals["outcomes"] == scenario.labelled_predictions
    assert totals["predictions"] == scenario.predictions
    assert totals["duplicate_labels"] == scenario.duplicate_labels
    assert totals["dlq"] == len(MALFORMED)

    degradations = [a for a in alerts if a["kind"] == "performance_degradation"]
    by_model = Counter(a["model_id"] for a in degradations)
    degraded = {m.model_id: m for m in scenario.degraded}
    assert set(by_model) == set(degraded), f"alerts on {dict(by_model)}"
    for a in degradations:
        spec = degraded[a["model_id"]]
        assert spec.change_at_ms is not None
        assert a["event_time_ms"] >= spec.change_at_ms
        assert a["after"]["error_rate"] > a["before"]["error_rate"]
        assert a["model_version"] == spec.version
        assert a["severity"] in {"warning", "critical"}
    assert len({a["alert_id"] for a in alerts}) == len(alerts)
    # owners as registered, and exactly one orphaned_model alert, for the unowned model
    assert all(
        a["owner"] == f"team-{a['model_id'].split('-')[0]}" and a["runbook"] for a in degradations
    )
    orphaned = [a for a in alerts if a["kind"] == "orphaned_model"]
    assert [a["model_id"] for a in orphaned] == [orphan]

    assert len(dlq_records) == len(MALFORMED)
    originals = sorted(base64.b64decode(orjson.loads(r.value)["original_b64"]) for r in dlq_records)
    envelopes = [orjson.loads(r.value) for r in dlq_records]
    assert all(e["reason"] and e["detail"] for e in envelopes)
    element = orjson.dumps(orjson.loads(MALFORMED[2][1])[0])
    expected = sorted(v if i != 2 else element for i, (_, v) in enumerate(MALFORMED))
    assert originals == expected


@pytest.mark.separate  # 20-40 s: in .ci/run's own step, to keep the suite under 10 min
def test_restarted_worker_resumes_join_buffers_and_detector_state(
    kafka_bootstrap: str, redis_url: str, tmp_path: Path
) -> None:
    settings = isolated_settings(kafka_bootstrap, redis_url, tmp_path)
    asyncio.run(ensure_topics(settings))
    full = build_scenario(models=4, predictions_per_model=1500, degraded=1, seed=5)
    half = len(full.events) // 2
    first = Scenario(full.models, full.start_ms, full.end_ms, full.events[:half])
    second = Scenario(full.models, full.start_ms, full.end_ms, full.events[half:])
    # labels in the second half whose prediction is in the first must join after restart
    first_pids = {e["prediction_id"] for k, e in first.events if k == "p"}
    first_labels = {e["prediction_id"] for k, e in first.events if k == "g"}
    joined_first = len(first_pids & first_labels)
    assert any(
        e["prediction_id"] in first_pids - first_labels for k, e in second.events if k == "g"
    )

    worker = worker_for(settings, tmp_path, "first").start()
    try:
        asyncio.run(
            run_scenario(
                settings,
                kafka_bootstrap,
                Scenario(
                    first.models,
                    first.start_ms,
                    first.end_ms,
                    first.events,
                    labelled_predictions=joined_first,
                ),
                worker,
                dlq=0,
                malformed=False,
            )
        )
    finally:
        assert worker.stop() == 0, worker.log_tail()

    worker = worker_for(settings, tmp_path, "second")
    worker.env["WATCHKEEPER_LOG_LEVEL"] = "info"
    worker.start()
    try:
        second.labelled_predictions = full.labelled_predictions
        totals, _, per_model = asyncio.run(
            run_scenario(settings, kafka_bootstrap, second, worker, dlq=0, malformed=False)
        )
    finally:
        assert worker.stop() == 0, worker.log_tail()

    # at info the worker's own lines, not the frameworks' service starts and subscriptions
    log = worker.log_path.read_text()
    assert "assigned partitions (generation" in log and "changelog records restored" in log
    framework = [line for line in log.splitlines() if re.search(FRAMEWORK_CHATTER, line)]
    assert framework == [], framework[:5]

    assert totals["joined"] == full.labelled_predictions
    # a clean stop commits what it processed: nothing is read twice after the restart
    assert totals.get("duplicate_predictions", 0) == 0
    assert totals["duplicate_labels"] == full.duplicate_labels
    for model, (counters, snapshot) in per_model.items():
        # the detector bank kept counting across the restart instead of starting again
        processed, held = int(snapshot["outcomes"]), int(snapshot["held"])
        assert processed + held == counters["outcomes"], model
        assert held == 0, model


@pytest.mark.separate  # half a minute: with the crash-recovery soak, in .ci/run's own step
def test_a_worker_killed_between_checkpoints_loses_no_outcome(
    kafka_bootstrap: str, redis_url: str, tmp_path: Path
) -> None:
    """The first worker checkpoints its detector state once (its first batch) and is
    killed (SIGKILL) after it processed everything and committed its input. Outcomes read
    since that checkpoint were never acked, so the next worker restores the checkpoint
    and reads them again: every labelled prediction reaches its model's detector, and
    the group ends up committing everything."""
    settings = isolated_settings(kafka_bootstrap, redis_url, tmp_path)
    asyncio.run(ensure_topics(settings))
    scenario = build_scenario(models=4, predictions_per_model=3000, degraded=1, seed=11)
    model_of = {e["prediction_id"]: e["model_id"] for k, e in scenario.events if k == "p"}
    labelled = Counter(
        model_of[pid] for pid in {e["prediction_id"] for k, e in scenario.events if k == "g"}
    )
    assert sum(labelled.values()) == scenario.labelled_predictions
    t = settings.topics

    async def process_everything_once() -> None:
        await produce_scenario(kafka_bootstrap, scenario, settings, batch_size=200, malformed=False)
        redis = Redis.from_url(redis_url)
        try:
            deadline = time.monotonic() + 120
            while int(
                await redis.hget(f"{settings.redis_prefix}stats", "outcomes") or 0
            ) < scenario.labelled_predictions or any(
                not key.startswith(t.outcomes) for key in await uncommitted(settings, 0)
            ):
                assert time.monotonic() < deadline, "the first worker did not finish"
                assert first.alive(), first.log_tail()
                await asyncio.sleep(0.2)
        finally:
            await redis.aclose()

    first = worker_for(settings, tmp_path, "first")
    first.env.update(WATCHKEEPER_CHECKPOINT_INTERVAL_S="3600", WATCHKEEPER_IDLE_FLUSH_S="3600")
    first.start()
    try:
        asyncio.run(process_everything_once())
        first.kill()
    finally:
        first.stop()

    async def detected_per_model() -> dict[str, tuple[int, int]]:
        redis = Redis.from_url(redis_url)
        health = HealthStore(redis, settings.redis_prefix)
        try:
            deadline = time.monotonic() + 90
            while True:
                seen = {}
                for model in labelled:
                    snap = await health.health(model)
                    seen[model] = (int(snap.get("outcomes", 0)), int(snap.get("held", 0)))
                done = all(n >= labelled[m] and held == 0 for m, (n, held) in seen.items())
                if done or time.monotonic() > deadline or not second.alive():
                    return seen
                await asyncio.sleep(0.2)
        finally:
            await redis.aclose()

    second = worker_for(settings, tmp_path, "second").start()
    try:
        seen = asyncio.run(detected_per_model())
        behind = asyncio.run(uncommitted(settings, timeout=30))
    finally:
        assert second.stop() == 0, second.log_tail()
    for model, (n, held) in seen.items():
        assert held == 0, (model, seen)
        assert n >= labelled[model], (model, n, labelled[model])
    assert behind == {}


def test_a_worker_rides_out_a_redis_outage_and_writes_its_counts_afterwards(
    kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis stops (SHUTDOWN SAVE) once the worker has written its first counts, and
    comes back, with that data, after the worker went through the rest of the scenario.
    Meanwhile the worker keeps joining and detecting: the degraded model's alert is
    published and the input is committed. Once Redis answers again the buffered counts
    are written, and the totals are exactly the scenario's, as without the outage."""
    monkeypatch.delenv("REDIS_URL", raising=False)  # this test stops its own server
    own = EmbeddedRedis().start()
    try:
        settings = isolated_settings(kafka_bootstrap, own.url, tmp_path)
        asyncio.run(ensure_topics(settings))
        scenario = build_scenario(models=4, predictions_per_model=3000, degraded=1, seed=5)
        orphan = asyncio.run(register_owners_with(settings, scenario))
        first = replace(scenario, events=scenario.events[:1500])
        rest = replace(scenario, events=scenario.events[1500:])
        (degraded,) = [m.model_id for m in scenario.degraded]
        worker = worker_for(settings, tmp_path).start()
        try:
            down_alerts, totals, alerts = asyncio.run(
                _through_an_outage(
                    settings,
                    kafka_bootstrap,
                    own,
                    worker,
                    (first, rest),
                    scenario.labelled_predictions,
                )
            )
            log = worker.log_path.read_text(errors="replace")
        finally:
            code = worker.stop()
        assert code == 0, worker.log_tail()
    finally:
        own.stop()

    # while Redis was down: the degradation was detected and published, without the owner
    assert {a["model_id"] for a in down_alerts} == {degraded}
    assert all(a["owner"] is None for a in down_alerts)
    assert "Redis unreachable" in log and "Redis reachable again" in log
    # afterwards: every count written once, none lost and none doubled
    assert totals["predictions"] == scenario.predictions
    assert totals["joined"] == scenario.labelled_predictions
    assert totals["outcomes"] == scenario.labelled_predictions
    assert totals["duplicate_labels"] == scenario.duplicate_labels
    assert totals["dlq"] == len(MALFORMED)
    degradations = {a["model_id"] for a in alerts if a["kind"] == "performance_degradation"}
    assert degradations == {degraded}
    assert {a["model_id"] for a in alerts if a["kind"] == "orphaned_model"} == {orphan}


async def _through_an_outage(
    settings: Settings,
    bootstrap: str,
    own: EmbeddedRedis,
    worker: WorkerProcess,
    halves: tuple[Scenario, Scenario],
    labelled: int,
) -> tuple[list[dict[str, Any]], dict[str, int], list[dict[str, Any]]]:
    first, rest = halves
    collector = await AlertCollector(bootstrap, settings.topics.alerts).start()
    try:
        redis = Redis.from_url(own.url)
        try:
            await produce_scenario(bootstrap, first, settings, batch_size=200, malformed=False)
            deadline = time.monotonic() + 60
            while not int(await redis.hget(f"{settings.redis_prefix}stats", "predictions") or 0):
                assert time.monotonic() < deadline, "no counts written before the outage"
                assert worker.alive(), worker.log_tail()
                await asyncio.sleep(0.2)
            await redis.shutdown(save=True)  # what the worker wrote so far survives
        finally:
            await redis.aclose()
        assert own.proc is not None
        own.proc.wait(timeout=10)

        await produce_scenario(bootstrap, rest, settings, batch_size=200, malformed=True)
        inputs = (settings.topics.predictions, settings.topics.ground_truth)
        deadline = time.monotonic() + 90
        while True:  # the degradation alert is out, and the input all committed
            assert worker.alive(), worker.log_tail()
            down_alerts = [a for a in collector.alerts if a["kind"] == "performance_degradation"]
            behind = await uncommitted(settings, 0)
            if down_alerts and not any(k.startswith(inputs) for k in behind):
                break
            assert time.monotonic() < deadline, f"stalled without Redis: {behind}"
            await asyncio.sleep(0.5)

        own.start()  # the same port and data directory: it reloads its saved data
        redis = Redis.from_url(own.url)
        try:
            totals = await wait_for_pipeline(
                HealthStore(redis, settings.redis_prefix),
                collector,
                joined=labelled,
                dlq=len(MALFORMED),
                timeout=90,
                alive=worker.alive,
            )
        finally:
            await redis.aclose()
        return down_alerts, totals, collector.alerts
    finally:
        await collector.stop()
