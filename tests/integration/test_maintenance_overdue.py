"""Ownership hygiene against a real Redis and a real worker: confirmations recorded and
kept, version history bounded, and ``maintenance_overdue`` raised once per period."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis
from test_pipeline import isolated_settings, worker_for

from streams.cli.owners import add_owner_commands, run_owners
from streams.dev.demo import AlertCollector, produce_scenario
from streams.dev.process import WorkerProcess
from streams.dev.simulate import Scenario, build_scenario
from streams.errors import InvalidOwner
from streams.settings import Settings
from streams.store.maintenance import (
    MAX_VERSIONS,
    MaintenanceWatch,
    VersionLog,
    overdue,
    versions_key,
)
from streams.store.owners import Owner, OwnerRegistry
from streams.topology import ensure_topics

pytestmark = pytest.mark.integration

EMAIL = "email:fraud-oncall@example.com"
RUNBOOK = "https://wiki.example.com/runbooks/"
DAY_MS = 86_400_000


def make_owner(model_id: str, owner: str = "team-fraud", **extra: Any) -> Owner:
    specs: dict[str, Any] = {
        "owner": owner,
        "channels": [EMAIL],
        "runbook": RUNBOOK + model_id,
        "updated_at_ms": int(time.time() * 1000),
    }
    return Owner.from_specs(model_id, **(specs | extra))


# --- confirmations --------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="watchkeeper")
    add_owner_commands(p.add_subparsers(dest="command", required=True))
    return p


@pytest.fixture
def cli(redis_url: str, prefix: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("WATCHKEEPER_REDIS_PREFIX", prefix)

    def run(*argv: str) -> int:
        return run_owners(parser().parse_args(["owners", argv[0], "--redis", redis_url, *argv[1:]]))

    return run


def shown(cli: Any, capsys: pytest.CaptureFixture[str], model: str) -> dict[str, Any]:
    capsys.readouterr()
    assert cli("show", model, "--json") == 0
    return json.loads(capsys.readouterr().out)


def test_confirm_records_who_and_when_and_a_replacement_keeps_it(
    cli: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path
):
    base = ["--channel", EMAIL, "--runbook", RUNBOOK + "fraud-eu"]
    assert cli("set", "fraud-eu", "--owner", "team-fraud", *base, "--confirm-every", "30d") == 0
    assert shown(cli, capsys, "fraud-eu")["confirmed_at_ms"] is None

    before = int(time.time() * 1000)
    assert cli("confirm", "fraud-eu", "--by", "ana") == 0
    after = int(time.time() * 1000)
    out = capsys.readouterr().out
    assert out.startswith("confirmed team-fraud as owner of fraud-eu (by ana); next confirmation")
    record = shown(cli, capsys, "fraud-eu")
    assert record["confirmed_by"] == "ana"
    assert before <= record["confirmed_at_ms"] <= after
    assert record["confirm_every_s"] == 30 * 86_400

    # the same owner with other channels and periods: the confirmation stays
    other = ["--channel", "email:other@example.com", "--runbook", RUNBOOK + "fraud-eu"]
    assert cli("set", "fraud-eu", "--owner", "team-fraud", *other, "--retrain-every", "7d") == 0
    kept = shown(cli, capsys, "fraud-eu")
    assert (kept["confirmed_at_ms"], kept["confirmed_by"]) == (record["confirmed_at_ms"], "ana")
    assert (kept["channels"], kept["retrain_every_s"]) == (["email:other@example.com"], 604_800)
    assert kept["confirm_every_s"] == 90 * 86_400  # set replaces the period: default again

    # an import of the same owner keeps it too; a new owner starts unconfirmed
    path = tmp_path / "owners.yaml"
    path.write_text(
        f'owners:\n  fraud-eu:\n    owner: team-fraud\n    channels: ["{EMAIL}"]\n'
        f"    runbook: {RUNBOOK}fraud-eu\n    confirm_every: 14d\n"
    )
    assert cli("import", str(path)) == 0
    imported = shown(cli, capsys, "fraud-eu")
    assert (imported["confirmed_by"], imported["confirm_every_s"]) == ("ana", 14 * 86_400)
    assert cli("set", "fraud-eu", "--owner", "team-risk", *base) == 0
    assert shown(cli, capsys, "fraud-eu")["confirmed_by"] is None

    assert cli("show", "fraud-eu") == 0
    text = capsys.readouterr().out
    fields = dict(line.split(":", 1) for line in text.splitlines())
    assert fields["confirmed"].strip() == "never"  # the new owner has not confirmed yet
    assert fields["confirm every"].strip().startswith("90d, next due ")
    assert cli("confirm", "nobody") == 1
    assert "no owner registered for 'nobody'" in capsys.readouterr().err


async def test_a_confirmation_racing_replacements_is_never_lost(redis: Redis, prefix: str):
    registry = OwnerRegistry(redis, prefix)
    await registry.set(make_owner("m"))
    sets = [registry.set(make_owner("m", channels=[f"email:n{i}@example.com"])) for i in range(30)]
    confirm = registry.confirm("m", by="ana", now_ms=123)
    await asyncio.gather(*sets[:15], confirm, *sets[15:])
    final = await registry.get("m")
    assert final is not None
    assert (final.confirmed_at_ms, final.confirmed_by) == (123, "ana")
    assert await registry.confirm("missing", by="ana", now_ms=1) is None
    assert await registry.get("missing") is None  # confirming writes no entry
    await redis.hset(f"{prefix}owners", "broken", b'{"model_id": "broken", "owner": ""}')
    with pytest.raises(InvalidOwner, match="model 'broken'"):
        await registry.confirm("broken", by="ana", now_ms=1)


async def test_a_record_from_before_confirmations_reads_and_is_judged(redis: Redis, prefix: str):
    old = {
        "model_id": "legacy",
        "owner": "team-old",
        "channels": [EMAIL],
        "runbook": RUNBOOK + "legacy",
        "escalate_after_s": None,
        "escalation_channels": [],
        "updated_at_ms": 1_000,
    }
    await redis.hset(f"{prefix}owners", "legacy", orjson.dumps(old))
    await redis.hset(f"{prefix}owners", "broken", b'{"model_id": "broken"}')
    settings = Settings(redis_prefix=prefix)
    [item] = await overdue(redis, settings, 1_000 + 90 * DAY_MS)
    assert (item.model_id, item.owner, item.reason, item.since_ms) == (
        "legacy",
        "team-old",
        "unconfirmed",
        1_000,
    )
    assert await overdue(redis, settings, 1_000 + 90 * DAY_MS - 1) == []


# --- versions -------------------------------------------------------------------------------


async def test_the_version_log_keeps_when_each_version_became_current(redis: Redis, prefix: str):
    now = [1_000.0]
    log = VersionLog(redis, prefix, retention_ms=DAY_MS, refresh_s=0.0, clock=lambda: now[0])
    key = versions_key(prefix, "m")
    log.note({"m": "1.0"})
    await log.flush()
    now[0] = 2_000.0
    log.note({"m": "1.0"})  # a refresh: the same version, not a new one
    await log.flush()
    assert await redis.hgetall(key) == {b"current": b"1.0", b"v:1.0": b"1000000"}
    assert 0 < await redis.pttl(key) <= DAY_MS

    now[0] = 3_000.0
    log.note({"m": "2.0"})
    await log.flush()
    now[0] = 4_000.0
    log.note({"m": "1.0"})  # a rollback: current again from now
    await log.flush()
    fields = await redis.hgetall(key)
    assert (fields[b"current"], fields[b"v:1.0"], fields[b"v:2.0"]) == (
        b"1.0",
        b"4000000",
        b"3000000",
    )

    for i in range(MAX_VERSIONS + 10):
        now[0] = 5_000.0 + i
        log.note({"m": f"3.{i}"})
        await log.flush()
    fields = await redis.hgetall(key)
    assert len(fields) == MAX_VERSIONS + 1  # the versions plus `current`
    last = f"3.{MAX_VERSIONS + 9}".encode()
    assert fields[b"current"] == last and b"v:" + last in fields
    assert b"v:1.0" not in fields  # the oldest went first


async def test_the_worker_writes_versions_at_most_once_per_flush_interval(
    redis: Redis, prefix: str
):
    """A canary flips the newest version from batch to batch: the batch path writes what
    is pending once per ``flush_s``, and the last flush writes what is left."""
    wall, mono = [1_000.0], [0.0]
    log = VersionLog(
        redis, prefix, retention_ms=DAY_MS, flush_s=1.0, clock=lambda: wall[0],
        monotonic=lambda: mono[0],
    )  # fmt: skip
    key = versions_key(prefix, "m")
    log.note({"m": "1.0"})
    await log.maybe_flush()
    assert (await redis.hgetall(key))[b"current"] == b"1.0"
    for i, version in enumerate(["2.0-canary", "1.0", "2.0-canary"]):  # batches in 1 s
        mono[0] = 0.1 * (i + 1)
        log.note({"m": version})
        await log.maybe_flush()
    assert (await redis.hgetall(key))[b"current"] == b"1.0"  # nothing written in between
    mono[0], wall[0] = 1.0, 1_001.0
    await log.maybe_flush()
    fields = await redis.hgetall(key)
    assert fields[b"current"] == b"2.0-canary" and fields[b"v:2.0-canary"] == b"1001000"
    mono[0] = 1.5
    log.note({"m": "1.0"})
    log.note({"m": "2.0-canary"})  # back to the version written: nothing pending
    mono[0] = 2.0
    await log.maybe_flush()
    assert (await redis.hgetall(key))[b"current"] == b"2.0-canary"
    log.note({"m": "1.0"})
    await log.flush()  # at shutdown: whatever is pending
    assert (await redis.hgetall(key))[b"current"] == b"1.0"


async def test_a_version_unchanged_past_retrain_every_is_overdue(redis: Redis, prefix: str):
    registry = OwnerRegistry(redis, prefix)
    t0 = int(time.time() * 1000)
    await registry.set(make_owner("a", retrain_every="7d"))
    await registry.set(make_owner("b"))  # no retrain_every: its version is not judged
    log = VersionLog(redis, prefix, retention_ms=DAY_MS, clock=lambda: t0 / 1000)
    log.note({"a": "2.1.0", "b": "1.0"})
    await log.flush()
    settings = Settings(redis_prefix=prefix)
    assert await overdue(redis, settings, t0 + 7 * DAY_MS - 1) == []
    [item] = await overdue(redis, settings, t0 + 7 * DAY_MS)
    assert (item.model_id, item.reason, item.since_ms) == ("a", "not_retrained", t0)
    assert "'2.1.0'" in item.message


# --- once per period --------------------------------------------------------------------------


async def test_two_workers_raise_each_overdue_item_once_per_period(redis: Redis, prefix: str):
    registry = OwnerRegistry(redis, prefix)
    t0 = time.time()
    await registry.set(make_owner("a", confirm_every="1d", updated_at_ms=int(t0 * 1000)))
    await registry.set(make_owner("b", confirm_every="30d", updated_at_ms=int(t0 * 1000)))
    now = [t0 + 86_400]
    first, second = (MaintenanceWatch(redis, prefix, clock=lambda: now[0]) for _ in range(2))

    raised = await asyncio.gather(first.due(), second.due())
    assert sorted(len(r) for r in raised) == [0, 1]  # one of them claimed it
    [alert] = raised[0] or raised[1]
    assert (alert["model_id"], alert["signal"], alert["owner"]) == (
        "a",
        "unconfirmed",
        "team-fraud",
    )

    now[0] += 3_600  # the same period: nothing again, from either
    assert await first.due() == [] and await second.due() == []
    now[0] = t0 + 2 * 86_400  # the next period: raised again, with a new id
    [again] = await second.due()
    assert again["alert_id"] != alert["alert_id"]
    await second.release([again])  # a failed publish gives it back
    [retry] = await first.due()
    assert retry["alert_id"] == again["alert_id"]

    await registry.confirm("a", by="ana", now_ms=int(now[0] * 1000))
    assert await first.due() == []  # confirmed: not overdue any more


# --- the worker ----------------------------------------------------------------------------


def small_scenario() -> Scenario:
    return build_scenario(models=2, predictions_per_model=200, degraded=0, seed=3)


async def _run_worker_scenario(
    settings: Settings, bootstrap: str, scenario: Scenario, worker: WorkerProcess
) -> tuple[list[dict[str, Any]], dict[bytes, bytes]]:
    """Publish the scenario and collect alerts until every expected maintenance alert is
    out, then until a model registered afterwards is raised too: proof that later checks
    ran. Returns the alerts and the retrained model's versions hash."""
    redis = Redis.from_url(settings.redis_url)
    registry = OwnerRegistry(redis, settings.redis_prefix)
    collector = await AlertCollector(bootstrap, settings.topics.alerts).start()

    def raised() -> Counter[tuple[str, str]]:
        return Counter(
            (a["model_id"], a["signal"])
            for a in collector.alerts
            if a["kind"] == "maintenance_overdue"
        )

    async def until(what: str, done: Callable[[], object], timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            assert worker.alive(), worker.log_tail()
            assert time.monotonic() < deadline, f"no {what}: {raised()}\n{worker.log_tail()}"
            await asyncio.sleep(0.2)

    stale, retrained = (m.model_id for m in scenario.models)
    try:
        await produce_scenario(bootstrap, scenario, settings, malformed=False)
        await until(
            "maintenance alerts",
            lambda: raised()[(stale, "unconfirmed")] and raised()[(retrained, "not_retrained")],
        )
        hundred_days_ago = int(time.time() * 1000) - 100 * DAY_MS
        await registry.set(make_owner("late-owner", updated_at_ms=hundred_days_ago))
        await until("alert for late-owner", lambda: raised()[("late-owner", "unconfirmed")])
        versions = await redis.hgetall(versions_key(settings.redis_prefix, retrained))
    finally:
        await collector.stop()
        await redis.aclose()
    return collector.alerts, versions


async def _register(settings: Settings, stale: str, retrained: str) -> None:
    redis = Redis.from_url(settings.redis_url)
    try:
        registry = OwnerRegistry(redis, settings.redis_prefix)
        now = int(time.time() * 1000)
        await registry.set(make_owner(stale, owner="team-stale", updated_at_ms=now - 100 * DAY_MS))
        fresh = make_owner(retrained, owner="team-fresh", retrain_every="1s")
        await registry.set(fresh.confirmed(by="ana", at_ms=now))
    finally:
        await redis.aclose()


@pytest.mark.slow
def test_the_worker_raises_maintenance_overdue_once_per_period(
    kafka_bootstrap: str, redis_url: str, tmp_path: Path
) -> None:
    settings = isolated_settings(kafka_bootstrap, redis_url, tmp_path)
    asyncio.run(ensure_topics(settings))
    scenario = small_scenario()
    (stale, _), (retrained, version) = ((m.model_id, m.version) for m in scenario.models)
    asyncio.run(_register(settings, stale, retrained))
    worker = worker_for(settings, tmp_path)
    worker.env["WATCHKEEPER_MAINTENANCE_CHECK_S"] = "0.3"
    worker.start()
    try:
        alerts, versions = asyncio.run(
            _run_worker_scenario(settings, kafka_bootstrap, scenario, worker)
        )
    finally:
        code = worker.stop()
    assert code == 0, worker.log_tail()
    assert versions[b"current"] == version.encode()  # recorded by the worker

    maintenance = [a for a in alerts if a["kind"] == "maintenance_overdue"]
    counts = Counter((a["model_id"], a["signal"]) for a in maintenance)
    # checks ran every 0.3 s for the whole run, and a later one raised late-owner: yet each
    # (model, reason) of this period was raised exactly once
    assert counts == {
        (stale, "unconfirmed"): 1,
        (retrained, "not_retrained"): 1,
        ("late-owner", "unconfirmed"): 1,
    }
    by_key = {(a["model_id"], a["signal"]): a for a in maintenance}
    stale_alert = by_key[(stale, "unconfirmed")]
    assert (stale_alert["severity"], stale_alert["owner"]) == ("info", "team-stale")
    assert stale_alert["runbook"] == RUNBOOK + stale
    assert f"watchkeeper owners confirm {stale} --by" in stale_alert["message"]
    assert by_key[(retrained, "not_retrained")]["owner"] == "team-fresh"
    assert f"{version!r}" in by_key[(retrained, "not_retrained")]["message"]
