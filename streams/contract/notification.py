"""What the notifier hands to a channel: where to deliver (:class:`Channel`) and what
(:class:`Notification`). Shared by the owner registry, the channel senders and the notifier,
so that a channel spec typed on the command line is validated once, in one place.

A channel spec is ``KIND:TARGET``:

    webhook:https://hooks.example.com/wk     JSON POST of the alert (HMAC-signed if a secret is set)
    slack:https://hooks.slack.com/services/… Slack incoming-webhook payload
    pagerduty:ROUTING_KEY                    PagerDuty Events API v2 (32-character integration key)
    email:oncall@example.com                 plain-text mail over SMTP
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from streams.redact import redact

__all__ = [
    "CHANNEL_KINDS",
    "Channel",
    "ChannelKind",
    "InvalidChannel",
    "Notification",
    "NotificationReason",
    "parse_channel",
    "severity_rank",
]

ChannelKind = Literal["webhook", "slack", "pagerduty", "email"]
CHANNEL_KINDS: tuple[ChannelKind, ...] = ("webhook", "slack", "pagerduty", "email")
NotificationReason = Literal["alert", "escalation", "orphaned_model"]

_SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}
_ROUTING_KEY = re.compile(r"[A-Za-z0-9]{32}")
_EMAIL = re.compile(r"[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;]+")


class InvalidChannel(ValueError):
    """A channel spec that cannot be delivered to; the message says what is expected."""


@dataclass(frozen=True, slots=True)
class Channel:
    """One delivery target of an owner (or of the fallback)."""

    kind: ChannelKind
    target: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.target}"

    @property
    def key(self) -> str:
        """Stable short id, used in Redis delivery records (targets may hold secrets)."""
        return hashlib.sha256(str(self).encode()).hexdigest()[:16]


def parse_channel(spec: str) -> Channel:
    """``KIND:TARGET`` to a :class:`Channel`, or :class:`InvalidChannel` saying why not.

    The message quotes the spec redacted (:func:`streams.redact.redact`): a Slack URL or
    a routing key is a credential, and this error reaches terminals and logs. Whether a
    URL may be sent to at all is the outbound policy's question
    (:class:`streams.outbound.TargetPolicy`), which needs the settings."""
    kind, sep, target = spec.strip().partition(":")
    shown = repr(redact(spec))
    if not sep or kind not in CHANNEL_KINDS:
        raise InvalidChannel(
            f"channel {shown}: expected KIND:TARGET with KIND one of {', '.join(CHANNEL_KINDS)}"
        )
    target = target.strip()
    if kind in ("webhook", "slack"):
        if any(c.isspace() or not c.isprintable() for c in target):
            raise InvalidChannel(f"channel {shown}: {kind} URL must not contain whitespace")
        url = urlsplit(target)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise InvalidChannel(f"channel {shown}: {kind} needs an http(s) URL")
        try:
            port = url.port  # ValueError: not a number, or past 65535
        except ValueError:
            port = 0
        if port == 0:
            raise InvalidChannel(f"channel {shown}: {kind} URL port must be 1-65535 (or none)")
    elif kind == "pagerduty":
        if not _ROUTING_KEY.fullmatch(target):
            raise InvalidChannel(
                f"channel {shown}: pagerduty needs a 32-character integration (routing) key"
            )
    elif not _EMAIL.fullmatch(target):
        raise InvalidChannel(f"channel {shown}: email needs an address like oncall@example.com")
    return Channel(kind, target)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Notification:
    """One page: a model's alerts grouped together, for its owner (or the fallback).

    ``alerts`` are alert events as published on the alerts topic (DESIGN.md), the most
    severe first. ``dedup_key`` identifies the incident at receivers that deduplicate
    (PagerDuty): it derives from the first alert's id, and a resolve carries the key of
    the trigger it closes.
    """

    model_id: str
    alerts: tuple[dict[str, Any], ...]
    owner: str | None
    runbook: str | None
    reason: NotificationReason = "alert"
    action: Literal["trigger", "resolve"] = "trigger"
    dedup_key: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.alerts:
            raise ValueError("a notification needs at least one alert")
        if not self.dedup_key:
            object.__setattr__(self, "dedup_key", f"watchkeeper-{self.primary['alert_id']}")

    @property
    def primary(self) -> dict[str, Any]:
        return self.alerts[0]

    @property
    def severity(self) -> str:
        return max((str(a.get("severity", "info")) for a in self.alerts), key=severity_rank)

    @property
    def delivery_id(self) -> str:
        """Idempotency key receivers may use: same alerts, same reason, same id."""
        ids = "|".join(sorted(a["alert_id"] for a in self.alerts))
        return hashlib.sha256(f"{self.reason}|{self.action}|{ids}".encode()).hexdigest()[:32]

    @property
    def title(self) -> str:
        """One line for subjects, Slack text and PagerDuty summaries."""
        kind = self.primary["kind"]
        if self.reason == "orphaned_model" and kind != "orphaned_model":
            kind = f"orphaned_model, {kind} with no owner"
        prefix = "ESCALATED " if self.reason == "escalation" else ""
        prefix = "RESOLVED " if self.action == "resolve" else prefix
        more = f" (+{len(self.alerts) - 1} more)" if len(self.alerts) > 1 else ""
        return f"{prefix}[{self.severity.upper()}] {self.model_id}: {kind}{more}"


def severity_rank(severity: str) -> int:
    return _SEVERITY_RANK.get(severity, 0)
