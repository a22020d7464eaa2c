"""Incidents per model and kind for the label-free and lifecycle alert kinds: a firing
alert opens its incident, a ``"status": "resolved"`` alert of the same kind closes it,
info never pages. Real Redis, real receivers on loopback, dead letters on the real broker,
time under the test's control (the harness of test_notifier)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
import test_notifier as base
from pydantic import ValidationError
from receivers import HttpReceiver
from test_notifier import ROUTING_KEY, Harness, alert

from streams.contract.alerts import alert_id, rfc3339_ms
from streams.notify.loop import parse_alert
from streams.settings import NotifySettings

pytestmark = pytest.mark.integration

make_harness = base.make_harness  # the fixture, shared with test_notifier
T0_MS = 1_763_700_000_000
FLEET = "*"


def signal(
    model: str,
    kind: str,
    index: int,
    *,
    status: str | None = None,
    severity: str = "warning",
) -> dict[str, Any]:
    """An alert of a label-free kind as its producers publish it (the alert schema plus
    ``status``; absent means firing)."""
    at_ms = T0_MS + index * 1000
    found: dict[str, Any] = {
        "schema_version": 1,
        "alert_id": alert_id(model, kind, "signals", index),
        "kind": kind,
        "model_id": model,
        "model_version": None,
        "detector": "signals",
        "signal": kind,
        "direction": None,
        "severity": severity,
        "event_time": rfc3339_ms(at_ms),
        "event_time_ms": at_ms,
        "detected_at": rfc3339_ms(at_ms),
        "outcome_index": None,
        "before": None,
        "after": None,
        "config_fingerprint": None,
        "owner": None,
        "runbook": None,
        "message": f"{kind} on {model}",
    }
    if status is not None:
        found["status"] = status
    return found


def events(http: HttpReceiver, path: str = "/pagerduty") -> list[tuple[str, str]]:
    """(event_action, dedup_key) of each PagerDuty event, in arrival order."""
    return [(r.json()["event_action"], r.json()["dedup_key"]) for r in http.at(path)]


async def is_open(h: Harness, model: str, kind: str) -> bool:
    return bool(await h.redis.exists(h.store.incident_key(model, kind)))


async def test_labels_missing_pages_the_owner_and_its_resolved_alert_closes_the_incident(
    make_harness: Any, http: HttpReceiver
) -> None:
    h = await make_harness()  # cooldown 3600 s: the resolve is not held back by it
    await h.own("fraud", f"pagerduty:{ROUTING_KEY}", f"webhook:{http.url}/hook")
    firing = signal("fraud", "labels_missing", 1)
    await h.run(firing)
    assert events(http) == [("trigger", f"watchkeeper-{firing['alert_id']}")]
    (page,) = http.at("/hook")
    assert page.json()["kind"] == "labels_missing" and page.json()["owner"] == "team-fraud"
    assert await is_open(h, "fraud", "labels_missing")
    assert not await is_open(h, "fraud", "performance_degradation")  # kinds stay apart

    await h.run(signal("fraud", "labels_missing", 2, status="resolved"))
    assert events(http) == [
        ("trigger", f"watchkeeper-{firing['alert_id']}"),
        ("resolve", f"watchkeeper-{firing['alert_id']}"),
    ]
    _, resolved = http.at("/hook")
    assert resolved.json()["notification_action"] == "resolve"
    assert resolved.json()["status"] == "resolved"
    assert not await is_open(h, "fraud", "labels_missing")


async def test_model_silent_of_the_whole_stream_pages_the_fallback_and_resolves_there(
    make_harness: Any, http: HttpReceiver
) -> None:
    """``*`` has no owner: like model_limit, its pages go to the fallback channels."""
    h = await make_harness(
        fallback_channels=[f"webhook:{http.url}/fallback", f"pagerduty:{ROUTING_KEY}"]
    )
    silent = signal(FLEET, "model_silent", 1, severity="critical")
    await h.run(silent)
    (page,) = http.at("/fallback")
    assert page.json()["model_id"] == FLEET and page.json()["kind"] == "model_silent"
    assert page.json()["notification_reason"] == "orphaned_model"
    assert await is_open(h, FLEET, "model_silent")

    await h.run(signal(FLEET, "model_silent", 2, status="resolved", severity="info"))
    _, resolved = http.at("/fallback")
    assert resolved.json()["notification_action"] == "resolve"
    key = f"watchkeeper-{silent['alert_id']}"
    assert events(http) == [("trigger", key), ("resolve", key)]
    assert not await is_open(h, FLEET, "model_silent")


async def test_an_info_prediction_drift_is_remembered_but_not_paged(
    make_harness: Any, http: HttpReceiver
) -> None:
    h = await make_harness()
    await h.own("fraud", f"webhook:{http.url}/hook")
    drift = signal("fraud", "prediction_drift", 1, severity="info")
    await h.run(drift)
    assert http.requests == []
    assert (await h.store.stats())["suppressed_info"] == 1
    assert (await h.store.alert(drift["alert_id"]))["kind"] == "prediction_drift"
    assert not await is_open(h, "fraud", "prediction_drift")


async def test_info_kinds_keep_a_warning_prediction_drift_from_paging(
    make_harness: Any, http: HttpReceiver
) -> None:
    h = await make_harness(info_kinds="prediction_drift,input_quality")
    await h.own("fraud", f"webhook:{http.url}/hook")
    drift = signal("fraud", "prediction_drift", 1, severity="warning")
    labels = signal("fraud", "labels_missing", 1, severity="warning")
    await h.run(drift, labels)
    (page,) = http.at("/hook")  # the other kind still pages
    assert page.json()["alert_id"] == labels["alert_id"] and page.json()["grouped_alerts"] == []
    assert (await h.store.stats())["suppressed_info"] == 1
    assert await h.store.alert(drift["alert_id"]) is not None


async def test_a_resolved_alert_with_no_open_incident_sends_nothing(
    make_harness: Any, http: HttpReceiver
) -> None:
    h = await make_harness()
    await h.own("fraud", f"pagerduty:{ROUTING_KEY}", f"webhook:{http.url}/hook")
    await h.run(signal("fraud", "input_quality", 1, status="resolved"))
    # a resolve of another kind does not close this one
    await h.run(signal("fraud", "estimated_degradation", 2))
    await h.run(signal("fraud", "input_quality", 3, status="resolved"))
    assert [a for a, _ in events(http)] == ["trigger"]
    assert await is_open(h, "fraud", "estimated_degradation")
    assert (await h.store.stats())["suppressed_info"] == 2


@pytest.mark.parametrize("kind", ["performance_degradation", "labels_missing"])
async def test_a_trigger_and_its_resolve_in_one_group_open_then_close_the_incident(
    make_harness: Any, http: HttpReceiver, kind: str
) -> None:
    h = await make_harness()
    await h.own("fraud", f"pagerduty:{ROUTING_KEY}")
    if kind == "performance_degradation":
        bad = alert("fraud", 10)
        good = alert("fraud", 900, before=0.2, after=0.05, direction="decrease")
    else:
        bad = signal("fraud", kind, 10)
        good = signal("fraud", kind, 900, status="resolved", severity="info")
    await h.run(good, bad)  # one group window, the resolve offered first
    key = f"watchkeeper-{bad['alert_id']}"
    assert events(http) == [("trigger", key), ("resolve", key)]
    assert not await is_open(h, "fraud", kind)
    assert await h.redis.keys(f"{h.settings.redis_prefix}notify:open:*") == []

    await h.run(bad, good)  # the group replayed: nothing reopens, nothing is re-sent
    assert len(http.at("/pagerduty")) == 2
    assert not await is_open(h, "fraud", kind)


async def test_a_resolve_older_than_a_firing_alert_in_its_group_leaves_the_new_incident_open(
    make_harness: Any, http: HttpReceiver
) -> None:
    h = await make_harness(cooldown_s=0)
    await h.own("fraud", f"pagerduty:{ROUTING_KEY}")
    first = signal("fraud", "model_silent", 1)
    await h.run(first)
    cleared = signal("fraud", "model_silent", 2, status="resolved")
    again = signal("fraud", "model_silent", 3)
    await h.run(again, cleared)  # cleared, then silent again, within one window
    assert events(http) == [
        ("trigger", f"watchkeeper-{first['alert_id']}"),
        ("resolve", f"watchkeeper-{first['alert_id']}"),
        ("trigger", f"watchkeeper-{again['alert_id']}"),
    ]
    assert await h.store.open_incident_key("fraud", "model_silent") == (
        f"watchkeeper-{again['alert_id']}"
    )


async def test_each_kind_is_its_own_incident(make_harness: Any, http: HttpReceiver) -> None:
    """A group of two kinds pages once per kind, each with its own dedup key, so resolving
    one does not close the other at the receiver."""
    h = await make_harness()
    await h.own("fraud", f"pagerduty:{ROUTING_KEY}")
    degradation = alert("fraud", 10)  # critical: first
    drift = signal("fraud", "prediction_drift", 10)
    await h.run(drift, degradation)
    await h.run(signal("fraud", "prediction_drift", 20, status="resolved"))
    assert events(http) == [
        ("trigger", f"watchkeeper-{degradation['alert_id']}"),
        ("trigger", f"watchkeeper-{drift['alert_id']}"),
        ("resolve", f"watchkeeper-{drift['alert_id']}"),
    ]
    assert await is_open(h, "fraud", "performance_degradation")
    assert not await is_open(h, "fraud", "prediction_drift")


async def test_a_redelivered_resolved_alert_sends_one_resolve_page(
    make_harness: Any, http: HttpReceiver
) -> None:
    h = await make_harness()
    await h.own("fraud", f"pagerduty:{ROUTING_KEY}")
    firing = signal("fraud", "estimated_degradation", 1)
    resolved = signal("fraud", "estimated_degradation", 2, status="resolved")
    await h.run(firing)
    await h.run(resolved)
    await h.run(resolved)  # re-read after a restart: the decision stands, the page is sent
    other = h.replica()
    other.offer(resolved)  # and a second replica reads it too
    h.clock.advance(h.settings.notify.group_wait_s + 0.001)
    await other.tick()
    assert [a for a, _ in events(http)] == ["trigger", "resolve"]
    assert (await h.store.stats())["duplicate"] == 2


async def test_a_resolved_alert_reusing_its_firing_alert_id_still_resolves(
    make_harness: Any, http: HttpReceiver
) -> None:
    """Producers may give the resolved alert the id of the one it resolves: decisions and
    deliveries of resolved alerts are keyed apart."""
    h = await make_harness()
    await h.own("fraud", f"pagerduty:{ROUTING_KEY}")
    firing = signal("fraud", "labels_missing", 1)
    await h.run(firing)
    await h.run({**firing, "status": "resolved", "severity": "info"})
    key = f"watchkeeper-{firing['alert_id']}"
    assert events(http) == [("trigger", key), ("resolve", key)]


def test_info_kinds_name_known_kinds_only() -> None:
    assert NotifySettings(info_kinds=" prediction_drift, input_quality,").info_kinds == [
        "input_quality",
        "prediction_drift",
    ]
    assert NotifySettings(info_kinds='["model_silent"]').info_kinds == ["model_silent"]
    assert NotifySettings().info_kinds == []
    with pytest.raises(ValidationError, match=r"unknown alert kind\(s\) 'drift'; known kinds: "):
        NotifySettings(info_kinds="prediction_drift,drift")


def test_info_kinds_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHKEEPER_NOTIFY_INFO_KINDS", "labels_missing,model_silent")
    assert NotifySettings().info_kinds == ["labels_missing", "model_silent"]
    monkeypatch.setenv("WATCHKEEPER_NOTIFY_INFO_KINDS", "labels-missing")
    with pytest.raises(ValidationError, match="labels-missing"):
        NotifySettings()


def test_an_alert_with_an_unknown_status_is_refused() -> None:
    assert parse_alert(orjson.dumps(signal("m", "model_silent", 1, status="resolved")))[0]
    found, why = parse_alert(orjson.dumps(signal("m", "model_silent", 1, status="ok")))
    assert found is None and "status" in why


async def test_maintenance_overdue_reaches_the_owner_as_a_notice_never_paging_duty(
    make_harness: Any, http: HttpReceiver
) -> None:
    """Info, yet delivered: the owner is the one who can confirm or retrain. No incident
    is opened (nothing to resolve or escalate) and PagerDuty is not woken for it."""
    h = await make_harness()
    await h.own("fraud", f"pagerduty:{ROUTING_KEY}", f"webhook:{http.url}/hook")
    overdue = signal("fraud", "maintenance_overdue", 1, severity="info")
    await h.run(overdue)
    (page,) = http.at("/hook")
    assert page.json()["kind"] == "maintenance_overdue" and page.json()["owner"] == "team-fraud"
    assert events(http) == []  # no PagerDuty event
    assert not await is_open(h, "fraud", "maintenance_overdue")
    await h.run(overdue)  # read again (a restart): not sent twice
    assert len(http.at("/hook")) == 1

    # a model nobody owns: nobody to remind, the orphan alert covers it
    await h.run(signal("ghost", "maintenance_overdue", 2, severity="info"))
    assert len(http.at("/hook")) == 1
