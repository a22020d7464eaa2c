"""The pure parts of ``status`` and ``alerts``: states and the worst-first order, what an
alert's paging records mean, the topic's alerts filtered and ordered, prefixes, ``--since``
and the text of tables and ``show``."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

import streams.views.history as history
from streams.cli.alerts import change_text, list_row, paging_text, show_lines
from streams.cli.status import age_text, percent, sparkline, status_row, utc_text
from streams.errors import ConfigError
from streams.settings import KafkaSecurity, Settings
from streams.views.fleet import ModelStatus, model_state, worst_first
from streams.views.history import (
    PAGE_STATES,
    AlertEntry,
    Published,
    page_state,
    parse_since,
    resolve_prefix,
    select,
)

NOW = 1_796_000_000_000  # 2026-11-30T00:53:20Z
HOUR = 3_600_000


def model(model_id: str, **kw: Any) -> ModelStatus:
    fields: dict[str, Any] = {
        "model_id": model_id,
        "owner": "team",
        "runbook": "https://runbooks.example.com/x",
        "orphan": False,
        "model_version": "1",
        "last_prediction_ms": NOW - HOUR,
        "label_coverage": 0.9,
        "error_rate": 0.1,
        "baseline_error_rate": 0.05,
        "outcomes": 10,
        "predictions": 12,
        "open_alerts": (),
        "silenced_until_ms": None,
        "silent": False,
        "state": "ok",
    }
    fields.update(kw)
    return ModelStatus(**fields)


# --- states and order ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("orphan", "severities", "silent", "seen", "state"),
    [
        (False, ("critical",), False, True, "critical"),
        (True, (), False, True, "critical"),
        (False, ("warning", "critical"), False, True, "critical"),
        (False, ("warning",), False, True, "warning"),
        (False, (), True, True, "warning"),
        (False, (), False, True, "ok"),
        (False, (), False, False, "unknown"),
        (False, ("warning",), False, False, "warning"),  # an incident outlives its snapshot
    ],
)
def test_model_state(
    orphan: bool, severities: tuple[str, ...], silent: bool, seen: bool, state: str
) -> None:
    assert model_state(orphan=orphan, open_severities=severities, silent=silent, seen=seen) == state


def test_worst_first_puts_critical_incidents_then_orphans_then_warnings_ok_and_unknown() -> None:
    rows = [
        model("a-unknown", state="unknown"),
        model("b-ok", state="ok"),
        model("c-orphan", state="critical", orphan=True, owner=None),
        model(
            "d-warn-two",
            state="warning",
            open_alerts=("labels_missing", "prediction_drift"),
            open_severities=("warning", "warning"),
        ),
        model("e-silent", state="warning", silent=True),
        model(
            "f-critical",
            state="critical",
            open_alerts=("performance_degradation",),
            open_severities=("critical",),
        ),
        model("a-ok", state="ok"),
        model(
            "z-critical-two",
            state="critical",
            open_alerts=("performance_degradation", "estimated_degradation"),
            open_severities=("critical", "warning"),
        ),
    ]
    order = [m.model_id for m in worst_first(reversed(rows))]
    assert order == [
        "z-critical-two",  # a critical incident, two open
        "f-critical",
        "c-orphan",  # critical for having no owner, no incident
        "d-warn-two",
        "e-silent",
        "a-ok",
        "b-ok",
        "a-unknown",
    ]


def test_model_status_json_is_plain_and_complete() -> None:
    m = model("m", open_alerts=("labels_missing",), open_severities=("warning",), trend=(0.1,))
    data = m.to_json()
    assert list(data) == list(m.__dataclass_fields__)
    assert data["open_alerts"] == ["labels_missing"] and data["trend"] == [0.1]
    assert orjson.loads(orjson.dumps(data)) == data


# --- status text --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ago_ms", "text"),
    [
        (0, "0s ago"),
        (45_000, "45s ago"),
        (60_000, "1m ago"),
        (3 * HOUR + 12 * 60_000 + 5_000, "3h12m ago"),
        (3 * HOUR + 5_000, "3h ago"),
        (14 * 24 * HOUR + 2 * HOUR + 59 * 60_000, "14d2h ago"),
        (-5 * 60_000, "in 5m"),
    ],
)
def test_age_text(ago_ms: int, text: str) -> None:
    assert age_text(NOW - ago_ms, NOW) == text


def test_utc_percent_and_sparkline() -> None:
    assert utc_text(NOW) == "2026-11-30 00:53Z"
    assert percent(None) == "-" and percent(0.1234) == "12.3%" and percent(1.0) == "100.0%"
    assert sparkline([]) == ""
    assert sparkline([0.0, 0.0]) == "▁▁"
    assert sparkline([0.0, 0.05, 0.1]) == "▁▅█"


def test_status_row() -> None:
    m = model(
        "fraud-eu",
        state="critical",
        open_alerts=("performance_degradation",),
        open_severities=("critical",),
        silenced_until_ms=NOW + HOUR,
        trend=(0.05, 0.1),
    )
    assert status_row(m, NOW) == (
        "CRIT",
        "fraud-eu",
        "team",
        "1h ago (2026-11-29 23:53Z)",
        "90.0%",
        "10.0% / 5.0%",
        "▅█",
        "performance_degradation (critical), silenced until 2026-11-30 01:53Z",
    )
    orphan = model(
        "x",
        owner=None,
        orphan=True,
        state="critical",
        last_prediction_ms=None,
        label_coverage=None,
        error_rate=None,
        baseline_error_rate=None,
        silent=True,
    )
    assert status_row(orphan, NOW) == (
        "CRIT", "x", "ORPHAN: no owner", "-", "-", "-", "", "not serving",
    )  # fmt: skip
    assert status_row(model("y", owner=None, state="unknown"), NOW)[:3] == ("?", "y", "-")
    assert status_row(model("*", owner=None), NOW)[1] == "* (every model)"  # the stream's row


# --- paging records -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("deliveries", "decision", "summarised", "remembered", "state"),
    [
        (["sent|5", "dlq|http 500"], "deliver", False, True, "paged"),  # one channel is enough
        (["pending|tok|9|page|0"], "deliver", False, True, "sending"),
        (["held|5"], "deliver", False, True, "held_back"),
        (["dlq|no_channel"], "deliver", False, True, "dead_lettered"),
        ([], "deliver", True, False, "summarised"),
        ([], "silenced", False, False, "silenced"),
        ([], "acknowledged", False, False, "acknowledged"),
        ([], "cooldown", False, False, "cooldown"),
        ([], "info", False, False, "info"),  # a resolve with nothing open
        ([], "resolve|watchkeeper-abc", False, False, "sending"),
        ([], "deliver", False, True, "sending"),
        ([], None, False, True, "info"),  # an info alert: remembered, never decided
        ([], None, False, False, "no_record"),
    ],
)
def test_page_state(
    deliveries: list[str], decision: str | None, summarised: bool, remembered: bool, state: str
) -> None:
    assert page_state(deliveries, decision, summarised=summarised, remembered=remembered) == state
    assert state in PAGE_STATES


# --- the topic's alerts -------------------------------------------------------------------------


def alert(alert_id: str, **kw: Any) -> dict[str, Any]:
    base = {
        "alert_id": alert_id,
        "model_id": "fraud-eu",
        "kind": "performance_degradation",
        "severity": "warning",
        "status": "firing",
        "detector": "adwin",
        "event_time_ms": NOW - 10 * HOUR,
        "detected_at": "2026-11-30T00:00:00.000Z",
        "before": {"error_rate": 0.04, "count": 800},
        "after": {"error_rate": 0.2, "count": 200},
        "owner": "team-fraud",
        "runbook": "https://runbooks.example.com/fraud-eu",
    }
    base.update(kw)
    return base


def published(a: dict[str, Any], offset: int = 0, stamp: int | None = None) -> Published:
    return Published(a, 0, offset, stamp)


def test_select_filters_dedupes_and_orders_newest_first() -> None:
    later = int(datetime(2026, 11, 30, 4, tzinfo=UTC).timestamp() * 1000)
    records = [
        published(alert("a1", detected_at="2026-11-29T00:00:00.000Z"), 0),
        published(alert("a2", detected_at="2026-11-30T00:00:00.000Z"), 1),
        # republished after a crash: listed once, from its first record
        published(alert("a1", detected_at="2026-11-30T06:00:00.000Z"), 2),
        # the same id resolved is another entry
        published(alert("a2", status="resolved", detected_at="2026-11-30T01:00:00.000Z"), 3),
        published(alert("b1", model_id="churn-us", detected_at="2026-11-30T02:00:00.000Z"), 4),
        published(alert("c1", kind="labels_missing", detected_at="2026-11-30T03:00:00.000Z"), 5),
        # no detected_at: the record's timestamp stands in
        published(alert("d1", detected_at=None), 6, stamp=later),
    ]
    ids = [(p.alert["alert_id"], p.offset) for p in select(records)]
    assert ids == [("d1", 6), ("c1", 5), ("b1", 4), ("a2", 3), ("a2", 1), ("a1", 0)]
    chosen = select(records, model="fraud-eu", kind="performance_degradation")
    assert [p.offset for p in chosen] == [6, 3, 1, 0]
    since = int(datetime(2026, 11, 30, 1, tzinfo=UTC).timestamp() * 1000)
    assert [p.offset for p in select(records, since_ms=since)] == [6, 5, 4, 3]
    assert select(records, since_ms=later + 1) == []
    assert select(records, model="nobody") == []


def test_parse_since() -> None:
    assert parse_since("7d", NOW) == NOW - 7 * 24 * HOUR
    assert parse_since("12h", NOW) == NOW - 12 * HOUR
    assert parse_since("1h30m", NOW) == NOW - 90 * 60_000
    assert parse_since("2026-11-19T00:00Z", NOW) == int(
        datetime(2026, 11, 19, tzinfo=UTC).timestamp() * 1000
    )
    assert parse_since("1795000000000", NOW) == 1_795_000_000_000  # epoch ms, not seconds
    for bad in ("yesterday", "2026-11-19T00:00", "7x", "5m1h", ""):
        with pytest.raises(ConfigError, match="--since"):
            parse_since(bad, NOW)


def test_resolve_prefix() -> None:
    ids = {"abcd1111": "m1 kind", "abcd2222": "m2 kind", "ffff": "m3 kind"}
    assert resolve_prefix(ids, "abcd1") == "abcd1111"
    assert resolve_prefix(ids, "ABCD2") == "abcd2222"
    assert resolve_prefix(ids, "ffff") == "ffff"
    with pytest.raises(
        ConfigError, match="ambiguous, 2 alerts match: abcd1111 .m1 kind., abcd2222"
    ):
        resolve_prefix(ids, "abcd")
    with pytest.raises(ConfigError, match="no alert with id or prefix '0123'"):
        resolve_prefix(ids, "0123")
    many = {f"aa{i:02d}": "" for i in range(12)}
    with pytest.raises(ConfigError, match="12 alerts match: .* and 2 more"):
        resolve_prefix(many, "aa")


def test_the_topic_reader_uses_the_configured_kafka_security(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    built: list[dict[str, Any]] = []

    class Stop(Exception):
        pass

    class Recorder:
        def __init__(self, **kwargs: Any) -> None:
            built.append(kwargs)

        async def start(self) -> None:
            raise Stop

        async def stop(self) -> None:
            return None

    async def answered(*_args: Any, **_kw: Any) -> None:
        return None  # the broker check has its own tests (test_kafka_security)

    monkeypatch.setattr(history, "check_broker", answered)
    monkeypatch.setattr(history, "AIOKafkaConsumer", Recorder)
    kafka = KafkaSecurity(
        security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-256",
        sasl_username="u", sasl_password="p",
    )  # fmt: skip
    with pytest.raises(Stop):
        asyncio.run(history.read_alerts(Settings(broker="kafka://b:9092", kafka=kafka)))
    (kwargs,) = built
    assert kwargs["bootstrap_servers"] == "b:9092"
    assert kwargs["security_protocol"] == "SASL_PLAINTEXT"
    assert kwargs["sasl_mechanism"] == "SCRAM-SHA-256"
    assert kwargs["sasl_plain_username"] == "u" and kwargs["sasl_plain_password"] == "p"
    assert kwargs["group_id"] is None  # reads, never joins or commits for a group


# --- alerts text --------------------------------------------------------------------------------


def entry(a: dict[str, Any], **kw: Any) -> AlertEntry:
    fields: dict[str, Any] = {
        "alert": a,
        "paged": False,
        "acked_by": None,
        "acked_at_ms": None,
        "silenced": False,
        "incident_open": False,
        "detected_at_ms": NOW - 60_000,
    }
    fields.update(kw)
    return AlertEntry(**fields)


def test_list_row_and_paging_text() -> None:
    e = entry(
        alert("0123456789abcdef0123456789abcdef"),
        paged=True,
        page_state="paged",
        paged_at_ms=NOW,
        acked_by="alice",
        incident_open=True,
    )
    assert list_row(e, NOW) == (
        "2026-11-30 00:52Z (1m ago)",
        "0123456789ab",
        "fraud-eu",
        "performance_degradation",
        "warning",
        "error 4.0% -> 20.0%",
        "paged, acked by alice",
        "open",
    )
    resolved = entry(alert("ee", kind="labels_missing", status="resolved", message="back"))
    assert list_row(resolved, NOW)[3:6] == ("labels_missing (resolved)", "warning", "back")
    assert paging_text(entry(alert("x"), silenced=True, escalated=True)) == (
        "no record, escalated, model silenced now"
    )
    assert paging_text(entry(alert("x"), silenced=True, page_state="silenced")) == "silenced"


def test_change_text_prefers_the_message_and_cuts_it() -> None:
    assert change_text(alert("x", message="m" * 100), most=10) == "m" * 9 + "…"
    assert change_text(alert("x", before=None, after=None)) == "-"
    assert change_text(alert("x", before={"coverage": 0.9}, after={"coverage": 0.2})) == "-"


def test_show_lines_hold_the_whole_alert_and_its_paging_state() -> None:
    a = alert("0123", message="the error rose", config_fingerprint="cfg", extra={"k": [1]})
    e = entry(
        a,
        paged=True,
        page_state="paged",
        paged_at_ms=NOW - 30_000,
        acked_by="alice",
        acked_at_ms=NOW - 10_000,
        silenced=True,
        silenced_until_ms=NOW + HOUR,
        incident_open=True,
        escalated=True,
    )
    lines = show_lines(e, NOW)
    names = [n for n, _ in lines]
    assert set(a) <= set(names)  # every field of the alert
    shown = dict(lines)
    assert shown["alert_id"] == "0123"
    assert shown["before"] == "error_rate=0.04  count=800"
    assert shown["extra"] == '{"k":[1]}'
    assert shown["runbook"] == "https://runbooks.example.com/fraud-eu"
    assert shown["paged"] == "yes, at 2026-11-30T00:52:50Z (30s ago)"
    assert shown["page state"] == "paged (a page reached at least one channel)"
    assert shown["acknowledged"] == "by alice at 2026-11-30T00:53:10Z (10s ago)"
    assert shown["silenced"] == "yes, its model until 2026-11-30T01:53:20Z"
    assert shown["incident"] == "open for fraud-eu performance_degradation"
    assert shown["escalated"] == "yes"
    improvement = replace(e, alert=alert("9", kind="performance_improvement"), incident_open=False)
    quiet = dict(show_lines(replace(improvement, paged=False, acked_by=None, silenced=False,
                                    silenced_until_ms=None), NOW))  # fmt: skip
    assert quiet["incident"] == "none open for fraud-eu performance_degradation"
    assert quiet["acknowledged"] == "no" and quiet["silenced"] == "no" and quiet["paged"] == "no"


def test_alert_entry_json_is_plain_and_complete() -> None:
    e = entry(alert("x"), page_state="cooldown")
    data = e.to_json()
    assert list(data) == list(AlertEntry.__dataclass_fields__)
    assert orjson.loads(orjson.dumps(data)) == data
