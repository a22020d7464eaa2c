"""The owner registry, its CLI and the orphan finder against a real Redis server."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis as SyncRedis
from redis.asyncio import Redis

from streams.cli.owners import add_owner_commands, run_owners
from streams.dev.embedded import free_port
from streams.engine.join import JoinStats
from streams.errors import ConfigError, InvalidOwner, WatchkeeperError
from streams.settings import DAY_MS
from streams.store.health import HealthStore
from streams.store.owners import Orphan, Owner, OwnerRegistry, find_orphans

pytestmark = pytest.mark.integration

SLACK = "slack:https://hooks.slack.com/services/T000/B000/XXXXsecretTAIL"
PAGERDUTY = "pagerduty:0123456789abcdef0123456789abcdef"
EMAIL = "email:head-of-fraud@example.com"
RUNBOOK = "https://wiki.example.com/runbooks/"


def make_owner(model_id: str, owner: str = "team", **extra: object) -> Owner:
    return Owner.from_specs(
        model_id,
        owner=owner,
        channels=[EMAIL],
        runbook=RUNBOOK + model_id,
        updated_at_ms=1_700_000_000_000,
        **extra,  # type: ignore[arg-type]
    )


async def calls(redis: Redis, command: str) -> int:
    stats = await redis.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


# --- registry -----------------------------------------------------------------------------


async def test_set_get_replace_and_remove(redis: Redis, prefix: str):
    registry = OwnerRegistry(redis, prefix)
    fraud = Owner.from_specs(
        "fraud-eu",
        owner="team-fraud",
        channels=[SLACK, PAGERDUTY],
        runbook=RUNBOOK + "fraud-eu",
        escalate_after="30m",
        escalation_channels=[EMAIL],
    )
    assert await registry.get("fraud-eu") is None
    assert await registry.set(fraud) is True
    assert await registry.get("fraud-eu") == fraud

    replaced = make_owner("fraud-eu", owner="team-risk")
    assert await registry.set(replaced) is False
    assert await registry.get("fraud-eu") == replaced

    assert await registry.remove("fraud-eu") is True
    assert await registry.remove("fraud-eu") is False
    assert await registry.get("fraud-eu") is None


async def test_keys_stay_under_the_prefix(redis: Redis, prefix: str):
    registry = OwnerRegistry(redis, prefix)
    await registry.set(make_owner("a"))
    await registry.import_many([make_owner("b"), make_owner("c")])
    keys = [k async for k in redis.scan_iter(match=f"{prefix}*")]
    assert keys == [f"{prefix}owners".encode()]
    assert await redis.hlen(f"{prefix}owners") == 3


async def test_get_many_is_one_hmget_and_skips_unowned_models(redis: Redis, prefix: str):
    registry = OwnerRegistry(redis, prefix)
    owners = [make_owner(m) for m in ("a", "b", "c")]
    await registry.import_many(owners)
    hmget_before, hget_before = await calls(redis, "hmget"), await calls(redis, "hget")
    found = await registry.get_many(["c", "missing", "a", "a"])
    assert await calls(redis, "hmget") == hmget_before + 1
    assert await calls(redis, "hget") == hget_before
    assert found == {"a": owners[0], "c": owners[2]}
    assert await registry.get_many([]) == {}


async def test_list_is_sorted_by_model_id(redis: Redis, prefix: str):
    registry = OwnerRegistry(redis, prefix)
    assert await registry.list() == []
    for model in ("zeta", "alpha", "mid"):
        await registry.set(make_owner(model))
    assert [o.model_id for o in await registry.list()] == ["alpha", "mid", "zeta"]


async def test_import_many_is_one_transaction(redis: Redis, prefix: str):
    registry = OwnerRegistry(redis, prefix)
    await registry.set(make_owner("a", owner="old"))
    multi_before, exec_before = await calls(redis, "multi"), await calls(redis, "exec")
    assert await registry.import_many([make_owner("a", owner="new"), make_owner("b")]) == 2
    assert (await calls(redis, "multi"), await calls(redis, "exec")) == (
        multi_before + 1,
        exec_before + 1,
    )
    assert [(o.model_id, o.owner) for o in await registry.list()] == [("a", "new"), ("b", "team")]
    assert await registry.import_many([]) == 0


async def test_import_many_refuses_a_model_given_twice_and_writes_nothing(
    redis: Redis, prefix: str
):
    registry = OwnerRegistry(redis, prefix)
    with pytest.raises(InvalidOwner, match="model 'b': model_id: given more than once"):
        await registry.import_many([make_owner("a"), make_owner("b"), make_owner("b")])
    assert await registry.list() == []


async def test_a_corrupt_record_is_reported_with_its_model(redis: Redis, prefix: str):
    await redis.hset(f"{prefix}owners", "broken", b'{"model_id": "broken", "owner": ""}')
    with pytest.raises(InvalidOwner, match="model 'broken'"):
        await OwnerRegistry(redis, prefix).get("broken")


# --- orphans ------------------------------------------------------------------------------


async def record_traffic(redis: Redis, prefix: str, predictions: dict[str, int]) -> None:
    await HealthStore(redis, prefix).add_join_stats(JoinStats(predictions=Counter(predictions)))


async def test_orphans_are_unowned_models_seen_in_the_window(redis: Redis, prefix: str):
    before_ms = int(time.time() * 1000)
    await record_traffic(
        redis, prefix, {"owned": 500, "busy": 50, "quiet": 3, "stale": 900, "alerting": 3}
    )
    after_ms = int(time.time() * 1000)
    health = HealthStore(redis, prefix)
    await health.put_health(
        {"alerting": {"last_alert_id": "a-1", "last_alert_kind": "performance_degradation"}},
        {},
    )
    await redis.zadd(health.key("models"), {"stale": after_ms - 8 * DAY_MS})
    await OwnerRegistry(redis, prefix).set(make_owner("owned"))

    orphans = await find_orphans(redis, prefix, days=7, now_ms=after_ms)
    assert [(o.model_id, o.predictions) for o in orphans] == [
        ("busy", 50),
        ("alerting", 3),
        ("quiet", 3),
    ]
    assert all(before_ms <= o.last_seen_ms <= after_ms for o in orphans)
    assert orphans[1] == Orphan(
        "alerting", orphans[1].last_seen_ms, 3, "a-1", "performance_degradation"
    )
    assert (orphans[0].last_alert_id, orphans[0].last_alert_kind) == (None, None)

    wider = await find_orphans(redis, prefix, days=9, now_ms=after_ms)
    assert [o.model_id for o in wider] == ["stale", "busy", "alerting", "quiet"]
    assert wider[0].last_seen_ms == after_ms - 8 * DAY_MS


async def test_no_traffic_or_every_model_owned_means_no_orphans(redis: Redis, prefix: str):
    now_ms = int(time.time() * 1000)
    assert await find_orphans(redis, prefix, days=7, now_ms=now_ms) == []
    await record_traffic(redis, prefix, {"a": 1})
    await OwnerRegistry(redis, prefix).set(make_owner("a"))
    assert await find_orphans(redis, prefix, days=7, now_ms=now_ms) == []


async def test_orphan_window_must_be_positive(redis: Redis, prefix: str):
    with pytest.raises(ValueError, match="days"):
        await find_orphans(redis, prefix, days=0, now_ms=0)


# --- CLI ----------------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="watchkeeper")
    sub = p.add_subparsers(dest="command", required=True)
    add_owner_commands(sub)
    return p


@pytest.fixture
def cli(redis_url: str, prefix: str, monkeypatch: pytest.MonkeyPatch):
    """Run ``watchkeeper owners …`` with this test's prefix; returns the exit code."""
    monkeypatch.setenv("WATCHKEEPER_REDIS_PREFIX", prefix)

    def run(*argv: str) -> int:
        args = parser().parse_args(["owners", argv[0], "--redis", redis_url, *argv[1:]])
        assert args.command == "owners"
        return run_owners(args)

    return run


def test_cli_set_show_list_remove(cli, capsys: pytest.CaptureFixture[str]):
    assert (
        cli(
            "set",
            "fraud-eu",
            "--owner",
            "team-fraud",
            "--channel",
            SLACK,
            "--channel",
            PAGERDUTY,
            "--runbook",
            RUNBOOK + "fraud-eu",
            "--escalate-after",
            "1h30m",
            "--escalation-channel",
            EMAIL,
        )
        == 0
    )
    assert capsys.readouterr().out == "registered owner of fraud-eu: team-fraud\n"
    assert cli("set", "churn", "--owner", "growth", "--channel", EMAIL, "--runbook", RUNBOOK) == 0
    assert cli("set", "churn", "--owner", "growth2", "--channel", EMAIL, "--runbook", RUNBOOK) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "replaced owner of churn: growth2"

    assert cli("show", "fraud-eu", "--json") == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["channels"] == [SLACK, PAGERDUTY]
    assert (shown["escalate_after_s"], shown["escalation_channels"]) == (5400.0, [EMAIL])
    assert Owner.from_dict(shown).owner == "team-fraud"

    assert cli("show", "fraud-eu") == 0
    text = capsys.readouterr().out
    assert "team-fraud" in text and "1h30m" in text and EMAIL in text
    assert "secretTAIL" not in text and "0123456789abcdef0123" not in text  # credentials masked

    assert cli("list", "--json") == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(o["model_id"], o["owner"]) for o in listed] == [
        ("churn", "growth2"),
        ("fraud-eu", "team-fraud"),
    ]
    assert cli("list") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:2] == ["MODEL", "OWNER"]
    assert [line.split()[0] for line in lines[1:]] == ["churn", "fraud-eu"]
    assert "1h30m -> " + EMAIL in lines[2]

    assert cli("remove", "churn") == 0
    assert capsys.readouterr().out == "removed owner of churn\n"
    assert cli("remove", "churn") == 1
    assert "no owner registered for 'churn'" in capsys.readouterr().err
    assert cli("show", "churn") == 1
    assert "no owner registered for 'churn'" in capsys.readouterr().err


def test_cli_list_when_empty(cli, capsys: pytest.CaptureFixture[str]):
    assert cli("list") == 0
    assert capsys.readouterr().out == "no owners registered\n"
    assert cli("list", "--json") == 0
    assert json.loads(capsys.readouterr().out) == []


def test_cli_set_with_bad_input_raises_invalid_owner(cli, redis_url: str, prefix: str):
    with pytest.raises(InvalidOwner) as caught:
        cli("set", "fraud-eu", "--owner", "x", "--channel", "sms:123", "--runbook", "wiki")
    assert {p.field for p in caught.value.problems} == {"channels[0]", "runbook"}
    with pytest.raises(InvalidOwner, match="escalation_channels: required"):
        cli(
            "set",
            "m",
            "--owner",
            "x",
            "--channel",
            EMAIL,
            "--runbook",
            RUNBOOK,
            "--escalate-after",
            "5m",
        )


def write_file(tmp_path: Path, entries: dict[str, str]) -> Path:
    body = "".join(f"  {model}:\n{text}" for model, text in entries.items())
    path = tmp_path / "owners.yaml"
    path.write_text(f"owners:\n{body}")
    return path


def entry(owner: str, channel: str = EMAIL, runbook: str = RUNBOOK) -> str:
    return f'    owner: {owner}\n    channels: ["{channel}"]\n    runbook: {runbook}\n'


@pytest.fixture
def sync_redis(redis_url: str) -> Iterator[SyncRedis]:
    """For seeding and inspecting from sync tests: run_owners owns its event loop."""
    client = SyncRedis.from_url(redis_url)
    try:
        yield client
    finally:
        client.close()


def test_cli_import_writes_all_or_nothing(
    cli, sync_redis: SyncRedis, prefix: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    assert cli("set", "keep", "--owner", "before", "--channel", EMAIL, "--runbook", RUNBOOK) == 0
    before = sync_redis.hgetall(f"{prefix}owners")
    assert list(before) == [b"keep"]

    bad = write_file(
        tmp_path,
        {"keep": entry("after"), "new-a": entry("a"), "new-b": entry("b", runbook="nope")},
    )
    with pytest.raises(InvalidOwner, match="model 'new-b': runbook"):
        cli("import", str(bad))
    assert sync_redis.hgetall(f"{prefix}owners") == before

    good = write_file(tmp_path, {"keep": entry("after"), "new-a": entry("a"), "new-b": entry("b")})
    capsys.readouterr()
    assert cli("import", str(good)) == 0
    assert capsys.readouterr().out == f"imported 3 owners from {good}\n"
    stored = {
        k.decode(): Owner.from_json(v) for k, v in sync_redis.hgetall(f"{prefix}owners").items()
    }
    assert {m: o.owner for m, o in stored.items()} == {"keep": "after", "new-a": "a", "new-b": "b"}


def test_cli_import_of_a_missing_file_is_a_clear_error(cli, tmp_path: Path):
    with pytest.raises(InvalidOwner, match="nope.yaml: not found"):
        cli("import", str(tmp_path / "nope.yaml"))


def test_cli_orphans(
    cli, redis_url: str, prefix: str, sync_redis: SyncRedis, capsys: pytest.CaptureFixture[str]
):
    assert cli("orphans") == 0
    assert (
        capsys.readouterr().out == "no orphans: every model seen in the last 7 days has an owner\n"
    )

    async def traffic() -> None:
        client = Redis.from_url(redis_url)
        try:
            await record_traffic(client, prefix, {"owned": 9, "lonely": 7, "forgotten": 2})
        finally:
            await client.aclose()

    asyncio.run(traffic())
    three_days_ago = int(time.time() * 1000) - 3 * DAY_MS
    sync_redis.zadd(f"{prefix}models", {"forgotten": three_days_ago})
    assert cli("set", "owned", "--owner", "x", "--channel", EMAIL, "--runbook", RUNBOOK) == 0
    capsys.readouterr()

    assert cli("orphans", "--json") == 0
    orphans = json.loads(capsys.readouterr().out)
    assert [(o["model_id"], o["predictions"]) for o in orphans] == [("lonely", 7), ("forgotten", 2)]
    assert orphans[1]["last_seen_ms"] == three_days_ago
    assert cli("orphans", "--days", "1") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["MODEL", "PREDICTIONS", "LAST", "SEEN", "LAST", "ALERT"]
    assert [line.split()[:2] for line in lines[1:]] == [["lonely", "7"]]


@pytest.mark.parametrize("days", ["0", "-1", "soon"])
def test_cli_orphans_rejects_a_bad_window(days: str, capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit) as exited:
        parser().parse_args(["owners", "orphans", "--days", days])
    assert exited.value.code == 2
    assert "positive number of days" in capsys.readouterr().err


def test_cli_reads_redis_url_and_prefix_from_the_environment(
    redis_url: str, prefix: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    monkeypatch.setenv("WATCHKEEPER_REDIS_URL", redis_url)
    monkeypatch.setenv("WATCHKEEPER_REDIS_PREFIX", prefix)
    args = parser().parse_args(
        ["owners", "set", "env-model", "--owner", "x", "--channel", EMAIL, "--runbook", RUNBOOK]
    )
    assert args.redis_url is None
    assert run_owners(args) == 0
    assert run_owners(parser().parse_args(["owners", "list", "--json"])) == 0
    listed = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert [o["model_id"] for o in listed] == ["env-model"]


def test_unreachable_redis_is_a_clear_error():
    url = f"redis://127.0.0.1:{free_port()}/0"
    args = parser().parse_args(["owners", "list", "--redis", url])
    with pytest.raises(WatchkeeperError, match=f"cannot reach Redis at {url}"):
        run_owners(args)


def test_a_password_in_the_redis_url_is_not_echoed():
    url = f"redis://user:hunter2@127.0.0.1:{free_port()}/0"
    with pytest.raises(WatchkeeperError) as caught:
        run_owners(parser().parse_args(["owners", "list", "--redis", url]))
    assert "hunter2" not in str(caught.value) and "***@127.0.0.1" in str(caught.value)


def test_a_malformed_redis_url_is_a_config_error():
    with pytest.raises(ConfigError, match="invalid Redis URL"):
        run_owners(parser().parse_args(["owners", "list", "--redis", "http://127.0.0.1:1"]))


# --- the outbound policy at registration ----------------------------------------------------


@pytest.mark.parametrize(
    ("channel", "rule"),
    [
        ("webhook:http://169.254.169.254/latest/meta-data/iam", "169.254.169.254 is link-local"),
        ("webhook:http://127.0.0.1:6379/", "127.0.0.1 is loopback"),
        ("webhook:http://192.168.1.20/hook", "192.168.1.20 is private"),
        ("webhook:http://[::ffff:10.0.0.1]/hook", "embeds 10.0.0.1, which is private"),
        ("slack:http://hooks.slack.com/services/T0/B0/SECRETTOKEN123", "https URL on hooks.slack"),
    ],
)
def test_cli_set_refuses_a_target_the_outbound_policy_refuses(
    cli, sync_redis: SyncRedis, prefix: str, channel: str, rule: str
):
    with pytest.raises(InvalidOwner) as caught:
        cli("set", "m", "--owner", "team", "--channel", channel, "--runbook", RUNBOOK)
    message = str(caught.value)
    assert rule in message and "channels[0]" in message
    assert "WATCHKEEPER_NOTIFY_ALLOW_PRIVATE_TARGETS" in message
    assert "SECRETTOKEN123" not in message
    assert sync_redis.hgetall(f"{prefix}owners") == {}


def test_cli_set_refuses_a_slack_port_out_of_range_without_echoing_the_token(cli):
    spec = "slack:https://hooks.slack.com:99999/services/T000/B000/SECRETTOKEN123"
    with pytest.raises(InvalidOwner, match="port must be 1-65535") as caught:
        cli("set", "m", "--owner", "team", "--channel", spec, "--runbook", RUNBOOK)
    assert "SECRETTOKEN123" not in str(caught.value)


def test_the_allowlist_in_the_environment_lifts_the_rule_for_the_cli(
    cli, sync_redis: SyncRedis, prefix: str, monkeypatch: pytest.MonkeyPatch
):
    hook = "webhook:http://10.20.0.5:8080/hook"
    monkeypatch.setenv("WATCHKEEPER_NOTIFY_ALLOW_PRIVATE_TARGETS", '["10.20.0.0/16"]')
    assert cli("set", "m", "--owner", "team", "--channel", hook, "--runbook", RUNBOOK) == 0
    assert list(sync_redis.hgetall(f"{prefix}owners")) == [b"m"]
    monkeypatch.setenv("WATCHKEEPER_NOTIFY_ALLOW_PRIVATE_TARGETS", '["10.30.0.0/16"]')
    with pytest.raises(InvalidOwner, match="10.20.0.5 is private"):
        cli("set", "n", "--owner", "team", "--channel", hook, "--runbook", RUNBOOK)


def test_cli_import_refuses_every_private_target_at_once_and_writes_nothing(
    cli, sync_redis: SyncRedis, prefix: str, tmp_path: Path
):
    path = write_file(
        tmp_path,
        {
            "fine": entry("a"),
            "meta": entry("b", channel="webhook:http://169.254.169.254/"),
            "lan": entry("c", channel="webhook:http://10.1.2.3/h"),
        },
    )
    with pytest.raises(InvalidOwner) as caught:
        cli("import", str(path))
    message = str(caught.value)
    assert "import refused (2 problems)" in message
    assert "model 'meta': channels[0]" in message and "model 'lan': channels[0]" in message
    assert sync_redis.hgetall(f"{prefix}owners") == {}
