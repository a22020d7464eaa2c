"""What is overdue, and the maintenance_overdue alerts it raises: periods counted from the
right moment, one id per (model, reason, period), a new series after a confirmation."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError
from redis.asyncio import Redis

from streams.settings import NotifySettings, Settings
from streams.store.maintenance import (
    VersionLog,
    judge,
    maintenance_alerts,
    version_since,
)
from streams.store.owners import Owner

EMAIL = "email:fraud-oncall@example.com"
RUNBOOK = "https://wiki.example.com/runbooks/"
DAY_MS = 86_400_000
T0 = 1_790_000_000_000


def owner(model_id: str = "fraud-eu", **extra: Any) -> Owner:
    specs: dict[str, Any] = {
        "owner": "team-fraud",
        "channels": [EMAIL],
        "runbook": RUNBOOK + model_id,
        "updated_at_ms": T0,
    }
    return Owner.from_specs(model_id, **(specs | extra))


def reasons(found: list[Any]) -> list[tuple[str, str]]:
    return [(item.model_id, item.reason) for item, _, _ in found]


def test_an_owner_is_unconfirmed_from_the_end_of_its_period_counted_from_registration():
    o = owner(confirm_every="30d")
    assert judge([o], {}, T0 + 30 * DAY_MS - 1) == []
    [(item, entry, period_s)] = judge([o], {}, T0 + 30 * DAY_MS)
    assert (item.model_id, item.owner, item.reason, item.since_ms) == (
        "fraud-eu",
        "team-fraud",
        "unconfirmed",
        T0,
    )
    assert entry is o and period_s == 30 * 86_400
    assert "has not been confirmed since" in item.message
    assert "`watchkeeper owners confirm fraud-eu --by YOUR_NAME`" in item.message


def test_the_default_period_is_90_days_and_a_confirmation_restarts_it():
    o = owner()
    assert reasons(judge([o], {}, T0 + 90 * DAY_MS)) == [("fraud-eu", "unconfirmed")]
    confirmed = o.confirmed(by="ana", at_ms=T0 + 80 * DAY_MS)
    assert judge([confirmed], {}, T0 + 169 * DAY_MS) == []
    [(item, _, _)] = judge([confirmed], {}, T0 + 170 * DAY_MS)
    assert item.since_ms == T0 + 80 * DAY_MS
    assert "last confirmed by ana" in item.message and "90d" in item.message


def test_not_retrained_needs_a_period_and_a_known_version():
    fresh = owner("a", confirm_every="365d", retrain_every="7d")
    no_period = owner("b", confirm_every="365d")
    unseen = owner("c", confirm_every="365d", retrain_every="7d")
    current = {"a": ("2.1.0", T0 + DAY_MS), "b": ("1.0", T0)}
    now = T0 + 8 * DAY_MS
    assert judge([fresh, no_period, unseen], current, now - 1) == []
    [(item, _, period_s)] = judge([unseen, no_period, fresh], current, now)
    assert (item.model_id, item.reason, item.since_ms) == ("a", "not_retrained", T0 + DAY_MS)
    assert period_s == 7 * 86_400
    assert "'2.1.0'" in item.message and "retrain_every of 7d" in item.message


def test_items_come_sorted_by_model_then_reason():
    both = owner("m", confirm_every="1d", retrain_every="1d")
    other = owner("a", confirm_every="1d")
    found = judge([both, other], {"m": ("v1", T0)}, T0 + 2 * DAY_MS)
    assert reasons(found) == [("a", "unconfirmed"), ("m", "unconfirmed"), ("m", "not_retrained")]


def test_a_model_id_is_shell_quoted_in_the_fix():
    o = owner("fraud$(id)")
    [(item, _, _)] = judge([o], {}, T0 + 90 * DAY_MS)
    assert "watchkeeper owners confirm 'fraud$(id)' --by" in item.message


def test_the_alert_is_info_for_the_owner_with_no_statistics():
    o = owner(confirm_every="30d")
    [alert] = maintenance_alerts(judge([o], {}, T0 + 31 * DAY_MS), T0 + 31 * DAY_MS)
    assert alert["kind"] == "maintenance_overdue" and alert["severity"] == "info"
    assert (alert["owner"], alert["runbook"]) == ("team-fraud", RUNBOOK + "fraud-eu")
    assert (alert["before"], alert["after"], alert["status"]) == (None, None, "firing")
    assert (alert["detector"], alert["signal"]) == ("maintenance", "unconfirmed")
    assert "owners confirm" in alert["message"]
    assert alert["event_time_ms"] == T0 + 31 * DAY_MS


def ids(owners: list[Owner], current: dict[str, tuple[str, int]], now_ms: int) -> list[str]:
    return [a["alert_id"] for a in maintenance_alerts(judge(owners, current, now_ms), now_ms)]


def test_one_alert_id_per_model_reason_and_period():
    o = owner(confirm_every="30d", retrain_every="30d")
    current = {"fraud-eu": ("v1", T0)}
    first = ids([o], current, T0 + 30 * DAY_MS)
    assert len(set(first)) == 2  # the reasons differ
    assert ids([o], current, T0 + 59 * DAY_MS) == first  # the same period: the same alerts
    second = ids([o], current, T0 + 60 * DAY_MS)
    assert set(second).isdisjoint(first)  # the next period raises again
    other = owner("churn", confirm_every="30d")
    assert set(ids([other], {}, T0 + 30 * DAY_MS)).isdisjoint(first)


def test_a_confirmation_starts_a_new_series_of_ids():
    o = owner(confirm_every="30d")
    before = ids([o], {}, T0 + 30 * DAY_MS)
    confirmed = o.confirmed(by="ana", at_ms=T0 + 31 * DAY_MS)
    after = ids([confirmed], {}, T0 + 61 * DAY_MS)  # again one period overdue
    assert len(after) == 1 and after != before


def test_version_since_reads_the_versions_hash():
    fields = {b"current": b"2.0", b"v:2.0": b"1234", b"v:1.0": b"1000"}
    assert version_since(fields) == ("2.0", 1234)
    assert version_since({}) is None
    assert version_since({"current": "x", "v:x": "not a number"}) is None


def test_the_version_log_writes_only_new_or_changed_versions_and_refreshes():
    now = [100.0]
    log = VersionLog(
        Redis(), "t:", retention_ms=DAY_MS, refresh_s=60.0, monotonic=lambda: now[0]
    )  # no command is sent: only note() runs here
    log.note({"a": "1", "b": "", "c": "3"})
    assert log._pending == {"a": "1", "c": "3"}  # an empty version is not judged
    log._pending.clear()
    log._written = {"a": ("1", 160.0), "c": ("3", 160.0)}
    log.note({"a": "1", "c": "4"})
    assert log._pending == {"c": "4"}
    now[0] = 160.0
    log.note({"a": "1"})
    assert log._pending == {"c": "4", "a": "1"}  # due for its refresh


def test_the_new_kinds_are_known_to_the_notifier_settings():
    kinds = "maintenance_overdue,version_changed,version_regression,feature_drift,schema_change"
    assert NotifySettings(info_kinds=kinds).info_kinds == sorted(kinds.split(","))
    with pytest.raises(ValidationError, match="unknown alert kind"):
        NotifySettings(info_kinds="maintenance_overdew")


def test_the_check_interval_is_a_setting():
    assert Settings().maintenance_check_s == 3600.0
    assert Settings(maintenance_check_s=0).maintenance_check_s == 0
    with pytest.raises(ValidationError, match="maintenance_check_s"):
        Settings(maintenance_check_s=-1)
