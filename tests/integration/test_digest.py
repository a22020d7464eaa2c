"""The weekly digest (streams.notify.digest) with a short period: two notifier replicas on
the real broker and Redis page a real HTTP receiver; each owner gets exactly one digest
per period (their scorecard), the fallback gets the whole report, PagerDuty gets none,
and nothing goes out for the period in which the notifiers started."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from receivers import HttpReceiver
from redis.asyncio import Redis
from test_pipeline import isolated_settings

from streams.contract.alerts import rfc3339_ms
from streams.notify.digest import DIGEST_KIND, period_start
from streams.notify.loop import run_notifier
from streams.replay.source import publish_alerts
from streams.settings import NotifySettings
from streams.store.owners import Owner, OwnerRegistry
from streams.topology import ensure_topics

pytestmark = [pytest.mark.integration]

EVERY_S = 3.0
ROUTING_KEY = "R" * 32


def digests(http: HttpReceiver, path: str) -> list[dict[str, Any]]:
    return [b for r in http.at(path) if (b := r.json()).get("kind") == DIGEST_KIND]


def alert(model_id: str, detected_ms: int | None = None) -> dict[str, Any]:
    """A critical drift alert, detected at ``detected_ms`` (default now)."""
    at = int(time.time() * 1000) if detected_ms is None else detected_ms
    return {
        "alert_id": hashlib.sha256(f"{model_id}-{at}".encode()).hexdigest()[:32],
        "model_id": model_id,
        "kind": "prediction_drift",
        "severity": "critical",
        "status": "firing",
        "model_version": "4.2",
        "detected_at": rfc3339_ms(at),
        "event_time_ms": at,
    }


def pages(http: HttpReceiver) -> list[dict[str, Any]]:
    """The owner's pages that are not digests."""
    return [b for r in http.at("/team-fraud") if (b := r.json()).get("kind") != DIGEST_KIND]


async def test_one_digest_per_owner_per_period_across_two_replicas(
    kafka_bootstrap: str, redis_url: str, tmp_path: Path
) -> None:
    http = await HttpReceiver().start()
    notify = NotifySettings(
        group_id=f"digest-{tmp_path.name}",
        group_wait_s=0.2,
        allow_private_targets=["127.0.0.1"],
        fallback_channels=[f"webhook:{http.url}/fallback"],
        max_pages_per_channel_per_min=0,
        pagerduty_url=f"{http.url}/pagerduty",
        digest_every_s=EVERY_S,
    )
    settings = isolated_settings(kafka_bootstrap, redis_url, tmp_path).model_copy(
        update={"notify": notify}
    )
    await ensure_topics(settings)
    redis = Redis.from_url(redis_url)
    stop = asyncio.Event()
    replicas: list[asyncio.Task[None]] = []
    try:
        registry = OwnerRegistry(redis, settings.redis_prefix)
        for model, owner, channels in (
            ("fraud-eu", "team-fraud", [f"webhook:{http.url}/team-fraud"]),
            ("fraud-us", "team-fraud", [f"webhook:{http.url}/team-fraud"]),
            ("churn", "team-churn", [f"webhook:{http.url}/team-churn", f"pagerduty:{ROUTING_KEY}"]),
            ("ranker", "team-pd", [f"pagerduty:{ROUTING_KEY}"]),
        ):
            await registry.set(
                Owner.from_specs(
                    model, owner=owner, channels=channels, runbook=f"https://rb.example.com/{model}"
                )
            )
        started = time.time()
        replicas = [asyncio.create_task(run_notifier(settings, stop=stop)) for _ in range(2)]
        deadline = time.monotonic() + 60

        def waiting(done: bool) -> bool:
            assert time.monotonic() < deadline, [r.path for r in http.requests]
            assert not any(r.done() for r in replicas), [
                r.exception() for r in replicas if r.done()
            ]
            return not done

        # a first page shows the replicas consume; then a second alert, detected (by its
        # own clock) early in the next period, is in that period's digest
        await publish_alerts(kafka_bootstrap, settings.topics.alerts, [alert("fraud-eu")])
        while waiting(len(pages(http)) == 1):
            await asyncio.sleep(0.1)
        window_s = period_start(time.time(), EVERY_S) + EVERY_S
        second = alert("fraud-us", int((window_s + 0.5) * 1000))
        await publish_alerts(kafka_bootstrap, settings.topics.alerts, [second])
        stamp = f"digest-{int(window_s)}-"
        while waiting(
            len({d["alert_id"] for d in digests(http, "/team-fraud")}) >= 3
            and any(d["alert_id"].startswith(stamp) for d in digests(http, "/team-fraud"))
        ):
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        await asyncio.gather(*replicas, return_exceptions=True)
        await http.stop()
        await redis.aclose()

    for path in ("/team-fraud", "/team-churn", "/fallback"):
        got = digests(http, path)
        per_period = Counter(d["alert_id"].split("-")[1] for d in got)  # period start
        assert per_period and max(per_period.values()) == 1, (path, per_period)
        for d in got:
            # none as the notifiers start: the first goes out once a period has begun
            # with them running
            assert d["event_time_ms"] >= (period_start(started, EVERY_S) + EVERY_S) * 1000
    # one digest per period per owner, even with two replicas: the same periods everywhere
    periods = {d["alert_id"].split("-")[1] for d in digests(http, "/team-fraud")}
    assert {d["alert_id"].split("-")[1] for d in digests(http, "/fallback")} >= periods - {
        max(periods)
    }
    assert http.at("/pagerduty") == []  # neither the digest nor anything else went there

    [last] = [d for d in digests(http, "/team-fraud") if d["alert_id"].startswith(stamp)]
    card = last["notification_details"]["scorecard"]
    assert card["owner"] == "team-fraud"
    assert sorted(m["model_id"] for m in card["models"]) == ["fraud-eu", "fraud-us"]
    us = next(m for m in card["models"] if m["model_id"] == "fraud-us")
    assert (us["alerts"], us["pages"], us["unacked"], us["versions"]) == (1, 1, 1, ["4.2"])
    assert [(i["kind"], i["state"]) for i in us["incidents"]] == [("prediction_drift", "open")]
    eu = next(m for m in card["models"] if m["model_id"] == "fraud-eu")
    assert eu["alerts"] == 0  # its alert was detected before this period
    assert [(i["kind"], i["state"]) for i in eu["incidents"]] == [("prediction_drift", "open")]
    summary = last["notification_details"]["summary"]
    assert "Watchkeeper scorecard for team-fraud" in summary
    assert summary.endswith("watchkeeper report --since 3s --owner team-fraud")
    churn = digests(http, "/team-churn")[-1]["notification_details"]["scorecard"]
    assert [m["model_id"] for m in churn["models"]] == ["churn"]
    everyone = digests(http, "/fallback")[-1]["notification_details"]
    assert [s["owner"] for s in everyone["report"]["scorecards"]] == [
        "team-churn",
        "team-fraud",
        "team-pd",
    ]
    # the owners' own pages went out once each
    assert sorted(p["model_id"] for p in pages(http)) == ["fraud-eu", "fraud-us"]
