"""``watchkeeper report`` against a real pipeline (worker, notifier, HTTP receiver, tansu,
Redis; :func:`test_status_command.start_fleet`): each figure of the scorecard is checked
against what the alerts topic and Redis hold, read here without the views; one ``ack``
then shows up as a time to acknowledge and a watcher."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from helpers.html_dom import parse
from redis.asyncio import Redis
from test_alerts_command import unique
from test_status_command import Fleet, run_cli, start_fleet

from streams.contract.notification import parse_channel
from streams.store.owners import OwnerRegistry
from streams.store.paging import PagingStore
from streams.ui.server import RedisSource, build_app
from streams.views.fleet import INCIDENT_KINDS
from streams.views.report import read_report

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def fleet(
    kafka_bootstrap: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    yield from start_fleet(kafka_bootstrap, redis_url, tmp_path_factory.mktemp("report"))


def detected_ms(alert: dict[str, Any]) -> int:
    return int(datetime.fromisoformat(alert["detected_at"]).timestamp() * 1000)


def firing(alert: dict[str, Any]) -> bool:
    return alert["kind"] != "performance_improvement" and alert.get("status") != "resolved"


async def truth(fleet: Fleet) -> dict[str, dict[str, Any]]:
    """Per model: its owner record, its firing alerts that reached a channel (from the
    delivery records), their acks, and its open incidents, read from Redis directly."""
    redis = Redis.from_url(fleet.settings.redis_url)
    prefix = fleet.settings.redis_prefix
    store = PagingStore(redis, prefix, clock=time.time)
    registry = OwnerRegistry(redis, prefix)
    fallback = [parse_channel(c).key for c in fleet.settings.notify.fallback_channels]
    try:
        found: dict[str, dict[str, Any]] = {}
        alerts = list(unique(fleet.alerts).values())
        for spec in fleet.scenario.models:
            model = spec.model_id
            owner = await registry.get(model)
            keys = [c.key for c in owner.channels] if owner else fallback
            paged = []
            for a in alerts:
                if a["model_id"] != model or not firing(a):
                    continue
                states = [await store.delivery_state(a["alert_id"], k) for k in keys]
                if any((s or "").startswith("sent|") for s in states):
                    paged.append(a)
            acks = {a["alert_id"]: await store.acked(a["alert_id"]) for a in paged}
            found[model] = {
                "owner": owner,
                "paged": paged,
                "acks": {k: v for k, v in acks.items() if v is not None},
                "open": sorted(
                    [k for k in INCIDENT_KINDS if await store.open_incident_key(model, k)]
                ),
                "versions": versions(alerts, model),
            }
        return found
    finally:
        await redis.aclose()


def versions(alerts: list[dict[str, Any]], model: str) -> list[str]:
    """The model's versions in the window: of its version_changed alerts if it has any,
    else of all its alerts, oldest first."""
    mine = sorted((a for a in alerts if a["model_id"] == model), key=detected_ms)
    changes = [a for a in mine if a["kind"] == "version_changed"]
    return list(
        dict.fromkeys(str(a["model_version"]) for a in changes or mine if a.get("model_version"))
    )


def report_json(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *extra: str
) -> dict[str, Any]:
    code, out, err = run_cli(monkeypatch, capsys, fleet.env, "report", "--format", "json", *extra)
    assert code == 0, err
    return orjson.loads(out)


def cards_by_model(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["model_id"]: m for s in report["scorecards"] for m in s["models"]}


def test_report_json_agrees_with_the_topic_and_redis(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    report = report_json(fleet, monkeypatch, capsys)
    expected = asyncio.run(truth(fleet))
    owners = [s["owner"] for s in report["scorecards"]]
    registered = sorted(
        {t["owner"].owner for t in expected.values() if t["owner"]}, key=str.casefold
    )
    assert owners == ["nobody", *registered]  # orphans first
    assert [m["model_id"] for m in report["scorecards"][0]["models"]] == [fleet.orphan]
    assert report["scorecards"][0]["models"][0]["orphan"] is True
    cards = cards_by_model(report)
    assert set(cards) == set(expected)
    assert report["now_ms"] - report["since_ms"] == 7 * 86_400_000
    for model, card in cards.items():
        t = expected[model]
        assert card["owner"] == (t["owner"].owner if t["owner"] else None), model
        if t["owner"]:
            assert card["owner_since_ms"] == t["owner"].updated_at_ms
            assert card["watched_by"][0]["role"] == "owner"
        else:
            assert card["watched_by"] == []
        assert card["pages"] == len(t["paged"]), model
        assert card["unacked"] == len(t["paged"]) - len(t["acks"])
        opened = [i["kind"] for i in card["incidents"] if i["state"] == "open"]
        assert sorted(opened) == t["open"], model
        assert card["versions"] == t["versions"], model
    degraded = cards[fleet.degraded]
    assert degraded["pages"] >= 1 and "performance_degradation" in expected[fleet.degraded]["open"]
    assert degraded["ack_seconds"] == [] and degraded["ack_median_s"] is None
    assert degraded["error_rate"] > degraded["baseline_error_rate"]
    # the status command's figures, unchanged
    _, out, _ = run_cli(monkeypatch, capsys, fleet.env, "status", "--json")
    for row in orjson.loads(out):
        card = cards[row["model_id"]]
        assert (card["error_rate"], card["label_coverage"]) == (
            row["error_rate"],
            row["label_coverage"],
        )


def test_an_ack_shows_as_time_to_acknowledge_and_a_watcher(
    fleet: Fleet,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    before = cards_by_model(report_json(fleet, monkeypatch, capsys))[fleet.degraded]
    paged = asyncio.run(truth(fleet))[fleet.degraded]["paged"]
    target = paged[0]
    code, _, err = run_cli(
        monkeypatch, capsys, fleet.env, "ack", target["alert_id"], "--by", "alice"
    )  # fmt: skip
    assert code == 0, err
    after_truth = asyncio.run(truth(fleet))[fleet.degraded]
    ack = after_truth["acks"][target["alert_id"]]
    card = cards_by_model(report_json(fleet, monkeypatch, capsys))[fleet.degraded]
    wanted = (ack["at_ms"] - detected_ms(target)) / 1000
    assert card["ack_seconds"] == [pytest.approx(wanted)]
    assert card["ack_median_s"] == pytest.approx(statistics.median([wanted]))
    assert card["unacked"] == before["unacked"] - 1
    assert {"name": "alice", "role": "acked", "at_ms": ack["at_ms"]} in card["watched_by"]

    owner = card["owner"]
    code, out, err = run_cli(monkeypatch, capsys, fleet.env, "report", "--owner", owner)
    assert code == 0, err
    assert [line for line in out.splitlines() if line.startswith("## ")] == [f"## {owner}"]
    assert "alice acked" in out and "(1 acked)" in out
    page = tmp_path / "report.html"
    code, _, err = run_cli(
        monkeypatch, capsys, fleet.env, "report", "--format", "html", "--out", str(page)
    )  # fmt: skip
    assert code == 0 and "wrote the scorecard" in err
    assert "alice acked" in page.read_text() and "<script" not in page.read_text()
    code, out, err = run_cli(monkeypatch, capsys, fleet.env, "report", "--owner", "mallory")
    assert code == 2 and out == ""
    assert err.startswith("watchkeeper: --owner 'mallory': no such owner")
    assert len(err.strip().splitlines()) == 1


async def test_the_ui_report_page_shows_the_same_scorecards(fleet: Fleet) -> None:
    redis = Redis.from_url(fleet.settings.redis_url)
    client = TestClient(TestServer(build_app(RedisSource(fleet.settings, redis))))
    await client.start_server()
    try:
        page = await client.get("/report", params={"since": "1d"})
        assert page.status == 200
        doc = parse(await page.text())
        shown = {
            s.attrs["data-owner"]: [r.attrs["data-model"] for r in s.find_all("tr")[1:]]
            for s in doc.find_all("section")
        }
        since_ms = int(time.time() * 1000) - 86_400_000
        report = await read_report(redis, fleet.settings, since_ms=since_ms)
        assert shown == {s.owner: [m.model_id for m in s.models] for s in report.scorecards}
        assert list(shown)[0] == "nobody" and shown["nobody"] == [fleet.orphan]
        fleet_page = parse(await (await client.get("/")).text())
        assert fleet_page.one("a", id="report-link").attrs["href"] == "/report"
    finally:
        await client.close()
        await redis.aclose()
