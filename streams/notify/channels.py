"""Payloads for each channel kind, and one sender that delivers them.

Formats (the builders are pure, so tests and docs can show exactly what a receiver gets):

- ``webhook``: JSON POST of the primary alert (owner and runbook filled in) plus
  ``notification_reason``, ``notification_action``, ``delivery_id`` and ``grouped_alerts``.
  When a secret is configured, ``X-Watchkeeper-Signature: t=<unix>,v1=<hex>`` carries the
  HMAC-SHA256 of ``"<t>.<body>"`` (Stripe's scheme: the timestamp is signed, so a captured
  page cannot be replayed later); receivers check it with :func:`verify_signature` and
  deduplicate on ``X-Watchkeeper-Delivery``.
- ``slack``: an incoming-webhook message, ``text`` as the notification fallback plus Block
  Kit ``blocks`` (header, section with fields, actions with a runbook button, context),
  clipped to Slack's limits: https://api.slack.com/messaging/webhooks and
  https://api.slack.com/reference/block-kit/blocks. Every string an event producer
  controls (model id and version, detector, kind, alert ids, runbook text, owner names,
  summaries) is rendered by :func:`slack_escape` (mrkdwn) or :func:`slack_plain`
  (plain_text), so it cannot format, mention, link or add lines.
- ``pagerduty``: an Events API v2 event (https://developer.pagerduty.com/docs/events-api-v2/
  trigger-events/) POSTed to ``NotifySettings.pagerduty_url``; ``dedup_key`` ties a resolve
  to its trigger, and a resolve carries no payload.
- ``email``: a plain-text message over SMTP (stdlib smtplib, run in a worker thread); no
  header carries a line break, and producer strings in the body stay on their line.

HTTP targets go through the outbound policy (:mod:`streams.outbound`) at send time:
the URL is checked, the host name is resolved and every address checked, and the
connection goes to the addresses checked. A refused target is a permanent failure. A
non-2xx answer is reported by its status and standard reason phrase only: the body is
the receiver's text and is never copied into a dead letter or a log line.

:class:`DeliveryError` says whether a failure is worth retrying: the notifier retries
transient failures (timeouts, refused connections, 5xx, 429, 408, SMTP 4xx) with backoff
and sends permanent ones (other 4xx, SMTP 5xx) straight to its dead-letter topic. It also
says whether the receiver may have got the request anyway (a timeout, a cut connection).

A page the receiver may already have (re-sent after its notifier died mid-request, or
retried after such a failure) is sent with ``possible_duplicate``. Slack and email cannot
deduplicate, so there it is visible: ``[possible duplicate]`` in the Slack text and the
mail subject, a Slack block with ``block_id`` ``watchkeeper_possible_duplicate``, the mail
header ``X-Watchkeeper-Possible-Duplicate: yes``. Webhooks get the header
``X-Watchkeeper-Possible-Duplicate: true`` and ``"possible_duplicate": true`` in the body,
with the same ``X-Watchkeeper-Delivery``; PagerDuty gets the same event (same
``dedup_key``), which it deduplicates.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import hmac
import http
import importlib.metadata
import ipaddress
import logging
import smtplib
import socket
import ssl
import time
from collections.abc import Callable, Iterable
from email.message import EmailMessage
from email.utils import formatdate
from types import TracebackType
from typing import Any

import aiohttp
import orjson
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from pydantic import SecretStr

from streams.contract.alerts import rfc3339_ms
from streams.contract.notification import Channel, Notification
from streams.outbound import TargetPolicy, TargetRefused
from streams.redact import RedactingFilter, redact
from streams.settings import NotifySettings

__all__ = [
    "SIGNATURE_HEADER",
    "ChannelSender",
    "DeliveryError",
    "email_message",
    "pagerduty_event",
    "sign",
    "slack_escape",
    "slack_payload",
    "slack_plain",
    "unsigned_webhooks",
    "verify_signature",
    "webhook_body",
    "webhook_headers",
]

log = logging.getLogger(__name__)
log.addFilter(RedactingFilter())

SIGNATURE_HEADER = "X-Watchkeeper-Signature"
SIGNATURE_TOLERANCE_S = 300.0
DUPLICATE_HEADER = "X-Watchkeeper-Possible-Duplicate"
DUPLICATE_MARK = "[possible duplicate]"
DUPLICATE_BLOCK_ID = "watchkeeper_possible_duplicate"
_DUPLICATE_TEXT = (
    "A notifier may have stopped while sending this page, or the receiver did not answer: "
    "it may have reached you already."
)
_RETRYABLE_STATUS = frozenset({408, 429})
_PD_SEVERITY = {"critical": "critical", "warning": "warning", "info": "info"}
_EXCERPT = 200
_SUBJECT_MAX = 200


def _version() -> str:
    try:
        return importlib.metadata.version("watchkeeper")
    except importlib.metadata.PackageNotFoundError:
        return "0"


USER_AGENT = f"watchkeeper/{_version()}"
UNSIGNED_WARNING = (
    "webhook pages go out unsigned: receivers cannot tell them from forgeries or replays; "
    "set WATCHKEEPER_NOTIFY_WEBHOOK_SECRET"
)


def unsigned_webhooks(settings: NotifySettings, channels: Iterable[Channel]) -> int:
    """How many of ``channels`` are webhooks that would go out unsigned (no secret set)."""
    if _secret(settings.webhook_secret) is not None:
        return 0
    return sum(1 for c in channels if c.kind == "webhook")


class DeliveryError(Exception):
    """A delivery that did not succeed; ``retryable`` tells the notifier whether to try again.

    ``retry_after`` is the receiver's Retry-After in seconds (429/503), when it sent one.
    ``maybe_delivered``: the request may have reached the receiver (it timed out or the
    connection was cut after it was sent), so a retry may be a duplicate.
    """

    def __init__(
        self,
        reason: str,
        *,
        retryable: bool,
        retry_after: float | None = None,
        maybe_delivered: bool = False,
    ):
        # it reaches the DLQ, Redis and the log: one line, never a credential
        reason = redact(" ".join(str(reason).split()))
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable
        self.retry_after = retry_after
        self.maybe_delivered = maybe_delivered

    def __repr__(self) -> str:
        return f"DeliveryError({self.reason!r}, retryable={self.retryable})"


# --------------------------------------------------------------------------- helpers


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _one_line(value: object) -> str:
    """``value`` as text on one line: line breaks, other control and format characters
    (bidi overrides, zero-width joiners) and separators other than the space become spaces."""
    text = str(value)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else " " for c in text)


def _secret(secret: SecretStr | str | None) -> bytes | None:
    if secret is None:
        return None
    value = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
    return value.encode() if value else None


def _is_orphan(note: Notification) -> bool:
    return note.reason == "orphaned_model" or any(
        a.get("kind") == "orphaned_model" for a in note.alerts
    )


def _is_url(value: str | None) -> bool:
    return bool(value) and str(value).startswith(("http://", "https://"))


def _with_owner(alert: dict[str, Any], note: Notification) -> dict[str, Any]:
    """The alert as published, with the registry's owner/runbook (the detector cannot know)."""
    return {
        **alert,
        "owner": note.owner if note.owner is not None else alert.get("owner"),
        "runbook": note.runbook if note.runbook is not None else alert.get("runbook"),
    }


def _rate(alert: dict[str, Any]) -> str | None:
    """``0.05 (n=500) → 0.31 (n=120)``, or None when the alert has no before/after."""
    before, after = alert.get("before"), alert.get("after")
    if not isinstance(before, dict) or not isinstance(after, dict):
        return None
    if "error_rate" not in before and "error_rate" not in after:
        return None  # a label-free signal: its message says what moved

    def side(stats: dict[str, Any]) -> str:
        rate, count = stats.get("error_rate"), stats.get("count")
        text = f"{rate:.4g}" if isinstance(rate, int | float) else "?"
        return f"{text} (n={count})" if count is not None else text

    return f"{side(before)} → {side(after)}"


def _event_time(alert: dict[str, Any]) -> str | None:
    if alert.get("event_time"):
        return str(alert["event_time"])
    if isinstance(alert.get("event_time_ms"), int):
        return rfc3339_ms(alert["event_time_ms"])
    detected = alert.get("detected_at")
    return str(detected) if detected else None


def _alert_line(alert: dict[str, Any]) -> str:
    parts = [f"[{alert.get('severity', 'info')}] {alert.get('kind', 'alert')}"]
    if alert.get("detector"):
        parts.append(f"by {alert['detector']}")
    if when := _event_time(alert):
        parts.append(f"at {when}")
    if rate := _rate(alert):
        parts.append(f"error rate {rate}")
    elif alert.get("message"):
        parts.append(f"- {alert['message']}")
    if alert.get("status") == "resolved":
        parts.append("(resolved)")
    return " ".join(parts)


def _details_summary(note: Notification) -> str | None:
    """A notification's own summary line (the fallback's dead-letter summary has one)."""
    text = note.details.get("summary") if note.details else None
    return str(text) if text else None


def _orphan_text(note: Notification) -> str:
    return (
        f"Model {note.model_id} has no registered owner (orphaned_model): nobody is "
        "accountable for it, so this page went to the fallback channels. Register an owner "
        "or retire the model."
    )


# --------------------------------------------------------------------------- webhook


def webhook_body(note: Notification, *, possible_duplicate: bool = False) -> bytes:
    """The exact bytes POSTed (and signed): the primary alert plus notification context."""
    body = _with_owner(note.primary, note)
    body["notification_reason"] = note.reason
    body["notification_action"] = note.action
    body["delivery_id"] = note.delivery_id
    body["grouped_alerts"] = [_with_owner(a, note) for a in note.alerts[1:]]
    if note.details:
        body["notification_details"] = note.details
    if possible_duplicate:
        body["possible_duplicate"] = True
    return orjson.dumps(body)


def _mac(body: bytes, key: bytes, timestamp: int) -> str:
    return hmac.new(key, b"%d." % timestamp + body, hashlib.sha256).hexdigest()


def sign(body: bytes, secret: SecretStr | str, timestamp: int) -> str:
    """The signature header value: ``t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">``."""
    key = _secret(secret)
    if key is None:
        raise ValueError("signing needs a non-empty secret")
    return _signed(body, key, timestamp)


def _signed(body: bytes, key: bytes, timestamp: int) -> str:
    return f"t={timestamp},v1={_mac(body, key, timestamp)}"


def webhook_headers(
    body: bytes,
    note: Notification,
    secret: SecretStr | str | None,
    *,
    possible_duplicate: bool = False,
    now: float | None = None,
) -> dict[str, str]:
    """Headers for a webhook POST; the signature covers ``body`` byte for byte and the
    time of sending (``now``, default the wall clock), so each attempt is signed afresh."""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Watchkeeper-Alert-Id": _one_line(note.primary.get("alert_id", "")),
        "X-Watchkeeper-Delivery": note.delivery_id,
    }
    if possible_duplicate:
        headers[DUPLICATE_HEADER] = "true"
    key = _secret(secret)
    if key is not None:
        headers[SIGNATURE_HEADER] = _signed(body, key, int(time.time() if now is None else now))
    return headers


def verify_signature(
    body: bytes,
    header: str | None,
    secret: SecretStr | str | None,
    tolerance_s: float = SIGNATURE_TOLERANCE_S,
    now: float | None = None,
) -> bool:
    """Receiver side: is ``header`` (``t=…,v1=…``) a signature of ``body`` with ``secret``,
    made within ``tolerance_s`` of ``now`` (default: the wall clock)?

    The HMAC is compared in constant time; a timestamp too old (a replay) or too far
    ahead is refused. Several ``v1`` values are accepted (one per secret, while rotating)."""
    key = _secret(secret)
    if key is None or not header:
        return False
    stamps: list[str] = []
    signatures: list[str] = []
    for part in header.split(","):
        name, sep, value = part.strip().partition("=")
        if sep and name == "t":
            stamps.append(value)
        elif sep and name == "v1":
            signatures.append(value)
    if len(stamps) != 1 or not signatures or not stamps[0].isascii():
        return False
    try:
        timestamp = int(stamps[0])
    except ValueError:
        return False
    current = time.time() if now is None else now
    if not abs(current - timestamp) <= tolerance_s:
        return False
    expected = _mac(body, key, timestamp).encode()
    return any(hmac.compare_digest(expected, s.encode("utf-8", "replace")) for s in signatures)


# --------------------------------------------------------------------------- slack

_SLACK_HEADER_MAX = 150
_SLACK_SECTION_MAX = 3000
_SLACK_FIELD_MAX = 2000
_SLACK_FIELDS_MAX = 10
_SLACK_URL_MAX = 3000


# Slack has no escape for its formatting characters, so they are swapped for look-alikes
# that do not format: a producer's ``*bold*`` shows as ``∗bold∗``. An underscore inside a
# word (``fraud_eu``, ``performance_degradation``) cannot open or close italics and stays;
# ids are also copyable verbatim from the header and the fields, which are plain_text.
_SLACK_LOOKALIKES = {"*": "∗", "_": "ˍ", "~": "∼", "`": "ˋ"}
_PLAIN_LOOKALIKES = str.maketrans({"<": "‹", ">": "›"})


def _defang(text: str) -> str:
    """``https://x`` -> ``https[:]//x``: no link is made of a producer's URL."""
    return text.replace("://", "[:]//")


def slack_escape(value: object) -> str:
    """A producer-controlled string made inert for Slack mrkdwn.

    ``&``, ``<`` and ``>`` become entities (so no ``<!channel>``, ``<@U…>`` or
    ``<url|text>`` can form), ``*_~``` become look-alikes (no bold, italics, strike or
    code), line breaks and other control characters become spaces (no extra lines or
    block quotes), and ``://`` is defanged (no bare link). Text objects carrying it are
    also ``verbatim``, so Slack does not link names or mentions by itself either."""
    text = _one_line(value)
    out: list[str] = []
    for i, c in enumerate(text):
        if c == "_" and 0 < i < len(text) - 1 and text[i - 1].isalnum() and text[i + 1].isalnum():
            out.append(c)  # inside a word: not a delimiter
        else:
            out.append(_SLACK_LOOKALIKES.get(c, c))
    escaped = "".join(out).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _defang(escaped)


def slack_plain(value: object) -> str:
    """A producer-controlled string for a plain_text object: one line, no link, no ``<>``."""
    return _defang(_one_line(value).translate(_PLAIN_LOOKALIKES))


def _mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text, "verbatim": True}


def _field(label: str, value: object) -> dict[str, Any]:
    return {
        "type": "plain_text",
        "text": _clip(f"{label}\n{slack_plain(value)}", _SLACK_FIELD_MAX),
        "emoji": False,
    }


def slack_payload(note: Notification, *, possible_duplicate: bool = False) -> dict[str, Any]:
    """Incoming-webhook message: fallback ``text`` for notifications, ``blocks`` for the view.

    Slack cannot deduplicate, so a ``possible_duplicate`` says so in the text and a block.
    Link previews are off: Slack would otherwise fetch a URL a producer put in a page."""
    primary = note.primary
    runbook = note.runbook or primary.get("runbook")
    text = slack_escape(note.title)
    if link := _runbook_link(note.runbook):
        text += f" | Runbook: {link}"
    elif runbook:
        text += f" | Runbook: {slack_escape(runbook)}"
    if possible_duplicate:
        text = f"{DUPLICATE_MARK} {text}"

    if len(note.alerts) == 1:
        summary = f"*{slack_escape(_alert_line(primary))}*"
    else:
        lines = "\n".join(f"• {slack_escape(_alert_line(a))}" for a in note.alerts)
        summary = f"*{len(note.alerts)} alerts for model {slack_escape(note.model_id)}*\n{lines}"
    if note.reason == "escalation":
        summary = f":rotating_light: *Escalated*: not acknowledged in time.\n{summary}"
    if note.action == "resolve":
        summary = f":white_check_mark: *Resolved*\n{summary}"

    fields = [_field("Model", note.model_id)]
    if primary.get("model_version"):
        fields.append(_field("Version", primary["model_version"]))
    if primary.get("segment"):
        fields.append(_field("Segment", primary["segment"]))
    fields.append(_field("Severity", note.severity))
    if primary.get("detector"):
        fields.append(_field("Detector", primary["detector"]))
    if rate := _rate(primary):
        fields.append(_field("Error rate before → after", rate))
    if when := _event_time(primary):
        fields.append(_field("Event time", when))

    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {
                "type": "plain_text",
                "text": _clip(slack_plain(note.title), _SLACK_HEADER_MAX),
                "emoji": False,
            },
        },
        {
            "type": "section",
            "text": _mrkdwn(_clip(summary, _SLACK_SECTION_MAX)),
            "fields": fields[:_SLACK_FIELDS_MAX],
        },
    ]
    if possible_duplicate:
        blocks.insert(
            1,
            {
                "type": "section",
                "block_id": DUPLICATE_BLOCK_ID,
                "text": _mrkdwn(f":warning: *Possible duplicate.* {_DUPLICATE_TEXT}"),
            },
        )
    if summary_text := _details_summary(note):
        blocks.append(
            {
                "type": "section",
                "text": _mrkdwn(_clip(slack_escape(summary_text), _SLACK_SECTION_MAX)),
            }
        )
    if _is_orphan(note):
        orphan = f":warning: *No registered owner.* {slack_escape(_orphan_text(note))}"
        blocks.append({"type": "section", "text": _mrkdwn(_clip(orphan, _SLACK_SECTION_MAX))})
    # a button only for the registry's runbook: an alert's own is a producer's text
    if note.runbook and _is_url(note.runbook) and _button_url(note.runbook):
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "Runbook"},
                        "url": note.runbook,
                        "action_id": "runbook",
                    }
                ],
            }
        )
    elif runbook:
        shown = f"*Runbook*: {slack_escape(runbook)}"
        blocks.append({"type": "section", "text": _mrkdwn(_clip(shown, _SLACK_SECTION_MAX))})
    ids = ", ".join(f"`{slack_escape(a.get('alert_id', '?'))}`" for a in note.alerts)
    owner = slack_escape(note.owner) if note.owner else "*none registered*"
    blocks.append(
        {
            "type": "context",
            "elements": [
                _mrkdwn(_clip(f"Alert ids: {ids}", _SLACK_FIELD_MAX)),
                _mrkdwn(_clip(f"Owner: {owner}", _SLACK_FIELD_MAX)),
            ],
        }
    )
    return {
        "text": _clip(text, _SLACK_SECTION_MAX),
        "blocks": blocks,
        "unfurl_links": False,
        "unfurl_media": False,
    }


def _button_url(url: str) -> bool:
    """A runbook URL fit for a button: short enough, one printable line, no spaces."""
    return len(url) <= _SLACK_URL_MAX and url.isprintable() and " " not in url


def _runbook_link(url: str | None) -> str | None:
    """The registry's runbook as a Slack link (``<url>``), when it can be one safely: an
    http(s) URL with nothing that would end or split the link."""
    if not url or not _is_url(url) or not _button_url(url) or any(c in url for c in "<>|"):
        return None
    return "<" + url.replace("&", "&amp;") + ">"


# --------------------------------------------------------------------------- pagerduty

_PD_SUMMARY_MAX = 1024


def pagerduty_event(note: Notification, routing_key: str, source: str) -> dict[str, Any]:
    """Events API v2 event; a resolve is only routing_key, event_action and dedup_key."""
    event: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": note.action,
        "dedup_key": note.dedup_key,
    }
    if note.action == "resolve":
        return event

    primary = note.primary
    payload: dict[str, Any] = {
        "summary": _clip(_one_line(note.title), _PD_SUMMARY_MAX),
        "source": source,
        "severity": _PD_SEVERITY.get(note.severity, "error"),
    }
    if when := _event_time(primary):
        payload["timestamp"] = when
    payload["component"] = note.model_id
    if primary.get("model_version"):
        payload["group"] = str(primary["model_version"])
    payload["class"] = str(primary.get("kind", "alert"))
    details: dict[str, Any] = {
        "owner": note.owner,
        "detector": primary.get("detector"),
        "before": primary.get("before"),
        "after": primary.get("after"),
        "alert_ids": [a.get("alert_id") for a in note.alerts],
        "config_fingerprint": primary.get("config_fingerprint"),
        "reason": note.reason,
    }
    if _is_orphan(note):
        details["no_owner"] = _orphan_text(note)
    if len(note.alerts) > 1:
        details["alerts"] = [_alert_line(a) for a in note.alerts]
    if note.details:
        details["notification_details"] = note.details
    payload["custom_details"] = details

    event["client"] = "Watchkeeper"
    event["payload"] = payload
    runbook = note.runbook or primary.get("runbook")
    if runbook:
        event["links"] = [{"href": runbook, "text": "Runbook"}]
    return event


# --------------------------------------------------------------------------- email


def _header(value: object, limit: int = 998) -> str:
    """Header values must not carry line breaks (header injection, and policy errors) nor
    other control characters; RFC 5322 caps a line at 998 characters."""
    return _clip(" ".join(_one_line(value).split()), limit)


def email_message(
    note: Notification, to_addr: str, from_addr: str, *, possible_duplicate: bool = False
) -> EmailMessage:
    """Plain-text page; readable in any client and on a phone's lock screen.

    Mail cannot be deduplicated by the receiver, so a ``possible_duplicate`` says so in
    the subject, a header and the first line (the Message-ID stays the page's)."""
    primary = note.primary
    runbook = note.runbook or primary.get("runbook")
    msg = EmailMessage()
    mark = f"{DUPLICATE_MARK} " if possible_duplicate else ""
    msg["Subject"] = _header(f"[Watchkeeper] {mark}{note.title}", _SUBJECT_MAX)
    msg["From"] = from_addr
    msg["To"] = to_addr
    msg["Date"] = formatdate(usegmt=True)
    msg["Message-ID"] = f"<{note.delivery_id}@watchkeeper>"
    msg["X-Watchkeeper-Alert-Id"] = _header(primary.get("alert_id", ""), 200)
    msg["X-Watchkeeper-Delivery"] = note.delivery_id
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to a pager
    if possible_duplicate:
        msg[DUPLICATE_HEADER] = "yes"

    line = _one_line  # a producer's line break must not forge a line of the page
    lines = [line(note.title), ""]
    if possible_duplicate:
        lines += ["POSSIBLE DUPLICATE: " + _DUPLICATE_TEXT, ""]
    if summary_text := _details_summary(note):
        lines += [line(summary_text), ""]
    if _is_orphan(note):
        lines += ["NO REGISTERED OWNER: " + line(_orphan_text(note)), ""]
    if note.reason == "escalation":
        lines += ["ESCALATED: the first page was not acknowledged in time.", ""]
    if note.action == "resolve":
        lines += ["RESOLVED: the condition below has cleared.", ""]
    lines += [
        f"Model:    {line(note.model_id)}",
        f"Version:  {line(primary.get('model_version') or 'unknown')}",
        f"Owner:    {line(note.owner or 'none registered')}",
        f"Severity: {line(note.severity)}",
        f"Reason:   {note.reason}",
        "",
        f"Alerts ({len(note.alerts)}):",
    ]
    for alert in note.alerts:
        lines.append(line(f"- {alert.get('kind', 'alert')} [{alert.get('severity', 'info')}]"))
        lines.append(line(f"    detector:   {alert.get('detector') or 'n/a'}"))
        lines.append(line(f"    event time: {_event_time(alert) or 'n/a'}"))
        if rate := _rate(alert):
            lines.append(line(f"    error rate: {rate}"))
        elif alert.get("message"):
            status = " (resolved)" if alert.get("status") == "resolved" else ""
            lines.append(line(f"    what:       {alert['message']}{status}"))
        lines.append(line(f"    alert id:   {alert.get('alert_id', '?')}"))
    runbook_text = line(runbook or "none registered")
    lines += ["", f"Runbook: {runbook_text}", f"Delivery id: {note.delivery_id}"]
    msg.set_content("\n".join(lines) + "\n")
    return msg


# --------------------------------------------------------------------------- delivery


def _status_text(status: int) -> str:
    """``http 502 Bad Gateway``: the standard phrase, never the receiver's own words."""
    try:
        return f"http {status} {http.HTTPStatus(status).phrase}"
    except ValueError:
        return f"http {status}"


def _http_error(status: int, retry_after: str | None) -> DeliveryError:
    """A non-2xx answer. Only the status goes into the reason: a body (or a custom reason
    phrase) is the receiver's text, and a probe endpoint can make it say anything,
    credentials included."""
    after: float | None = None
    if retry_after:
        try:
            after = max(0.0, float(retry_after))
        except ValueError:
            after = None  # an HTTP date: let the notifier's own backoff decide
    retryable = status >= 500 or status in _RETRYABLE_STATUS
    return DeliveryError(_status_text(status), retryable=retryable, retry_after=after)


def _os_error(exc: OSError) -> DeliveryError:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return DeliveryError(f"tls: {exc}", retryable=False)
    if isinstance(exc, TimeoutError):
        return DeliveryError("timeout", retryable=True, maybe_delivered=True)
    if exc.errno == errno.ECONNREFUSED or isinstance(exc, ConnectionRefusedError):
        return DeliveryError("connection refused", retryable=True)
    if exc.errno in (errno.ECONNRESET, errno.EPIPE) or isinstance(exc, ConnectionResetError):
        return DeliveryError("connection reset", retryable=True, maybe_delivered=True)
    return DeliveryError(
        _clip(f"connection error: {exc}", _EXCERPT), retryable=True, maybe_delivered=True
    )


def _smtp_reply(code: int, message: bytes | str) -> DeliveryError:
    text = message.decode("utf-8", "replace") if isinstance(message, bytes) else str(message)
    reason = _clip(f"smtp {code} {' '.join(text.split())}".rstrip(), _EXCERPT)
    return DeliveryError(reason, retryable=code < 500)


class _PolicyResolver(AbstractResolver):
    """Resolves with aiohttp's default resolver, then refuses the host if any address it
    got is not allowed. The connector connects to the addresses returned here, the ones
    checked, so a second lookup cannot swap in 127.0.0.1 (DNS rebinding)."""

    def __init__(self, policy: TargetPolicy, inner: AbstractResolver | None = None) -> None:
        self.policy = policy
        self._inner = inner if inner is not None else DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        for result in found:
            self.policy.check_address(host, ipaddress.ip_address(result["host"]))
        return found

    async def close(self) -> None:
        await self._inner.close()


class ChannelSender:
    """Delivers notifications; one pooled HTTP session for all webhook/Slack/PD posts.

    Use as ``async with ChannelSender(settings) as sender: await sender.deliver(...)``.
    ``clock`` stamps webhook signatures (the receiver compares them with its own clock);
    ``resolver`` is the name resolver whose answers the outbound policy checks (aiohttp's
    default; tests give one that answers what a rebinding DNS server would).
    """

    def __init__(
        self,
        settings: NotifySettings,
        *,
        clock: Callable[[], float] = time.time,
        resolver: AbstractResolver | None = None,
    ) -> None:
        self.settings = settings
        self.policy = TargetPolicy.allowing(settings.allow_private_targets)
        self.clock = clock
        self._resolver = resolver
        self._session: aiohttp.ClientSession | None = None
        self._warned_unsigned = False

    async def __aenter__(self) -> ChannelSender:
        self._open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            resolver = _PolicyResolver(self.policy, self._resolver)
            connector = aiohttp.TCPConnector(resolver=resolver)
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=self.settings.request_timeout_s),
                headers={"User-Agent": USER_AGENT},
                trust_env=False,  # a proxy from the environment would bypass the policy
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def deliver(
        self, channel: Channel, note: Notification, *, possible_duplicate: bool = False
    ) -> None:
        """Deliver ``note`` to ``channel`` once; :class:`DeliveryError` if it did not land.

        ``possible_duplicate``: the receiver may have this page already (see module doc)."""
        dup = possible_duplicate
        try:
            if channel.kind == "webhook":
                body = webhook_body(note, possible_duplicate=dup)
                secret = self.settings.webhook_secret
                headers = webhook_headers(
                    body, note, secret, possible_duplicate=dup, now=self.clock()
                )
                if SIGNATURE_HEADER not in headers and not self._warned_unsigned:
                    self._warned_unsigned = True
                    log.warning(UNSIGNED_WARNING)
            elif channel.kind == "slack":
                body = orjson.dumps(slack_payload(note, possible_duplicate=dup))
                headers = {"Content-Type": "application/json"}
            elif channel.kind == "pagerduty":
                event = pagerduty_event(note, channel.target, self.settings.source)
                body = orjson.dumps(event)
                headers = {"Content-Type": "application/json"}
            elif channel.kind == "email":
                message = email_message(
                    note, channel.target, self.settings.smtp_from, possible_duplicate=dup
                )
            else:
                raise DeliveryError(f"unknown channel kind {channel.kind!r}", retryable=False)
        except (TypeError, ValueError) as exc:  # orjson / email policy: retrying cannot help
            raise DeliveryError(_clip(f"payload: {exc}", _EXCERPT), retryable=False) from exc

        if channel.kind == "email":
            await asyncio.to_thread(self._send_mail, message)
        else:
            url = self.settings.pagerduty_url if channel.kind == "pagerduty" else channel.target
            problem = self.policy.url_problem(channel.kind, url)
            if problem is not None:
                raise DeliveryError(f"refused by the outbound policy: {problem}", retryable=False)
            await self._post(url, body, headers)

    async def _post(self, url: str, body: bytes, headers: dict[str, str]) -> None:
        session = self._open()
        try:
            # No redirects: aiohttp would replay a POST as a GET and drop the signed body,
            # and a redirect could lead past the outbound policy.
            async with session.post(url, data=body, headers=headers, allow_redirects=False) as resp:
                if 200 <= resp.status < 300:
                    return
                if 300 <= resp.status < 400:
                    raise DeliveryError(
                        f"{_status_text(resp.status)}: redirects are not followed",
                        retryable=False,
                    )
                raise _http_error(resp.status, resp.headers.get("Retry-After"))
        except DeliveryError:
            raise
        except TimeoutError as exc:  # aiohttp's ServerTimeoutError is also a TimeoutError
            raise DeliveryError("timeout", retryable=True, maybe_delivered=True) from exc
        except aiohttp.InvalidURL as exc:
            raise DeliveryError(f"invalid url {url!r}", retryable=False) from exc
        except aiohttp.ClientConnectorCertificateError as exc:
            raise DeliveryError(_clip(f"tls: {exc}", _EXCERPT), retryable=False) from exc
        except aiohttp.ClientConnectorError as exc:  # no connection: nothing was sent
            if isinstance(exc.os_error, TargetRefused):
                reason = f"refused by the outbound policy: {exc.os_error}"
                raise DeliveryError(_clip(reason, _EXCERPT), retryable=False) from exc
            error = _os_error(exc.os_error)
            error.maybe_delivered = False
            raise error from exc
        except aiohttp.ServerDisconnectedError as exc:
            raise DeliveryError("connection reset", retryable=True, maybe_delivered=True) from exc
        except aiohttp.ClientResponseError as exc:  # a malformed answer: its text is the receiver's
            where = exc.request_info.real_url
            raise DeliveryError(
                f"http client: malformed response from {where.host}:{where.port}",
                retryable=True,
                maybe_delivered=True,
            ) from exc
        except aiohttp.ClientOSError as exc:
            raise _os_error(exc) from exc
        except aiohttp.ClientError as exc:
            reason = f"http client: {type(exc).__name__}: {exc}"  # may quote the URL: redacted
            raise DeliveryError(
                _clip(reason, _EXCERPT), retryable=True, maybe_delivered=True
            ) from exc

    def _send_mail(self, message: EmailMessage) -> None:
        """Blocking SMTP conversation; runs in a worker thread (smtplib has no asyncio API)."""
        cfg = self.settings
        try:
            with smtplib.SMTP(cfg.smtp_host, cfg.smtp_port, timeout=cfg.request_timeout_s) as smtp:
                if cfg.smtp_starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if cfg.smtp_username:
                    password = cfg.smtp_password.get_secret_value() if cfg.smtp_password else ""
                    smtp.login(cfg.smtp_username, password)
                refused = smtp.send_message(message)
        except smtplib.SMTPRecipientsRefused as exc:
            code, reply = next(iter(exc.recipients.values()), (550, b"recipient refused"))
            raise _smtp_reply(code, reply) from exc
        except smtplib.SMTPResponseException as exc:  # sender refused, data, auth, helo
            raise _smtp_reply(exc.smtp_code, exc.smtp_error) from exc
        except smtplib.SMTPNotSupportedError as exc:  # e.g. STARTTLS asked, not offered
            raise DeliveryError(_clip(f"smtp: {exc}", _EXCERPT), retryable=False) from exc
        except smtplib.SMTPServerDisconnected as exc:
            raise DeliveryError(
                "smtp: server disconnected", retryable=True, maybe_delivered=True
            ) from exc
        except smtplib.SMTPException as exc:
            raise DeliveryError(
                _clip(f"smtp: {exc}", _EXCERPT), retryable=True, maybe_delivered=True
            ) from exc
        except OSError as exc:  # refused, reset, timeout, DNS, TLS handshake
            raise _os_error(exc) from exc
        if refused:  # only possible with several recipients; we send to one, but be exact
            code, reply = next(iter(refused.values()))
            raise _smtp_reply(code, reply)
