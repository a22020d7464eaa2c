"""``watchkeeper alerts list | show`` against a real pipeline (worker, notifier, HTTP
receiver, tansu, Redis; :func:`test_status_command.start_fleet`): the history is what
the alerts topic holds, the paging state is what the notifier recorded and the receiver
got, and ``ack`` shows up in ``show``."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis
from test_status_command import Fleet, run_cli, start_fleet

from streams.replay.source import publish_alerts
from streams.store.owners import OwnerRegistry
from streams.store.paging import PagingStore

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DEGRADATION = "performance_degradation"


@pytest.fixture(scope="module")
def fleet(
    kafka_bootstrap: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    yield from start_fleet(kafka_bootstrap, redis_url, tmp_path_factory.mktemp("alerts"))


def unique(alerts: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """Each alert once by id and status, its first record (as the command lists them)."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for a in alerts:
        found.setdefault((a["alert_id"], a.get("status", "firing")), a)
    return found


def paged_ids_at_receiver(fleet: Fleet, path: str) -> set[str]:
    """Alert ids in the pages the receiver got at ``path``."""
    ids: set[str] = set()
    for request in fleet.http.at(path):
        body = request.json()
        ids |= {body["alert_id"], *(a["alert_id"] for a in body["grouped_alerts"])}
    return ids


async def sent_in_redis(fleet: Fleet, model: str, alert_ids: list[str]) -> dict[str, bool]:
    """Per alert: is its delivery to the owner's channel recorded as sent?"""
    redis = Redis.from_url(fleet.settings.redis_url)
    try:
        owner = await OwnerRegistry(redis, fleet.settings.redis_prefix).get(model)
        assert owner is not None
        store = PagingStore(redis, fleet.settings.redis_prefix, clock=time.time)
        sent = {}
        for alert_id in alert_ids:
            states = [await store.delivery_state(alert_id, ch.key) for ch in owner.channels]
            sent[alert_id] = any((s or "").startswith("sent|") for s in states)
        return sent
    finally:
        await redis.aclose()


def test_list_by_model_and_kind_is_exactly_the_topics_alerts_newest_first_with_paging(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    model = fleet.degraded
    argv = ("alerts", "list", "--model", model, "--kind", DEGRADATION, "--json")
    code, out, err = run_cli(monkeypatch, capsys, fleet.env, *argv)
    assert code == 0, err
    entries = orjson.loads(out)
    expected = [
        a
        for a in unique(fleet.alerts).values()
        if a["model_id"] == model and a["kind"] == DEGRADATION
    ]
    assert expected, "the degraded model raised no degradation"
    key = lambda a: (a["alert_id"], a.get("status"))  # noqa: E731
    assert sorted((e["alert"] for e in entries), key=key) == sorted(expected, key=key)
    detected = [e["detected_at_ms"] for e in entries]
    assert detected == sorted(detected, reverse=True)
    assert detected == [
        int(datetime.fromisoformat(e["alert"]["detected_at"]).timestamp() * 1000) for e in entries
    ]

    # paged exactly when the notifier recorded a sent delivery to the owner's channel, and
    # those are the alerts the owner's webhook received
    ids = [e["alert"]["alert_id"] for e in entries]
    sent = asyncio.run(sent_in_redis(fleet, model, ids))
    assert {e["alert"]["alert_id"]: e["paged"] for e in entries} == sent
    received = paged_ids_at_receiver(fleet, f"/team-{model.split('-')[0]}")
    assert {i for i in ids if sent[i]} == received & set(ids)
    assert any(sent.values())
    for e in entries:
        assert (e["page_state"] == "paged") == e["paged"]
        assert (e["paged_at_ms"] is not None) == e["paged"]
        assert e["incident_open"] is True  # the degradation is still open
        assert e["acked_by"] is None or e["acked_by"] == "alice"  # the ack test may run first
        assert e["silenced"] is False

    # the human table: one row per alert, newest first, 12-character ids
    code, out, err = run_cli(monkeypatch, capsys, fleet.env, *argv[:-1])
    assert code == 0, err
    rows = [line for line in out.splitlines() if any(i[:12] in line for i in ids)]
    assert [next(i for i in ids if i[:12] in line) for line in rows] == ids
    assert all(model in line and DEGRADATION in line for line in rows)


def test_list_without_filters_holds_every_alert_and_orphans_are_summarised(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(monkeypatch, capsys, fleet.env, "alerts", "list", "--json")
    assert code == 0, err
    entries = orjson.loads(out)
    listed = Counter((e["alert"]["alert_id"], e["alert"]["status"]) for e in entries)
    assert listed == Counter(unique(fleet.alerts).keys())
    assert {(e["alert"]["alert_id"], e["alert"]["status"]): e["alert"] for e in entries} == unique(
        fleet.alerts
    )
    orphaned = [e for e in entries if e["alert"]["kind"] == "orphaned_model"]
    assert [e["alert"]["model_id"] for e in orphaned] == [fleet.orphan]
    # with a fallback, the notifier counts it into a summary page instead of paging it
    assert orphaned[0]["page_state"] == "summarised" and orphaned[0]["paged"] is False


def test_since_goes_by_detection_time(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    everything = len(unique(fleet.alerts))
    ahead = (datetime.now(tz=UTC) + timedelta(days=1)).isoformat(timespec="seconds")
    code, out, _ = run_cli(monkeypatch, capsys, fleet.env, "alerts", "list", "--since", ahead)
    assert code == 0
    assert out.strip() == f"no alerts match (since {ahead}) among the {everything} on " + (
        fleet.settings.topics.alerts
    )
    argv = ("alerts", "list", "--json", "--since")
    code, out, _ = run_cli(monkeypatch, capsys, fleet.env, *argv, ahead)
    assert code == 0 and orjson.loads(out) == []
    # all were detected within the last hour (their event times are days older)
    code, out, _ = run_cli(monkeypatch, capsys, fleet.env, *argv, "1h")
    assert code == 0 and len(orjson.loads(out)) == everything
    newest = max(
        int(datetime.fromisoformat(a["detected_at"]).timestamp() * 1000) for a in fleet.alerts
    )
    code, out, _ = run_cli(monkeypatch, capsys, fleet.env, *argv, str(newest))
    at_newest = [e["alert"] for e in orjson.loads(out)]
    last = max(x["detected_at"] for x in fleet.alerts)
    assert at_newest and all(a["detected_at"] == last for a in at_newest)
    code, _, err = run_cli(monkeypatch, capsys, fleet.env, *argv, "last tuesday")
    assert code == 2 and err.startswith("watchkeeper: --since 'last tuesday'")


def test_show_by_prefix_then_ack_shows_who_acknowledged(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    mine = [a for a in fleet.alerts if a["model_id"] == fleet.degraded and a["kind"] == DEGRADATION]
    sent = asyncio.run(sent_in_redis(fleet, fleet.degraded, [a["alert_id"] for a in mine]))
    alert = next(a for a in mine if sent[a["alert_id"]])
    prefix = alert["alert_id"][:12]
    code, out, err = run_cli(monkeypatch, capsys, fleet.env, "alerts", "show", prefix)
    assert code == 0, err
    fields = dict(line.split(":", 1) for line in out.splitlines())
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    assert fields["alert_id"] == alert["alert_id"]
    assert fields["model_id"] == fleet.degraded and fields["kind"] == DEGRADATION
    assert fields["detector"] == alert["detector"]
    assert fields["runbook"] == alert["runbook"] and alert["runbook"]
    assert fields["before"] == "  ".join(f"{k}={v}" for k, v in alert["before"].items())
    assert fields["after"] == "  ".join(f"{k}={v}" for k, v in alert["after"].items())
    assert fields["paged"].startswith("yes, at ")
    assert fields["acknowledged"] == "no"
    assert fields["incident"] == f"open for {fleet.degraded} {DEGRADATION}"
    assert fields["silenced"] == "no"

    code, out, err = run_cli(monkeypatch, capsys, fleet.env, "ack", prefix, "--by", "alice")
    assert code == 0, err
    code, out, err = run_cli(monkeypatch, capsys, fleet.env, "alerts", "show", prefix, "--json")
    assert code == 0, err
    shown = orjson.loads(out)
    assert shown["alert"] == alert

    async def ack_record() -> dict[str, Any] | None:
        redis = Redis.from_url(fleet.settings.redis_url)
        try:
            store = PagingStore(redis, fleet.settings.redis_prefix, clock=time.time)
            return await store.acked(alert["alert_id"])
        finally:
            await redis.aclose()

    record = asyncio.run(ack_record())
    assert record is not None
    assert (
        (shown["acked_by"], shown["acked_at_ms"])
        == ("alice", record["at_ms"])
        == (
            record["by"],
            record["at_ms"],
        )
    )
    code, out, _ = run_cli(monkeypatch, capsys, fleet.env, "alerts", "show", alert["alert_id"])
    assert code == 0
    assert any(
        line.startswith("acknowledged:") and "by alice at " in line for line in out.splitlines()
    )


def test_a_prefix_matching_nothing_is_an_error_naming_it(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = {a["alert_id"] for a in fleet.alerts}
    missing = next(
        p for p in (f"{n:04x}" for n in range(0x10000)) if not any(i.startswith(p) for i in ids)
    )
    code, out, err = run_cli(monkeypatch, capsys, fleet.env, "alerts", "show", missing)
    assert code == 2 and out == ""
    assert err.strip() == (
        f"watchkeeper: no alert with id or prefix {missing!r} on the alerts topic or in the "
        "notifier's records"
    )


def test_an_ambiguous_prefix_lists_the_candidates_and_an_empty_topic_says_so(
    fleet: Fleet,
    make_topic: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    topic = make_topic("alerts-history", 2)
    env = {**fleet.env, "WATCHKEEPER_TOPIC_ALERTS": topic}
    code, out, _ = run_cli(monkeypatch, capsys, env, "alerts", "list")
    assert code == 0 and out.strip() == f"no alerts on {topic} yet"

    template = next(a for a in fleet.alerts if a["kind"] == DEGRADATION)
    twins = [
        {**template, "alert_id": "abcd" + "1" * 28, "model_id": "twin-a"},
        {**template, "alert_id": "abcd" + "2" * 28, "model_id": "twin-b"},
    ]
    asyncio.run(publish_alerts(fleet.settings.bootstrap_servers, topic, twins))
    code, out, err = run_cli(monkeypatch, capsys, env, "alerts", "show", "abcd")
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("watchkeeper: alert id prefix 'abcd' is ambiguous, 2 alerts match: ")
    assert all(t["alert_id"] in err and t["model_id"] in err for t in twins)
    # one more character settles it; nothing in Redis knows these alerts
    code, out, err = run_cli(monkeypatch, capsys, env, "alerts", "show", "abcd2", "--json")
    assert code == 0, err
    shown = orjson.loads(out)
    assert shown["alert"] == twins[1]
    assert shown["page_state"] == "no_record" and shown["paged"] is False


def test_an_unreachable_broker_fails_in_one_line_within_seconds(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    began = time.monotonic()
    argv = ("alerts", "list", "--broker", "127.0.0.1:1")
    code, out, err = run_cli(monkeypatch, capsys, fleet.env, *argv)
    assert code == 2 and out == ""
    assert err.startswith("watchkeeper: no Kafka broker answered at 127.0.0.1:1 within 10 s")
    assert len(err.strip().splitlines()) == 1
    assert time.monotonic() - began < 10
