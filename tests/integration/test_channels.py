"""ChannelSender against real receivers on loopback (tests/receivers.py): an aiohttp server
that records what it gets and answers as scripted, an aiosmtpd SMTP server, and a TCP server
that hangs up. Nothing is mocked; every delivery crosses a TCP socket. The receivers are on
loopback, which the outbound policy refuses unless allowed: ``settings()`` allows
127.0.0.1, and the policy tests below leave it out.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from aiosmtpd.smtp import AuthResult, LoginPassword
from receivers import (
    GarbageServer,
    HangUpServer,
    HttpReceiver,
    Reply,
    Request,
    SmtpReceiver,
    free_port,
)

from detectors.base import Change
from streams.contract.alerts import build_alert, build_orphan_alert
from streams.contract.notification import Channel, Notification, parse_channel
from streams.notify.channels import (
    ChannelSender,
    DeliveryError,
    pagerduty_event,
    slack_payload,
    verify_signature,
    webhook_body,
)
from streams.settings import NotifySettings

pytestmark = pytest.mark.integration

EVENT_MS = 1_795_000_000_000
DETECTED = datetime(2026, 11, 21, 10, 5, tzinfo=UTC)
RUNBOOK = "https://runbooks.example.com/fraud"
ROUTING_KEY = "R0123456789abcdefghijklmnopqrstu"
SECRET = "hook-secret"


# --------------------------------------------------------------------------- alerts


def degradation(*, detector: str = "adwin", index: int = 1200, after: float = 0.31) -> dict:
    change = Change(
        detector=detector,
        direction="increase",
        index=index,
        event_time_ms=EVENT_MS + index,
        mean_before=0.05,
        n_before=800,
        mean_after=after,
        n_after=150,
    )
    return build_alert(
        change,
        model_id="fraud",
        model_version="3.2.0",
        detected_at=DETECTED,
        config_fingerprint="cfg-abc",
    )


NOTES = {
    "single": Notification("fraud", (degradation(),), "risk-team@example.com", RUNBOOK),
    "grouped": Notification(
        "fraud",
        (degradation(), degradation(detector="page_hinkley", index=1210, after=0.08)),
        "risk-team@example.com",
        RUNBOOK,
    ),
    "orphan": Notification(
        "legacy-churn",
        (build_orphan_alert("legacy-churn", detected_at=DETECTED, cooldown_s=3600),),
        None,
        None,
        reason="orphaned_model",
    ),
}


# --------------------------------------------------------------------------- receivers


def settings(**overrides: Any) -> NotifySettings:
    values: dict[str, Any] = {
        "request_timeout_s": 5.0,
        "webhook_secret": SECRET,
        "source": "wk-test",
        "smtp_from": "watchkeeper@example.com",
        "allow_private_targets": ["127.0.0.1"],
    }
    values.update(overrides)
    return NotifySettings(**values)


async def deliver_error(
    sender: ChannelSender, channel: Channel, note: Notification
) -> DeliveryError:
    with pytest.raises(DeliveryError) as caught:
        await sender.deliver(channel, note)
    return caught.value


async def deliver_one(
    http: HttpReceiver, spec: str, note: Notification, **overrides: Any
) -> Request:
    """Deliver ``note`` to the channel ``spec`` with a fresh sender; the one request it made."""
    async with ChannelSender(settings(**overrides)) as sender:
        await sender.deliver(parse_channel(spec), note)
    (req,) = http.requests
    return req


# --------------------------------------------------------------------------- payloads on the wire


@pytest.mark.parametrize("name", list(NOTES))
async def test_webhook_delivers_the_signed_alert(http: HttpReceiver, name: str) -> None:
    note = NOTES[name]
    req = await deliver_one(http, f"webhook:{http.url}/hooks/wk", note)
    assert (req.method, req.path) == ("POST", "/hooks/wk")
    assert req.headers["Content-Type"] == "application/json"
    assert req.headers["User-Agent"].startswith("watchkeeper/")
    assert req.headers["X-Watchkeeper-Alert-Id"] == note.primary["alert_id"]
    assert req.headers["X-Watchkeeper-Delivery"] == note.delivery_id
    signature = req.headers["X-Watchkeeper-Signature"]
    assert verify_signature(req.body, signature, SECRET)
    assert not verify_signature(req.body, signature, "another-secret")
    assert req.body == webhook_body(note)

    body = orjson.loads(req.body)
    assert body["alert_id"] == note.primary["alert_id"]
    assert body["model_id"] == note.model_id
    assert body["owner"] == note.owner
    assert body["runbook"] == note.runbook
    assert body["notification_reason"] == note.reason
    assert body["notification_action"] == "trigger"
    assert body["delivery_id"] == note.delivery_id
    assert [a["alert_id"] for a in body["grouped_alerts"]] == [
        a["alert_id"] for a in note.alerts[1:]
    ]


async def test_webhook_without_a_secret_is_unsigned(http: HttpReceiver) -> None:
    http.answer("/h", 204)
    req = await deliver_one(http, f"webhook:{http.url}/h", NOTES["single"], webhook_secret=None)
    assert "X-Watchkeeper-Signature" not in req.headers


@pytest.mark.parametrize("name", list(NOTES))
async def test_slack_delivers_blocks(http: HttpReceiver, name: str) -> None:
    note = NOTES[name]
    req = await deliver_one(http, f"slack:{http.url}/services/T/B/x", note)
    assert req.method == "POST" and req.headers["Content-Type"] == "application/json"
    assert "X-Watchkeeper-Signature" not in req.headers, "Slack URLs carry their own secret"
    payload = orjson.loads(req.body)
    assert payload == slack_payload(note)
    assert note.title in payload["text"]
    types = [b["type"] for b in payload["blocks"]]
    assert types[0] == "header" and types[1] == "section" and types[-1] == "context"
    assert payload["blocks"][0]["text"]["type"] == "plain_text"
    if note.runbook:
        (actions,) = [b for b in payload["blocks"] if b["type"] == "actions"]
        assert actions["elements"][0]["type"] == "button"
        assert actions["elements"][0]["url"] == RUNBOOK
    else:
        assert "actions" not in types
    if name == "orphan":
        assert any("No registered owner" in b["text"]["text"] for b in payload["blocks"][2:-1])
    context = " ".join(e["text"] for e in payload["blocks"][-1]["elements"])
    assert all(a["alert_id"] in context for a in note.alerts)


@pytest.mark.parametrize("name", list(NOTES))
async def test_pagerduty_trigger_goes_to_the_events_url(http: HttpReceiver, name: str) -> None:
    note = NOTES[name]
    http.answer("/v2/enqueue", 202)
    pd_url = f"{http.url}/v2/enqueue"
    req = await deliver_one(http, f"pagerduty:{ROUTING_KEY}", note, pagerduty_url=pd_url)
    assert (req.method, req.path) == ("POST", "/v2/enqueue")
    assert req.headers["Content-Type"] == "application/json"
    event = orjson.loads(req.body)
    assert event == pagerduty_event(note, ROUTING_KEY, "wk-test")
    assert event["routing_key"] == ROUTING_KEY
    assert event["event_action"] == "trigger"
    assert event["dedup_key"] == note.dedup_key
    payload = event["payload"]
    assert payload["summary"] == note.title and payload["source"] == "wk-test"
    assert payload["severity"] in {"critical", "error", "warning", "info"}
    assert payload["component"] == note.model_id
    assert payload["class"] == note.primary["kind"]
    assert payload["custom_details"]["alert_ids"] == [a["alert_id"] for a in note.alerts]


async def test_pagerduty_resolve_carries_the_trigger_dedup_key(http: HttpReceiver) -> None:
    trigger = NOTES["single"]
    resolve = Notification("fraud", trigger.alerts, trigger.owner, RUNBOOK, action="resolve")
    http.answer("/v2/enqueue", 202, 202)
    cfg = settings(pagerduty_url=f"{http.url}/v2/enqueue")
    async with ChannelSender(cfg) as sender:
        await sender.deliver(Channel("pagerduty", ROUTING_KEY), trigger)
        await sender.deliver(Channel("pagerduty", ROUTING_KEY), resolve)

    first, second = (orjson.loads(r.body) for r in http.requests)
    assert second == {
        "routing_key": ROUTING_KEY,
        "event_action": "resolve",
        "dedup_key": first["dedup_key"],
    }


@pytest.mark.parametrize("name", list(NOTES))
async def test_email_is_delivered_over_smtp(smtp: SmtpReceiver, name: str) -> None:
    note = NOTES[name]
    cfg = settings(smtp_host="127.0.0.1", smtp_port=smtp.port)
    async with ChannelSender(cfg) as sender:
        await sender.deliver(parse_channel("email:oncall@example.com"), note)

    (mail,) = smtp.received
    assert mail.mail_from == "watchkeeper@example.com"
    assert mail.rcpt_tos == ["oncall@example.com"]
    msg = mail.message
    assert msg["Subject"] == f"[Watchkeeper] {note.title}"
    assert msg["From"] == "watchkeeper@example.com"
    assert msg["To"] == "oncall@example.com"
    assert msg["Message-ID"] == f"<{note.delivery_id}@watchkeeper>"
    assert msg["X-Watchkeeper-Alert-Id"] == note.primary["alert_id"]
    body = msg.get_content()
    assert f"Model:    {note.model_id}" in body
    assert f"Severity: {note.severity}" in body
    for alert in note.alerts:
        assert alert["alert_id"] in body
        assert f"detector:   {alert['detector']}" in body
        assert f"event time: {alert['event_time']}" in body
    if name == "orphan":
        assert "NO REGISTERED OWNER" in body and "orphaned_model" in body
    else:
        assert "Owner:    risk-team@example.com" in body
        assert f"Runbook: {RUNBOOK}" in body
        assert "error rate: 0.05 (n=800) → 0.31 (n=150)" in body


async def test_email_logs_in_when_credentials_are_configured() -> None:
    seen: list[tuple[str, str]] = []

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any):
        assert isinstance(data, LoginPassword)
        seen.append((data.login.decode(), data.password.decode()))
        return AuthResult(success=data.password == b"pw", handled=False)

    smtp = SmtpReceiver(authenticator=authenticator, auth_require_tls=False).start()
    try:
        good = settings(smtp_port=smtp.port, smtp_username="wk", smtp_password="pw")
        bad = settings(smtp_port=smtp.port, smtp_username="wk", smtp_password="nope")
        async with ChannelSender(good) as sender:
            await sender.deliver(Channel("email", "oncall@example.com"), NOTES["single"])
        async with ChannelSender(bad) as sender:
            err = await deliver_error(
                sender, Channel("email", "oncall@example.com"), NOTES["single"]
            )
    finally:
        smtp.stop()
    assert seen[0] == ("wk", "pw")
    assert set(seen[1:]) == {("wk", "nope")}, "smtplib tries each offered mechanism"
    assert len(smtp.received) == 1
    assert err.reason.startswith("smtp 535") and not err.retryable


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 made by the openssl binary (no extra Python packages)."""
    tmp = tmp_path_factory.mktemp("tls")
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


async def test_email_starttls_verifies_the_server_certificate(
    self_signed: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = self_signed
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    smtp = SmtpReceiver(tls_context=context, require_starttls=True).start()
    cfg = settings(smtp_port=smtp.port, smtp_starttls=True)
    channel = Channel("email", "oncall@example.com")
    try:
        async with ChannelSender(cfg) as sender:
            untrusted = await deliver_error(sender, channel, NOTES["single"])
            monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # now the client trusts it
            await sender.deliver(channel, NOTES["single"])
    finally:
        smtp.stop()
    assert untrusted.reason.startswith("tls:") and not untrusted.retryable
    assert len(smtp.received) == 1


async def test_email_starttls_not_offered_is_permanent(smtp: SmtpReceiver) -> None:
    cfg = settings(smtp_port=smtp.port, smtp_starttls=True)
    async with ChannelSender(cfg) as sender:
        err = await deliver_error(sender, Channel("email", "a@example.com"), NOTES["single"])
    assert "STARTTLS" in err.reason and not err.retryable
    assert smtp.received == []


# --------------------------------------------------------------------------- failures


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(500, True), (503, True), (429, True), (408, True), (400, False), (404, False)],
)
@pytest.mark.parametrize("kind", ["webhook", "slack", "pagerduty"])
async def test_http_status_classification(
    http: HttpReceiver, kind: str, status: int, retryable: bool
) -> None:
    headers = {"Retry-After": "7"} if status == 429 else {}
    http.answer("/x", Reply(status, headers, f"receiver says {status}: invalid_payload"))
    url = f"{http.url}/x"
    cfg = settings(pagerduty_url=url)
    channel = Channel("pagerduty", ROUTING_KEY) if kind == "pagerduty" else Channel(kind, url)  # type: ignore[arg-type]
    async with ChannelSender(cfg) as sender:
        err = await deliver_error(sender, channel, NOTES["single"])
    assert err.retryable is retryable
    assert err.reason == f"http {status} {HTTPStatus(status).phrase}"
    assert len(http.requests) == 1
    assert "receiver says" not in err.reason, "the body is the receiver's text: never copied"
    if status == 429:
        assert err.retry_after == 7.0


async def test_redirect_is_not_followed(http: HttpReceiver) -> None:
    http.answer("/redirect", Reply(302, {"Location": f"{http.url}/elsewhere"}))
    async with ChannelSender(settings()) as sender:
        err = await deliver_error(
            sender, Channel("webhook", f"{http.url}/redirect"), NOTES["single"]
        )
    assert err.reason.startswith("http 302") and not err.retryable
    assert [r.path for r in http.requests] == ["/redirect"]


async def test_timeout_is_retryable(http: HttpReceiver) -> None:
    http.answer("/sleep", 0)  # hangs until the receiver stops
    async with ChannelSender(settings(request_timeout_s=0.3)) as sender:
        err = await deliver_error(sender, Channel("webhook", f"{http.url}/sleep"), NOTES["single"])
    assert err.reason == "timeout" and err.retryable
    assert len(http.requests) == 1, "the request reached the receiver, the answer did not"


@pytest.fixture
def closed_port() -> int:
    """A loopback port that was just bound and released: connecting to it is refused."""
    return free_port()


@pytest.mark.parametrize("kind", ["webhook", "slack", "pagerduty", "email"])
async def test_connection_refused_is_retryable(closed_port: int, kind: str) -> None:
    url = f"http://127.0.0.1:{closed_port}/hook"
    cfg = settings(pagerduty_url=url, smtp_port=closed_port)
    target = {"pagerduty": ROUTING_KEY, "email": "oncall@example.com"}.get(kind, url)
    async with ChannelSender(cfg) as sender:
        err = await deliver_error(sender, Channel(kind, target), NOTES["single"])  # type: ignore[arg-type]
    assert err.reason == "connection refused" and err.retryable


async def test_smtp_recipient_refused_is_permanent(smtp: SmtpReceiver) -> None:
    smtp.mailbox.refuse.add("refused@example.com")
    async with ChannelSender(settings(smtp_port=smtp.port)) as sender:
        err = await deliver_error(sender, Channel("email", "refused@example.com"), NOTES["single"])
    assert err.reason.startswith("smtp 550") and "mailbox unavailable" in err.reason
    assert not err.retryable
    assert smtp.received == []


async def test_smtp_temporary_failure_is_retryable(smtp: SmtpReceiver) -> None:
    smtp.mailbox.replies["busy@example.com"] = "451 4.3.0 try again later"
    async with ChannelSender(settings(smtp_port=smtp.port)) as sender:
        err = await deliver_error(sender, Channel("email", "busy@example.com"), NOTES["single"])
    assert err.reason.startswith("smtp 451") and err.retryable
    assert smtp.received == []


async def test_one_sender_delivers_to_every_channel_kind(
    http: HttpReceiver, smtp: SmtpReceiver
) -> None:
    http.answer("/pd", 202)
    cfg = settings(pagerduty_url=f"{http.url}/pd", smtp_port=smtp.port)
    channels = [
        Channel("webhook", f"{http.url}/wh"),
        Channel("slack", f"{http.url}/slack"),
        Channel("pagerduty", ROUTING_KEY),
        Channel("email", "oncall@example.com"),
    ]
    async with ChannelSender(cfg) as sender:
        await asyncio.gather(*(sender.deliver(c, NOTES["grouped"]) for c in channels))
    assert sorted(r.path for r in http.requests) == ["/pd", "/slack", "/wh"]
    assert len(smtp.received) == 1


@pytest.fixture
async def hangup_port() -> AsyncIterator[int]:
    """A loopback server that accepts and immediately closes: the peer hangs up mid-request."""
    server = await HangUpServer().start()
    yield server.port
    await server.stop()


@pytest.mark.parametrize("kind", ["webhook", "email"])
async def test_peer_hanging_up_is_retryable(hangup_port: int, kind: str) -> None:
    url = f"http://127.0.0.1:{hangup_port}/hook"
    target = "oncall@example.com" if kind == "email" else url
    async with ChannelSender(settings(smtp_port=hangup_port)) as sender:
        err = await deliver_error(sender, Channel(kind, target), NOTES["single"])  # type: ignore[arg-type]
    expected = "smtp: server disconnected" if kind == "email" else "connection reset"
    assert err.reason == expected and err.retryable


# --------------------------------------------------------------------------- outbound policy


async def test_a_probe_endpoint_cannot_get_its_words_into_the_reason(http: HttpReceiver) -> None:
    """A 4xx body (and reason phrase) is the receiver's text: it never reaches the reason."""
    fake = "aws_secret_access_key=AKIAFAKECREDENTIAL1234"
    http.answer("/probe", Reply(403, {"X-Note": fake}, f"forbidden {fake}"))
    async with ChannelSender(settings()) as sender:
        err = await deliver_error(sender, Channel("webhook", f"{http.url}/probe"), NOTES["single"])
    assert err.reason == "http 403 Forbidden" and not err.retryable
    assert "AKIAFAKE" not in repr(err)


@pytest.mark.parametrize("kind", ["webhook", "slack"])
async def test_loopback_receivers_are_refused_without_the_allowlist(
    http: HttpReceiver, kind: str
) -> None:
    channel = Channel(kind, f"{http.url}/services/T0/B0/SECRETTOKEN123")  # type: ignore[arg-type]
    async with ChannelSender(settings(allow_private_targets=[])) as sender:
        err = await deliver_error(sender, channel, NOTES["single"])
    assert not err.retryable and err.reason.startswith("refused by the outbound policy")
    assert ("hooks.slack.com" if kind == "slack" else "127.0.0.1 is loopback") in err.reason
    assert "SECRETTOKEN123" not in err.reason
    assert http.requests == [], "nothing may reach a refused target"


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:169.254.169.254]/",
        "http://10.0.0.7:8080/hook",
    ],  # fmt: skip
)
async def test_metadata_and_private_literals_are_refused_before_any_connection(url: str) -> None:
    """Refused before a socket is opened (the address is never contacted)."""
    async with ChannelSender(settings(allow_private_targets=[], request_timeout_s=0.5)) as sender:
        err = await deliver_error(sender, Channel("webhook", url), NOTES["single"])
    assert not err.retryable and "refused by the outbound policy" in err.reason


async def test_the_pagerduty_url_is_checked_too(http: HttpReceiver) -> None:
    cfg = settings(allow_private_targets=[], pagerduty_url=f"{http.url}/v2/enqueue")
    async with ChannelSender(cfg) as sender:
        err = await deliver_error(sender, Channel("pagerduty", ROUTING_KEY), NOTES["single"])
    assert "refused by the outbound policy" in err.reason and http.requests == []


class Rebinding(AbstractResolver):
    """A DNS server that answers 127.0.0.1 for every name (the rebinding attack: public
    at registration, loopback at send time)."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked.append(host)
        return [
            ResolveResult(
                hostname=host, host="127.0.0.1", port=port, family=socket.AF_INET, proto=0, flags=0
            )
        ]

    async def close(self) -> None:
        return None


async def test_a_name_that_resolves_to_loopback_at_send_time_is_refused(
    http: HttpReceiver,
) -> None:
    port = http.url.rsplit(":", 1)[1]
    url = f"http://hooks.rebind.example:{port}/hook"  # passes registration: a public name
    dns = Rebinding()
    cfg = settings(allow_private_targets=[])
    async with ChannelSender(cfg, resolver=dns) as sender:
        err = await deliver_error(sender, Channel("webhook", url), NOTES["single"])
    assert dns.asked == ["hooks.rebind.example"]
    assert not err.retryable
    assert err.reason == (
        "refused by the outbound policy: hooks.rebind.example resolves to a refused address: "
        "127.0.0.1 is loopback"
    )
    assert http.requests == []


async def test_the_connection_goes_to_the_address_that_was_checked(http: HttpReceiver) -> None:
    """Allowed, the page goes to the resolved (checked) address, under the original name."""
    port = http.url.rsplit(":", 1)[1]
    dns = Rebinding()
    async with ChannelSender(settings(allow_private_targets=["127.0.0.0/8"]), resolver=dns) as s:
        await s.deliver(Channel("webhook", f"http://pinned.example:{port}/hook"), NOTES["single"])
    (req,) = http.requests
    assert req.headers["Host"] == f"pinned.example:{port}" and dns.asked == ["pinned.example"]


async def test_a_signed_page_verifies_at_a_receiver_holding_the_secret() -> None:
    receiver = await HttpReceiver(secret=SECRET).start()
    try:
        async with ChannelSender(settings()) as sender:
            await sender.deliver(Channel("webhook", f"{receiver.url}/h"), NOTES["single"])
        (req,) = receiver.requests
        assert req.verified is True
        assert req.headers["X-Watchkeeper-Signature"].startswith("t=")
    finally:
        await receiver.stop()


async def test_unsigned_webhooks_are_warned_about_once(
    http: HttpReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="streams.notify.channels"):
        async with ChannelSender(settings(webhook_secret=None)) as sender:
            for _ in range(3):
                await sender.deliver(Channel("webhook", f"{http.url}/h"), NOTES["single"])
    warnings = [r for r in caplog.records if "unsigned" in r.getMessage()]
    assert len(warnings) == 1 and "WATCHKEEPER_NOTIFY_WEBHOOK_SECRET" in warnings[0].getMessage()
    assert len(http.requests) == 3


@pytest.fixture
async def garbage_port() -> AsyncIterator[int]:
    server = await GarbageServer().start()
    yield server.port
    await server.stop()


@pytest.mark.parametrize(
    "path", ["/services/T000/B000/SECRETTOKEN123", "/hook?token=SECRETTOKEN123&team=a"]
)
async def test_a_malformed_answer_is_reported_without_its_words_or_the_url(
    garbage_port: int, path: str
) -> None:
    """aiohttp's error for a malformed answer quotes the request URL and the receiver's
    bytes; the reason keeps only where it failed."""
    url = f"http://127.0.0.1:{garbage_port}{path}"
    async with ChannelSender(settings()) as sender:
        err = await deliver_error(sender, Channel("webhook", url), NOTES["single"])
    assert err.reason == f"http client: malformed response from 127.0.0.1:{garbage_port}"
    assert err.retryable and "SECRETTOKEN123" not in repr(err)


async def test_an_error_that_quotes_the_url_reaches_the_reason_redacted(
    garbage_port: int,
) -> None:
    """A legacy numeric host (allowed here) makes aiohttp refuse the URL, quoting it."""
    url = f"http://127.1:{garbage_port}/services/T000/B000/SECRETTOKEN123?token=SECRETQUERY99"
    async with ChannelSender(settings(allow_private_targets=["127.0.0.0/8"])) as sender:
        err = await deliver_error(sender, Channel("webhook", url), NOTES["single"])
    assert err.reason.startswith("invalid url") and f"127.1:{garbage_port}" in err.reason
    assert "SECRETTOKEN123" not in err.reason and "SECRETQUERY99" not in err.reason
    assert not err.retryable
