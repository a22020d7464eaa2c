"""``watchkeeper status`` against a real pipeline: a worker process runs a seeded scenario
(one degraded model, one model nobody owns) on the real broker and Redis, a notifier
pages a real HTTP receiver, then the command is run as a user runs it and its answers are
checked against what Redis holds.

The pipeline runs once for the module (:func:`fleet`); ``test_alerts_command`` builds its
own with the same function.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from receivers import HttpReceiver
from redis.asyncio import Redis
from test_pipeline import isolated_settings, run_scenario, worker_for

from streams.cli.main import main as cli
from streams.dev.demo import register_owners, wait_for_notifier
from streams.dev.simulate import Scenario, build_scenario
from streams.notify.loop import run_notifier
from streams.settings import NotifySettings, Settings
from streams.store.health import HealthStore
from streams.store.owners import Owner, OwnerRegistry
from streams.store.paging import PagingStore
from streams.topology import ensure_topics
from streams.views.fleet import INCIDENT_KINDS

pytestmark = [pytest.mark.integration, pytest.mark.slow]

T = TypeVar("T")


class Background:
    """An event loop in a thread, for what must keep running while the (synchronous)
    tests call the CLI, which runs its own loop: the notifier and the HTTP receiver."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 90) -> T:
        return self.submit(coro).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@dataclass
class Fleet:
    """One finished pipeline run: its settings, the scenario, and what it produced."""

    settings: Settings
    scenario: Scenario
    degraded: str  # the degraded model
    orphan: str  # the model registered without an owner
    alerts: list[dict[str, Any]]  # every record of the alerts topic, read by the test
    http: HttpReceiver  # the owners' and the fallback's webhooks

    @property
    def env(self) -> dict[str, str]:
        """What the CLI needs to find this run's topics and keys."""
        return {
            "WATCHKEEPER_BROKER": self.settings.broker,
            "WATCHKEEPER_REDIS_URL": self.settings.redis_url,
            "WATCHKEEPER_REDIS_PREFIX": self.settings.redis_prefix,
            "WATCHKEEPER_TOPIC_ALERTS": self.settings.topics.alerts,
        }


def start_fleet(kafka_bootstrap: str, redis_url: str, tmp: Path) -> Iterator[Fleet]:
    """Worker and notifier over a 4-model scenario, until every alert is handled; the
    worker is stopped before the tests (its last snapshots written), the notifier and
    the receiver keep running until the module ends."""
    background = Background()
    http = background.run(HttpReceiver().start())
    notify = NotifySettings(
        group_id=f"notify-{tmp.name}",
        group_wait_s=0.2,
        allow_private_targets=["127.0.0.1"],  # the receiver, on loopback
        fallback_channels=[f"webhook:{http.url}/fallback"],
        max_pages_per_channel_per_min=0,
    )
    settings = isolated_settings(kafka_bootstrap, redis_url, tmp).model_copy(
        update={"notify": notify}
    )
    asyncio.run(ensure_topics(settings))
    scenario = build_scenario(models=4, predictions_per_model=2000, degraded=1, seed=11)

    async def owners() -> str:
        redis = Redis.from_url(redis_url)
        try:
            return await register_owners(redis, settings, scenario, http.url)
        finally:
            await redis.aclose()

    orphan = asyncio.run(owners())
    stop = background.run(_event())
    notifier = background.submit(run_notifier(settings, stop=stop))
    worker = worker_for(settings, tmp).start()
    try:
        _, collected, _ = asyncio.run(
            run_scenario(settings, kafka_bootstrap, scenario, worker, dlq=0, malformed=False)
        )
        code = worker.stop()
        assert code == 0, worker.log_tail()
        records = asyncio.run(read_all(kafka_bootstrap, settings.topics.alerts))
        assert len(records) >= len(collected)

        async def handled() -> None:
            redis = Redis.from_url(redis_url)
            store = PagingStore(redis, settings.redis_prefix, clock=time.time)
            try:
                ids = {(a["alert_id"], a.get("status")) for a in records}
                await wait_for_notifier(
                    store, len(ids), timeout=60, alive=lambda: not notifier.done()
                )
            finally:
                await redis.aclose()

        background.run(handled())
        yield Fleet(
            settings, scenario, scenario.degraded[0].model_id, orphan, records, http
        )  # fmt: skip
    finally:
        worker.stop()
        background.loop.call_soon_threadsafe(stop.set)
        try:
            notifier.result(30)
        finally:
            background.run(http.stop())
            background.close()


async def read_all(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    """Every record of ``topic`` up to its end offsets now, with a plain consumer."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        await consumer.topics()
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        records: list[dict[str, Any]] = []
        deadline = time.monotonic() + 30
        # until past the end offsets and a read brings nothing (tansu reports the end low:
        # the last record batch's base offset + 1)
        while True:
            assert time.monotonic() < deadline, "the alerts topic could not be read to its end"
            batch = await consumer.getmany(timeout_ms=500)
            for got in batch.values():
                records += [orjson.loads(r.value) for r in got]
            if not batch and all([await consumer.position(tp) >= ends[tp] for tp in tps]):
                return records
    finally:
        await consumer.stop()


async def _event() -> asyncio.Event:
    return asyncio.Event()


@pytest.fixture(scope="module")
def fleet(
    kafka_bootstrap: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    yield from start_fleet(kafka_bootstrap, redis_url, tmp_path_factory.mktemp("fleet"))


def run_cli(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    env: dict[str, str],
    *argv: str,
) -> tuple[int, str, str]:
    """The real command in this process, with ``env`` set; exit code, stdout, stderr."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    capsys.readouterr()
    code = cli(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


async def redis_truth(settings: Settings) -> dict[str, dict[str, Any]]:
    """Per model, what Redis holds, read through the stores (not through the view)."""
    redis = Redis.from_url(settings.redis_url)
    prefix = settings.redis_prefix
    health = HealthStore(redis, prefix)
    paging = PagingStore(redis, prefix, clock=time.time)
    registry = OwnerRegistry(redis, prefix)
    try:
        truth = {}
        for model in await health.models():
            truth[model] = {
                "health": await health.health(model),
                "counters": await health.model_counters(model),
                "owner": await registry.get(model),
                "open": {
                    kind: key
                    for kind in INCIDENT_KINDS
                    if (key := await paging.open_incident_key(model, kind)) is not None
                },
            }
        for data in truth.values():
            data["open_severity"] = {
                kind: (await paging.alert(key.removeprefix("watchkeeper-")) or {}).get("severity")
                for kind, key in data["open"].items()
            }
        return truth
    finally:
        await redis.aclose()


def test_status_json_is_worst_first_and_equals_what_redis_holds(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(monkeypatch, capsys, fleet.env, "status", "--json")
    assert code == 0 and err == ""
    rows = orjson.loads(out)
    truth = asyncio.run(redis_truth(fleet.settings))
    assert sorted(r["model_id"] for r in rows) == sorted(truth)
    assert {m.model_id for m in fleet.scenario.models} == set(truth)

    # the degraded model first, critical with its degradation open; the orphan flagged
    first = rows[0]
    assert first["model_id"] == fleet.degraded
    assert first["state"] == "critical"
    assert "performance_degradation" in first["open_alerts"]
    assert truth[fleet.degraded]["open_severity"]["performance_degradation"] == "critical"
    by_model = {r["model_id"]: r for r in rows}
    orphan = by_model[fleet.orphan]
    assert orphan["orphan"] is True and orphan["owner"] is None and orphan["state"] == "critical"
    # everything else is owned, and states never get worse down the list
    assert [r["model_id"] for r in rows if r["orphan"]] == [fleet.orphan]
    ranks = [("critical", "warning", "ok", "unknown").index(r["state"]) for r in rows]
    assert ranks == sorted(ranks)

    for row in rows:
        data = truth[row["model_id"]]
        h = data["health"]
        assert row["model_version"] == (h["model_version"] or None)
        assert row["outcomes"] == int(h["outcomes"])
        assert row["error_rate"] == float(h["recent_error_rate"])
        assert row["baseline_error_rate"] == float(h["error_rate"])
        assert row["last_prediction_ms"] == int(h["last_prediction_ms"])
        coverage = h.get("label_coverage")
        assert row["label_coverage"] == (None if coverage is None else float(coverage))
        assert row["silent"] == (h["silent"] == "1")
        assert row["predictions"] == data["counters"]["predictions"]
        assert row["last_alert_id"] == h.get("last_alert_id")
        owner = data["owner"]
        assert row["owner"] == (None if owner is None else owner.owner)
        assert row["runbook"] == (None if owner is None else owner.runbook)
        assert sorted(row["open_alerts"]) == sorted(data["open"])
        opened = dict(zip(row["open_alerts"], row["open_severities"], strict=True))
        assert opened == {k: v or "warning" for k, v in data["open_severity"].items()}
        assert row["silenced_until_ms"] is None
    # the simulated model versions and volumes came through
    spec = next(m for m in fleet.scenario.models if m.model_id == fleet.degraded)
    assert first["model_version"] == spec.version
    assert first["error_rate"] > first["baseline_error_rate"]


def test_status_table_lists_the_same_order_with_owner_age_coverage_and_open_alerts(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _, out, _ = run_cli(monkeypatch, capsys, fleet.env, "status", "--json")
    order = [r["model_id"] for r in orjson.loads(out)]
    rows = {r["model_id"]: r for r in orjson.loads(out)}
    code, out, err = run_cli(monkeypatch, capsys, fleet.env, "status")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith(f"{len(order)} models at ")
    assert "1 without an owner" in lines[0]
    body = [line for line in lines if any(m in line.split() for m in order)]
    assert [next(m for m in order if m in line.split()) for line in body] == order
    degraded = body[0]
    assert degraded.startswith("CRIT") and "performance_degradation (critical)" in degraded
    row = rows[fleet.degraded]
    assert row["owner"] in degraded
    assert f"{row['error_rate'] * 100:.1f}% / {row['baseline_error_rate'] * 100:.1f}%" in degraded
    if row["label_coverage"] is not None:
        assert f"{row['label_coverage'] * 100:.1f}%" in degraded
    # event time of the simulated traffic, in UTC, and how long ago
    stamp = time.strftime("%Y-%m-%d %H:%MZ", time.gmtime(row["last_prediction_ms"] / 1000))
    assert f"ago ({stamp})" in degraded
    orphan = next(line for line in body if fleet.orphan in line.split())
    assert "ORPHAN: no owner" in orphan


def test_status_of_an_empty_prefix_says_so_and_exits_0(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {**fleet.env, "WATCHKEEPER_REDIS_PREFIX": "nobody-here:"}
    code, out, _ = run_cli(monkeypatch, capsys, env, "status")
    assert code == 0
    assert out.strip() == (
        "no models seen yet; is a worker running against this Redis prefix (nobody-here:)?"
    )
    code, out, _ = run_cli(monkeypatch, capsys, env, "status", "--json")
    assert code == 0 and orjson.loads(out) == []


def test_status_without_redis_fails_in_one_line_within_seconds(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    began = time.monotonic()
    code, out, err = run_cli(
        monkeypatch, capsys, fleet.env, "status", "--redis", "redis://127.0.0.1:1/0"
    )
    assert code == 2 and out == ""
    assert err.startswith("watchkeeper: cannot reach Redis at redis://127.0.0.1:1/0")
    assert len(err.strip().splitlines()) == 1
    assert time.monotonic() - began < 10


def test_a_registered_model_never_seen_is_unknown_and_a_stream_wide_incident_has_a_row(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    prefix = f"{fleet.settings.redis_prefix}fresh:"
    silent = {
        "alert_id": "5" * 32,
        "model_id": "*",
        "kind": "model_silent",
        "severity": "critical",
        "status": "firing",
    }

    async def seed() -> None:
        redis = Redis.from_url(fleet.settings.redis_url)
        try:
            await OwnerRegistry(redis, prefix).set(
                Owner.from_specs(
                    "quiet-model",
                    owner="team-quiet",
                    channels=["email:quiet@example.com"],
                    runbook="https://runbooks.example.com/quiet",
                )
            )
            store = PagingStore(redis, prefix, clock=time.time)
            await store.remember(silent)
            opened = await store.open_incident(
                "*", f"watchkeeper-{silent['alert_id']}", kind="model_silent"
            )
            assert opened
        finally:
            await redis.aclose()

    asyncio.run(seed())
    env = {**fleet.env, "WATCHKEEPER_REDIS_PREFIX": prefix}
    code, out, err = run_cli(monkeypatch, capsys, env, "status", "--json")
    assert code == 0
    rows = orjson.loads(out)
    states = [(r["model_id"], r["state"]) for r in rows]
    assert states == [("*", "critical"), ("quiet-model", "unknown")]
    assert rows[0]["open_alerts"] == ["model_silent"]
    assert rows[0]["open_alert_ids"] == [silent["alert_id"]]
    assert rows[1]["owner"] == "team-quiet" and rows[1]["orphan"] is False
    assert rows[1]["last_prediction_ms"] is None and rows[1]["outcomes"] == 0
    # nothing counted by a notifier under this prefix: said so, on stderr
    assert "the notifier has recorded nothing under this Redis prefix" in err
    code, out, _ = run_cli(monkeypatch, capsys, env, "status")
    lines = out.splitlines()
    assert lines[1].split()[:2] == ["STATE", "MODEL"]
    assert lines[2].startswith("CRIT   * (every model)") and "model_silent (critical)" in lines[2]
    assert lines[3].split()[:3] == ["?", "quiet-model", "team-quiet"]
