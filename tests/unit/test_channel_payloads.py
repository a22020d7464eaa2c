"""The pure payload builders of streams.channels, field by field against each format.

Slack: Block Kit limits (header 150, section text 3000, 10 fields, button url).
PagerDuty: Events API v2 (required routing_key/event_action/payload.summary/source/severity,
severity enum, resolve without payload). Webhook: HMAC-SHA256 over the signing time and
the exact body bytes, refused outside the tolerance (replays).
"""

from __future__ import annotations

import email.policy
import hashlib
import hmac
import importlib.metadata
from datetime import UTC, datetime
from email import message_from_bytes
from typing import Any

import orjson
import pytest
from pydantic import SecretStr

from detectors.base import Change
from detectors.signal import Signal
from streams.contract.alerts import build_alert, build_orphan_alert, build_signal_alert
from streams.contract.notification import Notification
from streams.notify.channels import (
    email_message,
    pagerduty_event,
    sign,
    slack_payload,
    verify_signature,
    webhook_body,
    webhook_headers,
)

EVENT_MS = 1_795_000_000_000
DETECTED = datetime(2026, 11, 21, 10, 5, tzinfo=UTC)
RUNBOOK = "https://runbooks.example.com/fraud"
ROUTING_KEY = "R0123456789abcdefghijklmnopqrstu"


def degradation(
    *,
    model: str = "fraud",
    detector: str = "adwin",
    index: int = 1200,
    before: float = 0.05,
    after: float = 0.31,
    direction: str = "increase",
) -> dict[str, Any]:
    change = Change(
        detector=detector,
        direction=direction,  # type: ignore[arg-type]
        index=index,
        event_time_ms=EVENT_MS + index,
        mean_before=before,
        n_before=800,
        mean_after=after,
        n_after=150,
    )
    return build_alert(
        change,
        model_id=model,
        model_version="3.2.0",
        detected_at=DETECTED,
        config_fingerprint="cfg-abc",
    )


def single() -> Notification:
    return Notification("fraud", (degradation(),), owner="risk-team@example.com", runbook=RUNBOOK)


def grouped() -> Notification:
    alerts = (degradation(), degradation(detector="page_hinkley", index=1210, after=0.08))
    return Notification("fraud", alerts, owner="risk-team@example.com", runbook=RUNBOOK)


def orphaned() -> Notification:
    """What the registry sweep publishes: no detector statistics, no before/after."""
    alert = build_orphan_alert("legacy-churn", detected_at=DETECTED, cooldown_s=3600)
    return Notification("legacy-churn", (alert,), owner=None, runbook=None, reason="orphaned_model")


# --------------------------------------------------------------------------- webhook


def test_webhook_body_is_the_primary_alert_with_owner_and_notification_context() -> None:
    note = single()
    body = orjson.loads(webhook_body(note))
    alert = note.primary
    for key in ("alert_id", "kind", "model_id", "model_version", "detector", "severity"):
        assert body[key] == alert[key]
    assert body["before"] == {"error_rate": 0.05, "count": 800}
    assert body["after"] == {"error_rate": 0.31, "count": 150}
    assert body["event_time"] == alert["event_time"]
    assert body["owner"] == "risk-team@example.com"
    assert body["runbook"] == RUNBOOK
    assert body["notification_reason"] == "alert"
    assert body["notification_action"] == "trigger"
    assert body["delivery_id"] == note.delivery_id
    assert body["grouped_alerts"] == []
    assert alert["owner"] is None, "the builder must not mutate the published alert"


def test_webhook_body_carries_the_other_alerts_of_a_group_in_full() -> None:
    note = grouped()
    body = orjson.loads(webhook_body(note))
    assert body["alert_id"] == note.alerts[0]["alert_id"]
    assert len(body["grouped_alerts"]) == 1
    other = body["grouped_alerts"][0]
    assert other["alert_id"] == note.alerts[1]["alert_id"]
    assert other["detector"] == "page_hinkley"
    assert other["after"] == {"error_rate": 0.08, "count": 150}
    assert set(note.alerts[1]) <= set(other)


def test_webhook_body_of_an_orphan_has_no_statistics_and_no_owner() -> None:
    body = orjson.loads(webhook_body(orphaned()))
    assert body["kind"] == "orphaned_model"
    assert body["notification_reason"] == "orphaned_model"
    assert body["owner"] is None
    assert body["before"] is None and body["after"] is None


NOW = 1_800_000_000


def test_webhook_headers_identify_the_alert_and_sign_time_and_exact_body() -> None:
    note = grouped()
    body = webhook_body(note)
    headers = webhook_headers(body, note, SecretStr("s3cret"), now=NOW + 0.7)
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"] == f"watchkeeper/{importlib.metadata.version('watchkeeper')}"
    assert headers["X-Watchkeeper-Alert-Id"] == note.alerts[0]["alert_id"]
    assert headers["X-Watchkeeper-Delivery"] == note.delivery_id
    signature = headers["X-Watchkeeper-Signature"]
    expected = hmac.new(b"s3cret", f"{NOW}.".encode() + body, hashlib.sha256).hexdigest()
    assert signature == f"t={NOW},v1={expected}" == sign(body, "s3cret", NOW)
    assert verify_signature(body, signature, "s3cret", now=NOW)
    assert verify_signature(body, signature, SecretStr("s3cret"), now=NOW + 299)
    assert not verify_signature(body, signature, "other", now=NOW)
    assert not verify_signature(body + b" ", signature, "s3cret", now=NOW)
    assert not verify_signature(body, None, "s3cret", now=NOW)
    assert not verify_signature(body, signature, None, now=NOW)


@pytest.mark.parametrize("skew", [301, -301, 3600, -86_400])
def test_a_signature_outside_the_tolerance_is_a_replay_and_refused(skew: int) -> None:
    body = webhook_body(single())
    signature = sign(body, "s3cret", NOW)
    assert not verify_signature(body, signature, "s3cret", now=NOW + skew)
    assert verify_signature(body, signature, "s3cret", tolerance_s=abs(skew), now=NOW + skew)


def test_a_replayed_body_under_a_new_timestamp_does_not_verify() -> None:
    body = webhook_body(single())
    old = sign(body, "s3cret", NOW)
    forged = old.replace(f"t={NOW}", f"t={NOW + 3600}")  # the attacker moves the time
    assert not verify_signature(body, forged, "s3cret", now=NOW + 3600)


@pytest.mark.parametrize(
    "header",
    [
        "sha256=" + hmac.new(b"s3cret", b"{}", hashlib.sha256).hexdigest(),  # the old scheme
        f"t={NOW}",
        "v1=00",
        f"t=abc,v1={'0' * 64}",
        f"t={NOW},t={NOW},v1={'0' * 64}",
        f"t=١٢,v1={'0' * 64}",  # Arabic-Indic digits: int() reads them, we do not
        f"t={NOW},v1=éé",
        "",
    ],
)
def test_malformed_signature_headers_are_refused(header: str) -> None:
    assert not verify_signature(b"{}", header, "s3cret", now=NOW)


def test_several_v1_values_verify_while_a_secret_is_rotated() -> None:
    body = b'{"a":1}'
    new = sign(body, "new-secret", NOW)
    old_v1 = sign(body, "old-secret", NOW).split(",")[1]
    both = f"{new},{old_v1}"
    assert verify_signature(body, both, "new-secret", now=NOW)
    assert verify_signature(body, both, "old-secret", now=NOW)
    assert not verify_signature(body, both, "third", now=NOW)


@pytest.mark.parametrize("secret", [None, "", SecretStr("")])
def test_webhook_headers_without_a_secret_carry_no_signature(secret: Any) -> None:
    note = single()
    headers = webhook_headers(webhook_body(note), note, secret)
    assert "X-Watchkeeper-Signature" not in headers
    assert headers["X-Watchkeeper-Delivery"] == note.delivery_id


def test_delivery_id_differs_between_trigger_and_resolve_but_dedup_key_does_not() -> None:
    alerts = (degradation(),)
    trigger = Notification("fraud", alerts, owner="o", runbook=None)
    resolve = Notification("fraud", alerts, owner="o", runbook=None, action="resolve")
    assert trigger.delivery_id != resolve.delivery_id
    assert trigger.dedup_key == resolve.dedup_key
    assert orjson.loads(webhook_body(resolve))["notification_action"] == "resolve"


# --------------------------------------------------------------------------- slack


def blocks_of(payload: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [b for b in payload["blocks"] if b["type"] == kind]


def test_slack_payload_has_fallback_text_header_fields_button_and_context() -> None:
    note = single()
    payload = slack_payload(note)
    assert note.title in payload["text"] and RUNBOOK in payload["text"]
    assert [b["type"] for b in payload["blocks"]] == ["header", "section", "actions", "context"]

    header = payload["blocks"][0]["text"]
    assert header["type"] == "plain_text" and header["text"] == note.title

    section = payload["blocks"][1]
    assert section["text"]["type"] == "mrkdwn" and section["text"]["verbatim"] is True
    assert "performance_degradation" in section["text"]["text"]
    fields = {f["text"].split("\n", 1)[0]: f["text"].split("\n", 1)[1] for f in section["fields"]}
    assert all(f["type"] == "plain_text" for f in section["fields"])  # ids copy verbatim
    assert fields["Model"] == "fraud"
    assert fields["Version"] == "3.2.0"
    assert fields["Severity"] == "critical"
    assert fields["Detector"] == "adwin"
    assert fields["Error rate before → after"] == "0.05 (n=800) → 0.31 (n=150)"
    assert fields["Event time"] == note.primary["event_time"]
    assert payload["unfurl_links"] is False and payload["unfurl_media"] is False

    (button,) = payload["blocks"][2]["elements"]
    assert button["type"] == "button"
    assert button["text"] == {"type": "plain_text", "text": "Runbook"}
    assert button["url"] == RUNBOOK

    context = " ".join(e["text"] for e in payload["blocks"][3]["elements"])
    assert note.primary["alert_id"] in context
    assert "risk-team@example.com" in context


def test_slack_payload_of_a_group_lists_every_alert_and_every_id() -> None:
    note = grouped()
    payload = slack_payload(note)
    section_text = payload["blocks"][1]["text"]["text"]
    assert "2 alerts" in section_text
    assert "adwin" in section_text and "page_hinkley" in section_text
    assert "(+1 more)" in payload["blocks"][0]["text"]["text"]
    context = payload["blocks"][-1]["elements"][0]["text"]
    for alert in note.alerts:
        assert alert["alert_id"] in context


def test_slack_payload_of_an_orphan_says_there_is_no_owner_and_has_no_button() -> None:
    payload = slack_payload(orphaned())
    types = [b["type"] for b in payload["blocks"]]
    assert "actions" not in types
    texts = [b["text"]["text"] for b in blocks_of(payload, "section")]
    assert any("No registered owner" in t and "orphaned_model" in t for t in texts)
    fields = [f["text"] for f in payload["blocks"][1]["fields"]]
    assert not any("Error rate" in f for f in fields), "orphans have no before/after"
    assert any(f.startswith("Detector\n") and "registry" in f for f in fields)
    assert "none registered" in payload["blocks"][-1]["elements"][1]["text"]


def test_slack_payload_respects_block_kit_limits_and_escapes_mrkdwn() -> None:
    model = "m<&>" + "x" * 400
    alerts = tuple(degradation(model=model, index=i) for i in range(1, 80))
    note = Notification(model, alerts, owner="<!channel>", runbook="not a url")
    payload = slack_payload(note)
    assert len(payload["blocks"][0]["text"]["text"]) <= 150
    for block in blocks_of(payload, "section"):
        assert len(block["text"]["text"]) <= 3000
        assert len(block.get("fields", [])) <= 10
        assert all(len(f["text"]) <= 2000 for f in block.get("fields", []))
    assert "actions" not in [b["type"] for b in payload["blocks"]], "a button needs a URL"
    assert any("not a url" in b["text"]["text"] for b in blocks_of(payload, "section"))
    owner = payload["blocks"][-1]["elements"][1]["text"]
    assert "<!channel>" not in owner and "&lt;!channel&gt;" in owner
    assert "<&>" not in payload["blocks"][1]["fields"][0]["text"]


# --------------------------------------------------------------------------- pagerduty


def test_pagerduty_trigger_has_the_v2_required_fields() -> None:
    note = single()
    event = pagerduty_event(note, ROUTING_KEY, "watchkeeper-prod")
    assert event["routing_key"] == ROUTING_KEY
    assert event["event_action"] == "trigger"
    assert event["dedup_key"] == note.dedup_key == f"watchkeeper-{note.primary['alert_id']}"
    assert event["client"] == "Watchkeeper"
    assert event["links"] == [{"href": RUNBOOK, "text": "Runbook"}]
    payload = event["payload"]
    assert payload["summary"] == note.title
    assert payload["source"] == "watchkeeper-prod"
    assert payload["severity"] == "critical"
    assert payload["timestamp"] == note.primary["event_time"]
    datetime.fromisoformat(payload["timestamp"])  # ISO 8601
    assert payload["component"] == "fraud"
    assert payload["group"] == "3.2.0"
    assert payload["class"] == "performance_degradation"
    details = payload["custom_details"]
    assert details["owner"] == "risk-team@example.com"
    assert details["detector"] == "adwin"
    assert details["before"] == {"error_rate": 0.05, "count": 800}
    assert details["after"] == {"error_rate": 0.31, "count": 150}
    assert details["alert_ids"] == [note.primary["alert_id"]]
    assert details["config_fingerprint"] == "cfg-abc"
    assert details["reason"] == "alert"


@pytest.mark.parametrize(
    ("after", "direction", "expected"),
    [(0.31, "increase", "critical"), (0.08, "increase", "warning"), (0.01, "decrease", "info")],
)
def test_pagerduty_severity_maps_to_the_v2_enum(
    after: float, direction: str, expected: str
) -> None:
    alert = degradation(after=after, direction=direction)
    event = pagerduty_event(Notification("fraud", (alert,), None, None), ROUTING_KEY, "wk")
    assert event["payload"]["severity"] == expected
    assert event["payload"]["severity"] in {"critical", "error", "warning", "info"}


def test_pagerduty_resolve_is_only_key_action_and_dedup_key() -> None:
    note = Notification("fraud", (degradation(),), "o", RUNBOOK, action="resolve")
    event = pagerduty_event(note, ROUTING_KEY, "wk")
    assert event == {
        "routing_key": ROUTING_KEY,
        "event_action": "resolve",
        "dedup_key": single().dedup_key,
    }


def test_pagerduty_group_and_orphan() -> None:
    group = pagerduty_event(grouped(), ROUTING_KEY, "wk")
    assert group["payload"]["custom_details"]["alert_ids"] == [
        a["alert_id"] for a in grouped().alerts
    ]
    assert len(group["payload"]["custom_details"]["alerts"]) == 2

    orphan = pagerduty_event(orphaned(), ROUTING_KEY, "wk")
    payload = orphan["payload"]
    assert "links" not in orphan
    assert "group" not in payload, "no model_version: group is omitted"
    assert payload["class"] == "orphaned_model"
    assert payload["severity"] == "warning"
    assert payload["custom_details"]["before"] is None
    assert payload["custom_details"]["owner"] is None
    assert "no registered owner" in payload["custom_details"]["no_owner"]


def test_pagerduty_summary_is_clipped_to_1024() -> None:
    model = "m" * 2000
    note = Notification(model, (degradation(model=model),), None, None)
    assert len(pagerduty_event(note, ROUTING_KEY, "wk")["payload"]["summary"]) == 1024


# --------------------------------------------------------------------------- email


def test_email_message_headers_and_body() -> None:
    note = grouped()
    msg = email_message(note, "oncall@example.com", "watchkeeper@example.com")
    assert msg["Subject"] == f"[Watchkeeper] {note.title}"
    assert msg["From"] == "watchkeeper@example.com"
    assert msg["To"] == "oncall@example.com"
    assert msg["Message-ID"] == f"<{note.delivery_id}@watchkeeper>"
    assert msg["X-Watchkeeper-Alert-Id"] == note.primary["alert_id"]
    assert msg.get_content_type() == "text/plain"
    body = msg.get_content()
    assert "Model:    fraud" in body
    assert "Owner:    risk-team@example.com" in body
    assert "Severity: critical" in body
    assert "detector:   adwin" in body and "detector:   page_hinkley" in body
    assert "error rate: 0.05 (n=800) → 0.31 (n=150)" in body
    assert "error rate: 0.05 (n=800) → 0.08 (n=150)" in body
    assert f"event time: {note.alerts[1]['event_time']}" in body
    assert f"Runbook: {RUNBOOK}" in body
    for alert in note.alerts:
        assert alert["alert_id"] in body
    # survives a round trip through bytes (what SMTP carries)
    parsed = message_from_bytes(msg.as_bytes(), policy=email.policy.default)
    assert parsed["Subject"] == msg["Subject"]


def test_email_message_of_an_orphan_says_so() -> None:
    msg = email_message(orphaned(), "fallback@example.com", "wk@example.com")
    body = msg.get_content()
    assert "NO REGISTERED OWNER" in body and "orphaned_model" in body
    assert "Owner:    none registered" in body
    assert "error rate" not in body
    assert "detector:   registry" in body
    assert "Runbook: none registered" in body


def test_email_subject_cannot_be_split_by_a_newline_in_a_model_id() -> None:
    model = "evil\r\nBcc: victim@example.com"
    note = Notification(model, (degradation(model=model),), None, None)
    msg = email_message(note, "oncall@example.com", "wk@example.com")
    headers = msg.as_bytes().split(b"\n\n", 1)[0]
    assert b"\nBcc:" not in headers
    assert "\n" not in msg["Subject"] and "\r" not in msg["Subject"]
    assert msg["Bcc"] is None


# --------------------------------------------------------------------------- possible duplicates


def test_a_possible_duplicate_is_marked_on_slack_and_email_where_receivers_cannot_dedupe() -> None:
    note = grouped()
    plain, marked = slack_payload(note), slack_payload(note, possible_duplicate=True)
    assert marked["text"] == f"[possible duplicate] {plain['text']}"
    (flag,) = [b for b in marked["blocks"] if b.get("block_id") == "watchkeeper_possible_duplicate"]
    assert blocks_of(marked, "header") == blocks_of(plain, "header")
    assert marked["blocks"][1] is flag and "Possible duplicate" in flag["text"]["text"]
    assert not any(b.get("block_id") for b in plain["blocks"])

    was = email_message(note, "oncall@example.com", "wk@example.com")
    again = email_message(note, "oncall@example.com", "wk@example.com", possible_duplicate=True)
    assert again["Subject"] == f"[Watchkeeper] [possible duplicate] {note.title}"
    assert again["X-Watchkeeper-Possible-Duplicate"] == "yes"
    assert was["X-Watchkeeper-Possible-Duplicate"] is None
    assert again["Message-ID"] == was["Message-ID"]  # the same page: clients may fold them
    assert again.get_content().splitlines()[2].startswith("POSSIBLE DUPLICATE:")


def test_a_possible_duplicate_keeps_the_webhook_delivery_id_and_says_so() -> None:
    note = single()
    body = webhook_body(note, possible_duplicate=True)
    headers = webhook_headers(body, note, "s3cret", possible_duplicate=True)
    assert headers["X-Watchkeeper-Delivery"] == note.delivery_id
    assert headers["X-Watchkeeper-Possible-Duplicate"] == "true"
    assert verify_signature(body, headers["X-Watchkeeper-Signature"], "s3cret")
    assert orjson.loads(body)["possible_duplicate"] is True
    assert "possible_duplicate" not in orjson.loads(webhook_body(note))
    assert "X-Watchkeeper-Possible-Duplicate" not in webhook_headers(body, note, "s3cret")


def test_a_notification_summary_is_shown_on_slack_and_in_the_mail() -> None:
    text = "3 page deliveries were dead-lettered <between> 10:00 and 10:05"
    note = Notification("watchkeeper", (degradation(),), None, None, details={"summary": text})
    sections = [b["text"]["text"] for b in blocks_of(slack_payload(note), "section")]
    assert "3 page deliveries were dead-lettered &lt;between&gt; 10:00 and 10:05" in sections
    assert text in email_message(note, "a@example.com", "wk@example.com").get_content()


def test_a_label_free_alert_is_paged_with_its_message_not_an_error_rate() -> None:
    """A signal has no error rates: its page says what moved, and a resolve says so."""
    signal = Signal(
        "labels_missing", "window", "label_coverage", "firing", "decrease", 7, EVENT_MS,
        "critical", {"coverage": 0.97}, {"coverage": 0.08, "count": 125},
        "only 8% of 125 predictions got their label within the expected 3600 s",
    )  # fmt: skip
    alert = build_signal_alert(
        signal, model_id="fraud", model_version="3.2.0", detected_at=DETECTED,
        config_fingerprint="cfg",
    )  # fmt: skip
    note = Notification("fraud", (alert,), owner="risk-team@example.com", runbook=RUNBOOK)
    body = email_message(note, "risk-team@example.com", "wk@example.com").get_content()
    assert "only 8% of 125 predictions got their label" in body
    assert "error rate" not in body
    resolved = {**alert, "status": "resolved", "severity": "info", "message": "labels are back"}
    note = Notification("fraud", (resolved,), owner="x", runbook=RUNBOOK, action="resolve")
    body = email_message(note, "x@example.com", "wk@example.com").get_content()
    assert "labels are back (resolved)" in body
