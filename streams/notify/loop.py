"""The notifier: alerts in, pages out, to the model's owner (or the fallback), once.

Per model, alerts are grouped for ``group_wait_s`` (like Alertmanager's group_wait) and
sent as one notification per kind. Each alert is decided once (deliver, silenced,
acknowledged, cooldown) and each (alert, channel) delivery is claimed in Redis before it is
sent, so a restart, a duplicate on the topic or a second replica never pages twice.
Failures retry with capped exponential backoff and full jitter; after the budget, the alert
goes to the dead-letter topic with the reason, and the fallback channels get one summary per window
of what was dead-lettered, so someone always hears of a lost page. The same windows keep
floods bounded: ``orphaned_model`` alerts (models nobody owns) go to the fallback as one
summary page per ``orphan_summary_s``, listing counts and the first model ids, and a
channel gets at most ``max_pages_per_channel_per_min`` pages a minute; the pages past it
are held back, counted (``held_pages``, ``suppressed_rate_limited``) and summarised to that
channel when the minute ends, so nothing is dropped unseen. A page cut short by a
crash is *in doubt*: missing a page is worse than a duplicate, so another replica re-sends
it as it was (PagerDuty and webhook receivers deduplicate it; Slack and email get it
marked as a possible duplicate), up to ``redeliver_max`` times. Kafka offsets are
committed only up to the first alert not yet handled.

Incidents are per model and kind: a page that goes out opens the incident of its model
and kind (its dedup key). A resolving alert (``performance_improvement`` for
``performance_degradation``, or any kind with ``"status": "resolved"``) closes that
incident with a resolve page carrying the same dedup key, whatever the cooldown; with
nothing open it is suppressed as ``info``. Within a group, resolves go after the
triggers (an improvement closes the incident the degradation in its group opened), unless
a firing alert of its kind in the group is newer: then it closes the incident before, and
the newer alert opens a new one. Alerts of severity ``info``, or of a kind in
``info_kinds``, never page: they are counted as ``suppressed_info`` and kept for lookup.

Time comes from ``clock`` and waits go through ``sleep``: tests move time instead of
sleeping through group windows, cooldowns and escalations.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import signal
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.errors import KafkaError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from streams.connections import aiokafka_kwargs
from streams.contract.alerts import rfc3339_ms
from streams.contract.dead_letters import dead_letter
from streams.contract.events import Rejected
from streams.contract.notification import (
    Channel,
    InvalidChannel,
    Notification,
    NotificationReason,
    parse_channel,
    severity_rank,
)
from streams.errors import ConfigError, InvalidOwner, WatchkeeperError
from streams.metrics import NOTIFIER_ALERTS, PAGES, REDIS_UP, start_metrics_server
from streams.notify.channels import (
    UNSIGNED_WARNING,
    ChannelSender,
    DeliveryError,
    unsigned_webhooks,
)
from streams.notify.offsets import OffsetTracker
from streams.outbound import TargetPolicy
from streams.redact import RedactingFilter
from streams.settings import Settings
from streams.store.owners import Owner, OwnerRegistry
from streams.store.paging import Claim, Clock, PagingStore, Takeover, Window, WindowCounts
from streams.store.session import redis_session

__all__ = ["Notifier", "Sender", "parse_alert", "run_notifier"]

NOTICE_KINDS = frozenset({"maintenance_overdue"})
"""Info kinds delivered to the model's owner as a notice (no incident, no escalation,
never PagerDuty): the owner is the one who can confirm or retrain."""

log = logging.getLogger(__name__)
log.addFilter(RedactingFilter())

DeadLetter = Callable[[bytes, bytes], Awaitable[None]]
Release = Callable[[], None]
SEVERITIES = ("info", "warning", "critical")
STATUSES = ("firing", "resolved")  # absent: firing
DEGRADATION, IMPROVEMENT = "performance_degradation", "performance_improvement"
RESOLVED = ":resolved"  # decision and delivery keys of a resolved alert: never its firing one's
RETRY_S = 5.0  # after Redis or the broker failed mid-route
# Groups routed at once. Each route and each of its channel deliveries holds a Redis
# connection while it waits, and redis-py's pool (100 by default) raises, not queues, past
# its size: 16 routes of up to 4 channels stay under it, with room for two replicas in one
# process (the tests) and the ticks' own calls.
ROUTE_CONCURRENCY = 16
SUMMARY_KIND = "pages_dead_lettered"  # the fallback's summary of dead letters
ORPHAN_SUMMARY_KIND = "orphaned_models"  # the fallback's summary of orphaned_model alerts
HELD_SUMMARY_KIND = "pages_held_back"  # a channel's summary of pages past its rate limit
SUMMARY_KINDS = frozenset({SUMMARY_KIND, ORPHAN_SUMMARY_KIND, HELD_SUMMARY_KIND})
SUMMARY_MODEL = "watchkeeper"
HELD_SAMPLE = 20  # model ids named in a held-back summary
REDIS_PING_S = 5.0  # how often the notifier asks Redis for watchkeeper_redis_up
NO_CHANNEL = "none"  # the channel label of alerts with no owner and no fallback


class Sender(Protocol):
    async def deliver(
        self, channel: Channel, note: Notification, *, possible_duplicate: bool = False
    ) -> None:
        """Deliver or raise :class:`~streams.channels.DeliveryError`; ``possible_duplicate``
        marks a page the receiver may already have."""


def parse_alert(raw: bytes) -> tuple[dict[str, Any] | None, str]:
    """An alert from the alerts topic, or None and why it cannot be routed."""
    try:
        alert = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return None, f"not JSON: {exc}"
    if not isinstance(alert, dict):
        return None, "an alert must be a JSON object"
    for name in ("alert_id", "model_id", "kind"):
        if not isinstance(alert.get(name), str) or not alert[name]:
            return None, f"field {name!r} must be a non-empty string"
    if alert.get("severity") not in SEVERITIES:
        return None, f"field 'severity' must be one of {', '.join(SEVERITIES)}"
    if alert.get("status", "firing") not in STATUSES:
        return None, f"field 'status' must be one of {', '.join(STATUSES)} (or absent)"
    return alert, ""


def _resolving(alert: dict[str, Any]) -> bool:
    """Does the alert close an incident rather than open one?"""
    return alert["kind"] == IMPROVEMENT or alert.get("status") == "resolved"


def _incident_kind(alert: dict[str, Any]) -> str:
    """The kind of the incident an alert opens or closes."""
    return DEGRADATION if alert["kind"] == IMPROVEMENT else str(alert["kind"])


def _suffix(alert: dict[str, Any]) -> str:
    """Added to the alert id in decision and delivery keys: a resolved alert that reuses
    the id of the firing alert it resolves is still decided and delivered on its own."""
    return RESOLVED if alert.get("status") == "resolved" else ""


class _Hold:
    """Releases a group's Kafka messages once every delivery it started has finished."""

    def __init__(self, releases: list[Release]) -> None:
        self.releases = releases
        self.open = 1

    def add(self) -> None:
        self.open += 1

    def drop(self) -> None:
        self.open -= 1
        if self.open == 0:
            for release in self.releases:
                release()


@dataclass
class _Group:
    deadline: float
    alerts: dict[str, dict[str, Any]] = field(default_factory=dict)
    releases: list[Release] = field(default_factory=list)


@dataclass
class _Deferred:
    """A delivery another replica holds; looked at again when its lease runs out."""

    at: float
    note: Notification
    channel: Channel
    delivery_suffix: str
    hold: _Hold


class Notifier:
    """Routing, noise control and delivery; the Kafka loop is :func:`run_notifier`."""

    def __init__(
        self,
        settings: Settings,
        *,
        redis: Redis,
        sender: Sender,
        dead_letter: DeadLetter,
        clock: Clock = time.time,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self.cfg = settings.notify
        self.store = PagingStore(
            redis, settings.redis_prefix, clock=clock, ttl_s=self.cfg.dedup_ttl_s
        )
        self.registry = OwnerRegistry(redis, settings.redis_prefix)
        try:
            self.fallback = tuple(parse_channel(c) for c in self.cfg.fallback_channels)
        except InvalidChannel as exc:
            raise ConfigError(f"WATCHKEEPER_NOTIFY_FALLBACK_CHANNELS: {exc}") from exc
        policy = TargetPolicy.allowing(self.cfg.allow_private_targets)
        for channel in self.fallback:
            if why := policy.channel_problem(channel.kind, channel.target):
                raise ConfigError(
                    f"WATCHKEEPER_NOTIFY_FALLBACK_CHANNELS: a {channel.kind} channel is "
                    f"refused: {why} ({policy.rule_text()})"
                )
        self.sender = sender
        self.dead_letter = dead_letter
        self.clock = clock
        self.sleep = sleep
        self._groups: dict[str, _Group] = {}
        self._deferred: list[_Deferred] = []
        self._duplicates = 0
        self.info_kinds = frozenset(self.cfg.info_kinds)

    # --- intake -------------------------------------------------------------------------

    def offer(self, alert: dict[str, Any], release: Release | None = None) -> None:
        """Queue an alert in its model's group; ``release`` runs when it is handled."""
        model = alert["model_id"]
        group = self._groups.get(model)
        if group is None:
            group = self._groups[model] = _Group(self.clock() + self.cfg.group_wait_s)
        key = alert["alert_id"] + _suffix(alert)
        if key in group.alerts:
            self._duplicates += 1  # counted at the next tick
        group.alerts.setdefault(key, alert)
        if release is not None:
            group.releases.append(release)

    @property
    def pending(self) -> int:
        """Alerts waiting in group windows or for another replica's lease."""
        return sum(len(g.alerts) for g in self._groups.values()) + len(self._deferred)

    def due_in(self) -> float | None:
        """Seconds until the next group window or deferred delivery is due."""
        times = [g.deadline for g in self._groups.values()] + [d.at for d in self._deferred]
        return max(0.0, min(times) - self.clock()) if times else None

    async def tick(self) -> None:
        """Do what is due by the clock: group windows, deferred deliveries, escalations."""
        now = self.clock()
        if self._duplicates:
            self._duplicates, seen = 0, self._duplicates
            with contextlib.suppress(RedisError, OSError):
                await self.store.count(duplicate=seen)
        due = [m for m, g in self._groups.items() if g.deadline <= now]
        await self._flush_groups(due)
        try:
            await self._tick_deferred(now)
            await self._escalate()
            if self.fallback:
                await self._summarise_dead_letters()
                await self._summarise_orphans()
            await self._summarise_held()
        except (RedisError, OSError, KafkaError) as exc:
            log.warning("deferred deliveries and escalations wait: %r", exc)

    async def _tick_deferred(self, now: float) -> None:
        ready = [d for d in self._deferred if d.at <= now]
        self._deferred = [d for d in self._deferred if d.at > now]
        for i, d in enumerate(ready):
            try:
                await self._deliver(d.note, d.channel, d.hold, d.delivery_suffix)
            except (RedisError, OSError, KafkaError):
                self._deferred += [replace(rest, at=now + RETRY_S) for rest in ready[i:]]
                raise
            d.hold.drop()

    async def flush(self) -> None:
        """Send every open group now (shutdown, partitions revoked)."""
        await self._flush_groups(list(self._groups))

    async def _flush_groups(self, models: list[str]) -> None:
        """Route the groups, at most ``ROUTE_CONCURRENCY`` at once: a flood of distinct
        models must not ask for a Redis connection per model at once."""
        groups = [(m, self._groups.pop(m)) for m in models]
        gate = asyncio.Semaphore(ROUTE_CONCURRENCY)

        async def route(model_id: str, group: _Group) -> None:
            async with gate:
                await self._route(model_id, group)

        await asyncio.gather(*(route(m, g) for m, g in groups))

    # --- routing ------------------------------------------------------------------------

    async def _route(self, model_id: str, group: _Group) -> None:
        hold = _Hold(group.releases)
        try:
            try:
                owner = await self.registry.get(model_id)
            except InvalidOwner as exc:  # a record older rules accepted: page someone anyway
                log.error("owner of %s unusable, paging the fallback: %s", model_id, exc)
                await self.store.count(owner_record_invalid=1)
                owner = None
            alerts = sorted(
                group.alerts.values(),
                key=lambda a: (-severity_rank(a["severity"]), a.get("event_time_ms") or 0),
            )
            triggers, resolving, suppressed = await self._decide(alerts, owner)
            if suppressed:
                await self.store.count(**{f"suppressed_{k}": v for k, v in suppressed.items()})
            channels: tuple[Channel, ...]
            reason: NotificationReason
            channels, reason = (
                (owner.channels, "alert") if owner else (self.fallback, "orphaned_model")
            )
            _suppressed(channels, sum(suppressed.values()))
            name, runbook = (owner.owner, owner.runbook) if owner else (None, None)
            enrich = {"owner": name, "runbook": runbook}
            if owner is None and self.fallback:
                orphans = [a for a in triggers if a["kind"] == "orphaned_model"]
                triggers = [a for a in triggers if a["kind"] != "orphaned_model"]
                await self._summarise_later(orphans)
            # a resolve older than a firing alert of its kind in this group closes the
            # incident before that alert opens a new one; the others close it after
            newest: dict[str, int] = {}
            for a in triggers:
                kind, at = _incident_kind(a), _event_ms(a)
                newest[kind] = max(newest.get(kind, at), at)
            early: list[dict[str, Any]] = []
            late: list[dict[str, Any]] = []
            for a in resolving:
                older = _event_ms(a) < newest.get(_incident_kind(a), -1)
                (early if older else late).append(a)
            await self._resolve(model_id, early, channels, reason, enrich, hold)
            for kind_alerts in _by_kind(triggers):
                note = Notification(
                    model_id,
                    tuple({**a, **enrich} for a in kind_alerts),
                    name,
                    runbook,
                    reason=reason,
                )
                for a in note.alerts:
                    await self.store.remember(a)
                if note.primary["kind"] in NOTICE_KINDS:
                    # a notice to the owner: no incident, no escalation, never PagerDuty
                    targets = tuple(c for c in channels if c.kind != "pagerduty")
                    if targets:
                        await self._send_to(note, targets, hold)
                    else:
                        await self.store.count(suppressed_info=len(note.alerts))
                    continue
                await self.store.open_incident(
                    model_id,
                    note.dedup_key,
                    kind=_incident_kind(note.primary),
                    alert_ids=[a["alert_id"] for a in note.alerts],
                )
                await self._send_to(note, channels, hold)
                if owner and owner.escalate_after_s and note.severity == "critical":
                    due = self.clock() + owner.escalate_after_s
                    await self.store.schedule_escalation(note.primary["alert_id"], due)
            await self._resolve(model_id, late, channels, reason, enrich, hold)
        except (RedisError, OSError, KafkaError) as exc:
            # Redis or the broker is away: keep the alerts (and their offsets) and try
            # again; decisions and claims make the second attempt safe.
            log.warning("routing %s failed (%r); retrying in %.0fs", model_id, exc, RETRY_S)
            retry = self._groups.setdefault(model_id, _Group(self.clock() + RETRY_S))
            for alert_id, alert in group.alerts.items():
                retry.alerts.setdefault(alert_id, alert)
            retry.releases.extend(group.releases)
            hold.releases = []  # deliveries already deferred must not release them
        hold.drop()

    async def _decide(
        self, alerts: list[dict[str, Any]], owner: Owner | None
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], Counter[str]]:
        """The firing alerts to page, the resolving alerts (decided by :meth:`_resolve`
        once the triggers have opened their incidents) and the suppressed counts."""
        triggers: list[dict[str, Any]] = []
        resolving: list[dict[str, Any]] = []
        suppressed: Counter[str] = Counter()
        group = secrets.token_hex(8)
        for a in alerts:
            if _resolving(a):
                resolving.append(a)
                continue
            notice = a["kind"] in NOTICE_KINDS and owner is not None
            if (a["severity"] == "info" and not notice) or a["kind"] in self.info_kinds:
                await self.store.remember(a)  # never a page, but `ack` and lookups know it
                suppressed["info"] += 1
                continue
            if a["kind"] == "orphaned_model" and owner is not None:
                suppressed["owned_now"] += 1  # someone registered it since
                continue
            orphan = a["kind"] == "orphaned_model"
            cooldown = self.cfg.orphan_cooldown_s if orphan else self.cfg.cooldown_s
            decision = await self.store.decide(
                a, cooldown_s=cooldown, rank=severity_rank(a["severity"]), group=group
            )
            if decision == "deliver":
                triggers.append(a)
            else:
                suppressed[decision] += 1
        return triggers, resolving, suppressed

    async def _resolve(
        self,
        model_id: str,
        alerts: list[dict[str, Any]],
        channels: Sequence[Channel],
        reason: NotificationReason,
        enrich: dict[str, Any],
        hold: _Hold,
    ) -> None:
        """Close the open incident each resolving alert resolves and send its resolve page
        (same dedup key as the trigger); one with nothing open is suppressed as info.
        Never held back by a cooldown, an ack or a silence: it only ends an incident."""
        unresolved = 0
        for alert in alerts:
            dedup_key = await self.store.decide_resolve(
                alert, kind=_incident_kind(alert), suffix=_suffix(alert)
            )
            if dedup_key is None:
                unresolved += 1
                continue
            note = Notification(
                model_id,
                ({**alert, **enrich},),
                enrich["owner"],
                enrich["runbook"],
                reason=reason,
                action="resolve",
                dedup_key=dedup_key,
            )
            await self._send_to(note, channels, hold, _suffix(alert))
        if unresolved:
            await self.store.count(suppressed_info=unresolved)
            _suppressed(channels, unresolved)

    async def _summarise_later(self, orphans: list[dict[str, Any]]) -> None:
        """Count orphaned_model alerts in the current orphan window instead of paging each
        one: the fallback gets one page per window however many models appear."""
        counted = duplicates = 0
        for alert in orphans:
            if await self.store.record_in_window(
                "orphans",
                alert["alert_id"],
                ["total"],
                window_s=self.cfg.orphan_summary_s,
                sample=alert["model_id"],
                sample_max=self.cfg.orphan_summary_models,
            ):
                counted += 1
            else:
                duplicates += 1  # re-read after a restart: counted once already
        if orphans:
            await self.store.count(suppressed_orphan_summary=counted, duplicate=duplicates)

    async def _send_to(
        self, note: Notification, channels: Sequence[Channel], hold: _Hold, suffix: str = ""
    ) -> None:
        if not channels:
            lost = 0
            for alert in note.alerts:
                # claimed like a delivery, so a re-emitted alert is dead-lettered once
                claim = await self.store.claim(
                    alert["alert_id"] + suffix, "no-channel", lease_s=self.cfg.delivery_lease_s
                )
                if claim.state != "claimed":
                    continue
                await self._dead_letter_alert(
                    alert, note, None, "no_channel", "no owner and no fallback channel", 0
                )
                await self.store.finish(claim, "dlq|no_channel")
                lost += 1
            if lost:
                PAGES.labels(channel=NO_CHANNEL, outcome="failed").inc()
            return
        await asyncio.gather(*(self._deliver(note, ch, hold, suffix) for ch in channels))

    # --- delivery -----------------------------------------------------------------------

    async def _deliver(
        self, note: Notification, channel: Channel, hold: _Hold | None, suffix: str
    ) -> bool:
        """Claim each alert for this channel, send the claimed ones as one page.

        Alerts another replica is sending are deferred until its lease ends (when there
        is a ``hold``), else reported: the return value says whether any were busy. An
        alert in doubt (its sender died mid-request) has its whole page re-sent."""
        mine: list[dict[str, Any]] = []
        claims: list[Claim] = []
        busy: list[tuple[dict[str, Any], float]] = []
        covered: set[str] = set()
        for alert in note.alerts:
            if alert["alert_id"] in covered:
                continue
            claim = await self.store.claim(
                alert["alert_id"] + suffix, channel.key, lease_s=self.cfg.delivery_lease_s
            )
            if claim.state == "claimed":
                mine.append(alert)
                claims.append(claim)
            elif claim.state == "busy":
                busy.append((alert, claim.retry_at))
            elif claim.state == "in_doubt":
                taken = await self.store.take_over(
                    claim, channel.key, lease_s=self.cfg.delivery_lease_s
                )
                if taken.state == "busy":
                    busy.append((alert, taken.retry_at))
                elif taken.state == "taken":
                    covered |= await self._redeliver(taken, alert, note, channel, suffix)
                else:
                    await self.store.count(duplicate=1)
                    _suppressed((channel,), 1)
            else:
                await self.store.count(duplicate=1)
                _suppressed((channel,), 1)
        if busy and hold is not None:
            at = max(t for _, t in busy) + 0.01
            hold.add()
            part = replace(note, alerts=tuple(a for a, _ in busy))
            self._deferred.append(_Deferred(at, part, channel, suffix, hold))
        if mine and not await self._within_rate(note, channel):
            await self._hold_back(replace(note, alerts=tuple(mine)), channel, claims, suffix)
            return bool(busy)
        while mine:
            part = replace(note, alerts=tuple(mine))
            bound = await self.store.bind(
                claims,
                part.delivery_id,
                channel.key,
                _page_record(part, suffix),
                lease_s=self.cfg.delivery_lease_s,
            )
            if isinstance(bound, int):  # taken by a replica that has the alert in hand
                del mine[bound], claims[bound]
                continue
            await self._send_page(part, channel, bound, possible_duplicate=False)
            break
        return bool(busy)

    async def _within_rate(self, note: Notification, channel: Channel) -> bool:
        """May a page go to ``channel`` now? Summaries always may: they are what bounds a
        flood, one per window."""
        limit = self.cfg.max_pages_per_channel_per_min
        if not limit or note.primary.get("kind") in SUMMARY_KINDS:
            return True
        return await self.store.take_page_slot(channel.key, per_minute=limit)

    async def _hold_back(
        self, page: Notification, channel: Channel, claims: Sequence[Claim], suffix: str
    ) -> None:
        """Past the channel's rate: count the page in the channel's held-back window (its
        summary goes out when the minute ends) and finish its claims as held, so it is
        neither sent later nor lost from the record."""
        await self.store.remember_channel(channel.key, str(channel))
        for i, alert in enumerate(page.alerts):
            fields = ["alerts", f"severity:{alert.get('severity', 'info')}"]
            await self.store.record_in_window(
                "held",
                f"{alert['alert_id']}{suffix}:{channel.key}",
                ["pages", *fields] if i == 0 else fields,
                window_s=60.0,
                scope=channel.key,
                sample=str(alert["model_id"]),
                sample_max=HELD_SAMPLE,
            )
        for claim in claims:
            await self.store.finish(claim, f"held|{self.store.now_ms()}")
        await self.store.count(held_pages=1, suppressed_rate_limited=len(page.alerts))
        _suppressed((channel,), len(page.alerts))
        log.info(
            "page %s to %s held back: over %d pages a minute",
            page.delivery_id, channel.kind, self.cfg.max_pages_per_channel_per_min,
        )  # fmt: skip

    async def _redeliver(
        self,
        taken: Takeover,
        alert: dict[str, Any],
        note: Notification,
        channel: Channel,
        suffix: str,
    ) -> set[str]:
        """Re-send a page in doubt as it was, or dead-letter it after ``redeliver_max``
        re-sends; returns the ids of the alerts it holds."""
        if taken.page is not None:
            page = _page_from_record(taken.page)
        else:  # written before pages were recorded: this alert alone, as it was routed
            page = replace(note, alerts=(alert,))
        await self.store.count(in_doubt=len(page.alerts))
        if taken.redeliveries > self.cfg.redeliver_max:
            detail = (
                f"a notifier stopped while sending this page (in doubt {taken.redeliveries}x, "
                f"re-sent {taken.redeliveries - 1}x, redeliver_max {self.cfg.redeliver_max}); "
                "the receiver may have it"
            )
            for a in page.alerts:
                await self._dead_letter_alert(
                    a, page, channel, "delivery_in_doubt", detail, taken.redeliveries
                )
            await self.store.finish_page(
                taken.claims, page.delivery_id, channel.key, "dlq|delivery_in_doubt"
            )
            PAGES.labels(channel=channel.kind, outcome="failed").inc()
        else:
            log.warning(
                "re-sending page %s to %s: its sender stopped mid-request (re-send %d)",
                page.delivery_id, channel.kind, taken.redeliveries,
            )  # fmt: skip
            await self.store.count(redelivered=len(page.alerts), redelivered_pages=1)
            await self._send_page(page, channel, taken.claims, possible_duplicate=True)
        return {a["alert_id"] for a in page.alerts}

    async def _send_page(
        self,
        page: Notification,
        channel: Channel,
        claims: Sequence[Claim],
        *,
        possible_duplicate: bool,
    ) -> None:
        """Send a page whose claims are bound to it; record the outcome for all of them."""
        error, attempts, held = await self._send_with_retries(
            channel, page, claims, possible_duplicate=possible_duplicate
        )
        if held is None:  # another replica took the page over while we were stalled
            log.warning("lost the lease on page %s to %s", page.delivery_id, channel.kind)
            await self.store.count(lease_lost=1)
            return
        if error is None:
            stamp = f"sent|{self.store.now_ms()}"
            finished = await self.store.finish_page(held, page.delivery_id, channel.key, stamp)
            if finished < len(held):  # our lease ran out mid-send: another replica re-sends
                log.warning(
                    "lease on page %s to %s ran out mid-send", page.delivery_id, channel.kind
                )
                await self.store.count(lease_lost=1)
            await self.store.count(delivered=len(page.alerts), notifications=1)
            PAGES.labels(channel=channel.kind, outcome="sent").inc()
            return
        # dead letters first: a crash before the claims are finished re-sends the page
        # (and dead-letters it again) rather than losing it
        for alert in page.alerts:
            await self._dead_letter_alert(
                alert, page, channel, "delivery_failed", error.reason, attempts
            )
        await self.store.finish_page(held, page.delivery_id, channel.key, f"dlq|{error.reason}")
        PAGES.labels(channel=channel.kind, outcome="failed").inc()

    async def _send_with_retries(
        self,
        channel: Channel,
        note: Notification,
        claims: Sequence[Claim],
        *,
        possible_duplicate: bool,
    ) -> tuple[DeliveryError | None, int, Sequence[Claim] | None]:
        """Attempts with backoff; the lease is renewed before each pause and attempt.
        Returns the error (None when delivered), attempts made and the claims still held
        (None when another replica took the page over)."""
        # seeded per delivery: the same failure sequence backs off the same way in a rerun
        rng = random.Random(f"{note.delivery_id}|{channel.key}")  # noqa: S311
        error = DeliveryError("not attempted", retryable=False)
        held: Sequence[Claim] = claims
        lease = self.cfg.delivery_lease_s
        for attempt in range(1, self.cfg.max_attempts + 1):
            if attempt > 1:
                renewed = await self.store.renew(held, lease_s=lease)
                if isinstance(renewed, int):
                    return error, attempt - 1, None
                held = renewed
            try:
                await self.sender.deliver(channel, note, possible_duplicate=possible_duplicate)
                return None, attempt, held
            except DeliveryError as exc:
                error = exc
            except Exception as exc:  # a bug in a payload builder must not stop the notifier
                log.exception("delivering %s to %s", note.delivery_id, channel.kind)
                error = DeliveryError(f"internal error: {exc!r}", retryable=False)
            if not error.retryable or attempt == self.cfg.max_attempts:
                return error, attempt, held
            # the receiver may have got a request that timed out or was cut: retries of a
            # page that cannot be deduplicated say so
            possible_duplicate = possible_duplicate or error.maybe_delivered
            await self.store.count(retries=1)
            cap = min(self.cfg.backoff_max_s, self.cfg.backoff_base_s * 2 ** (attempt - 1))
            pause = max(rng.uniform(0, cap), min(error.retry_after or 0, self.cfg.backoff_max_s))
            log.info(
                "delivery %s to %s failed (%s), attempt %d; retrying in %.2fs",
                note.delivery_id, channel.kind, error.reason, attempt, pause,
            )  # fmt: skip
            renewed = await self.store.renew(held, lease_s=lease)
            if isinstance(renewed, int):
                return error, attempt, None
            held = renewed
            await self.sleep(pause)
        return error, self.cfg.max_attempts, held

    async def _dead_letter_alert(
        self,
        alert: dict[str, Any],
        note: Notification,
        channel: Channel | None,
        reason: str,
        detail: str,
        attempts: int,
    ) -> None:
        body = orjson.dumps(
            {
                "dlq_schema": 1,
                "reason": reason,
                "detail": detail,
                "attempts": attempts,
                # the target may hold a secret (Slack URL, routing key): kind and key only
                "channel": None if channel is None else {"kind": channel.kind, "key": channel.key},
                "notification_reason": note.reason,
                "notification_action": note.action,
                "alert": alert,
            }
        )
        await self.dead_letter(alert["alert_id"].encode(), body)
        await self.store.count(dlq=1, **{f"dlq_{reason}": 1})
        log.warning("dead-lettered alert %s (%s): %s", alert["alert_id"], reason, detail)
        if channel is not None and self.fallback and alert.get("kind") != SUMMARY_KIND:
            # (a dead-letter summary that fails is not summarised again: no loop)
            suffix = ":escalation" if note.reason == "escalation" else _suffix(alert)
            await self.store.record_dead_letter(
                alert["alert_id"] + suffix,
                channel.key,
                [
                    "total",
                    f"reason:{reason}",
                    f"channel:{channel.kind}",
                    f"model:{alert['model_id']}",
                ],
                window_s=self.cfg.dead_letter_summary_s,
            )

    # --- the fallback's summary of dead letters ------------------------------------------

    async def _summarise_dead_letters(self) -> None:
        """Page the fallback channels once per window that dead-lettered pages."""

        def note(w: Window, found: WindowCounts) -> Notification:
            return _summary_note(w.start_ms, self.cfg.dead_letter_summary_s, found.counts)

        await self._summarise("dead", "total", note, "dead_letter_summaries")

    async def _summarise_orphans(self) -> None:
        """Page the fallback channels once per window that had orphaned_model alerts."""

        def note(w: Window, found: WindowCounts) -> Notification:
            return _orphan_summary_note(w.start_ms, self.cfg.orphan_summary_s, found)

        await self._summarise("orphans", "total", note, "orphan_summaries")

    async def _summarise_held(self) -> None:
        """Tell each channel, once its minute has ended, what was held back from it."""
        limit = self.cfg.max_pages_per_channel_per_min

        def note(w: Window, found: WindowCounts) -> Notification:
            return _held_summary_note(w.scope, w.start_ms, limit, found)

        await self._summarise("held", "pages", note, "held_summaries")

    async def _summarise(
        self,
        family: str,
        total: str,
        build: Callable[[Window, WindowCounts], Notification],
        stat: str,
    ) -> None:
        """One page per ended window of ``family``: the same page on every replica, and the
        delivery claims let only one of them send it."""
        for window in await self.store.due_windows(family):
            found = await self.store.close_window(window)
            if not found.counts.get(total):
                await self.store.window_done(window)
                continue
            channels = await self._summary_channels(window)
            if not channels:  # a held-back summary whose channel record expired
                log.warning(
                    "no channel for the %s summary of window %s: %s",
                    family, window.id, found.counts,
                )  # fmt: skip
                await self.store.count(summaries_undelivered=1)
                await self.store.window_done(window)
                continue
            page = build(window, found)
            busy = await asyncio.gather(*(self._deliver(page, ch, None, "") for ch in channels))
            # else another replica is on it: look again next tick. Both replicas may get
            # here for one window (one sent, one found it sent): the one that retires it
            # counts it, so the count is one per window
            if not any(busy) and await self.store.window_done(window):
                await self.store.count(**{stat: 1})

    async def _summary_channels(self, window: Window) -> tuple[Channel, ...]:
        if window.family != "held":
            return self.fallback
        spec = await self.store.channel_spec(window.scope)
        if spec is None:
            return self.fallback
        try:
            return (parse_channel(spec),)
        except InvalidChannel:
            return self.fallback

    async def warn_unsigned(self) -> int:
        """Startup: how many webhook channels (fallback and registered) would get unsigned
        pages; a WARNING says so when there are any."""
        channels: list[Channel] = list(self.fallback)
        try:
            for owner in await self.registry.list():
                channels += [*owner.channels, *owner.escalation_channels]
        except WatchkeeperError as exc:  # a bad record: the routing path reports it
            log.warning("could not read every owner to check webhook signing: %s", exc)
        unsigned = unsigned_webhooks(self.cfg, channels)
        if unsigned:
            log.warning("%s (%d webhook channel(s))", UNSIGNED_WARNING, unsigned)
        return unsigned

    # --- escalation ---------------------------------------------------------------------

    async def _escalate(self) -> None:
        for alert_id in await self.store.due_escalations():
            if await self.store.acked(alert_id):
                await self.store.escalation_done(alert_id)
                await self.store.count(escalation_cancelled=1)
                continue
            alert = await self.store.alert(alert_id)
            if alert is None:  # outlived the dedup TTL
                await self.store.escalation_done(alert_id)
                continue
            owner = await self.registry.get(alert["model_id"])
            channels = owner.escalation_channels if owner else ()
            note = Notification(
                alert["model_id"],
                (alert,),
                alert.get("owner"),
                alert.get("runbook"),
                reason="escalation",
                dedup_key=f"watchkeeper-{alert_id}",
            )
            busy = await asyncio.gather(
                *(self._deliver(note, ch, None, ":escalation") for ch in channels or self.fallback)
            )
            if not any(busy):  # else another replica is on it: look again next tick
                await self.store.escalation_done(alert_id)
                await self.store.count(escalated=1)


def _suppressed(channels: Sequence[Channel], alerts: int) -> None:
    """Count alerts that did not page (decided against, duplicate, over the rate) once per
    channel they would have gone to."""
    if alerts:
        kinds: list[str] = [c.kind for c in channels]
        for kind in kinds or [NO_CHANNEL]:
            PAGES.labels(channel=kind, outcome="suppressed").inc(alerts)


def _event_ms(alert: dict[str, Any]) -> int:
    at = alert.get("event_time_ms")
    return at if isinstance(at, int) else 0


def _by_kind(alerts: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """A group's firing alerts as one page per incident kind (each incident has its own
    dedup key, so resolving one kind does not close another), in the group's order."""
    pages: dict[str, list[dict[str, Any]]] = {}
    for alert in alerts:
        pages.setdefault(_incident_kind(alert), []).append(alert)
    return list(pages.values())


def _page_record(note: Notification, suffix: str) -> dict[str, Any]:
    """What a replica needs to re-send a page as it was (same delivery id, dedup key)."""
    return {
        "model_id": note.model_id,
        "alerts": list(note.alerts),
        "owner": note.owner,
        "runbook": note.runbook,
        "reason": note.reason,
        "action": note.action,
        "dedup_key": note.dedup_key,
        "details": note.details,
        "suffix": suffix,
    }


def _page_from_record(record: dict[str, Any]) -> Notification:
    return Notification(
        record["model_id"],
        tuple(record["alerts"]),
        record["owner"],
        record["runbook"],
        reason=record["reason"],
        action=record["action"],
        dedup_key=record["dedup_key"],
        details=record.get("details") or {},
    )


def _listing(names: Sequence[str], total: int) -> str:
    more = total - len(names)
    return ", ".join(names) + (f" and {more} more" if more > 0 else "")


def _window_note(
    alert_id: str,
    kind: str,
    severity: str,
    text: str,
    start_ms: int,
    end_ms: int,
    **details: Any,
) -> Notification:
    """A summary page for one window, built the same on every replica (its id names the
    window, so replicas that both send it are deduplicated)."""
    summary = {
        "alert_id": alert_id,
        "model_id": SUMMARY_MODEL,
        "kind": kind,
        "severity": severity,
        "message": text,
        "window_start": rfc3339_ms(start_ms),
        "window_end": rfc3339_ms(end_ms),
        "event_time_ms": end_ms,
    }
    return Notification(
        SUMMARY_MODEL, (summary,), None, None, details={"summary": text, **details}
    )  # fmt: skip


def _orphan_summary_note(start_ms: int, window_s: float, found: WindowCounts) -> Notification:
    """The fallback's page for one window of orphaned_model alerts, the same everywhere."""
    end_ms = start_ms + int(window_s * 1000)
    total = found.counts.get("total", 0)
    text = (
        f"{total} orphaned_model alerts between {rfc3339_ms(start_ms)} and {rfc3339_ms(end_ms)}: "
        f"models serving predictions with no registered owner: "
        f"{_listing(found.sample, total)}. Nobody is accountable for them: register owners "
        "(watchkeeper owners set / import) or retire the models; "
        "`watchkeeper owners orphans` lists them all."
    )
    orphans = {
        "total": total,
        "models": list(found.sample),
        "more": max(0, total - len(found.sample)),
    }
    return _window_note(
        f"orphans-{start_ms}", ORPHAN_SUMMARY_KIND, "warning", text, start_ms, end_ms,
        orphans=orphans,
    )  # fmt: skip


def _held_summary_note(
    channel_key: str, start_ms: int, limit: int, found: WindowCounts
) -> Notification:
    """A channel's page for one minute in which pages to it were held back."""
    end_ms = start_ms + 60_000
    pages, alerts = found.counts.get("pages", 0), found.counts.get("alerts", 0)
    severities = {
        k.removeprefix("severity:"): v for k, v in found.counts.items() if k.startswith("severity:")
    }
    worst = max(severities, key=severity_rank, default="warning")
    text = (
        f"{pages} pages ({alerts} alerts) to this channel were held back between "
        f"{rfc3339_ms(start_ms)} and {rfc3339_ms(end_ms)}: more than {limit} pages a minute. "
        f"Models: {_listing(found.sample, len(found.sample))}"
        + (" and others" if len(found.sample) >= HELD_SAMPLE else "")
        + ". Their alerts are on the alerts topic; a flood this size usually means one "
        "producer or detector misbehaving."
    )
    held_back = {
        "pages": pages,
        "alerts": alerts,
        "severities": severities,
        "models": list(found.sample),
    }
    severity = worst if worst in SEVERITIES else "warning"
    return _window_note(
        f"held-{channel_key}-{start_ms}", HELD_SUMMARY_KIND, severity, text, start_ms, end_ms,
        held_back=held_back,
    )  # fmt: skip


def _summary_note(start_ms: int, window_s: float, counts: dict[str, int]) -> Notification:
    """The fallback's page for one window of dead letters, the same on every replica."""
    end_ms = start_ms + int(window_s * 1000)

    def part(prefix: str) -> dict[str, int]:
        found = {k.removeprefix(prefix): v for k, v in counts.items() if k.startswith(prefix)}
        return dict(sorted(found.items(), key=lambda kv: (-kv[1], kv[0])))

    reasons, channels, models = part("reason:"), part("channel:"), part("model:")

    def listing(values: dict[str, int], limit: int = 10) -> str:
        shown = ", ".join(f"{k} {v}" for k, v in list(values.items())[:limit])
        more = len(values) - limit
        return shown + (f" and {more} more" if more > 0 else "")

    total = counts.get("total", 0)
    text = (
        f"{total} page deliveries were dead-lettered between {rfc3339_ms(start_ms)} and "
        f"{rfc3339_ms(end_ms)}: their owners may not have been paged. "
        f"Reasons: {listing(reasons)}. Channels: {listing(channels)}. "
        f"Models: {listing(models)}. The alerts are on the dead-letter topic."
    )
    return _window_note(
        f"dead-letters-{start_ms}", SUMMARY_KIND, "critical", text, start_ms, end_ms,
        dead_letters={"total": total, "reasons": reasons, "channels": channels},
        models=models,
    )  # fmt: skip


# --- the Kafka loop -------------------------------------------------------------------------


async def run_notifier(
    settings: Settings,
    *,
    stop: asyncio.Event | None = None,
    clock: Clock = time.time,
) -> None:
    """Consume ``alerts`` in the notifier's own group until ``stop`` (or SIGTERM/SIGINT)."""
    from streams.topology import ensure_topics_named

    stop = stop or _stop_on_signals()
    t = settings.topics
    async with contextlib.AsyncExitStack() as stack:
        if settings.metrics_port:  # first: a port in use fails before anything connects
            metrics = start_metrics_server(settings.metrics_port, "notifier")
            stack.callback(metrics.stop)
        await ensure_topics_named(settings, [t.alerts, t.dlq])
        redis = await stack.enter_async_context(redis_session(settings))
        if settings.metrics_port:
            pinger = asyncio.create_task(_ping_redis(redis))

            async def stop_pinging() -> None:
                pinger.cancel()
                await asyncio.gather(pinger, return_exceptions=True)

            stack.push_async_callback(stop_pinging)
        producer = AIOKafkaProducer(
            **aiokafka_kwargs(settings.bootstrap_servers, settings.kafka), acks="all"
        )
        await producer.start()
        stack.push_async_callback(producer.stop)

        async def to_dlq(key: bytes, value: bytes) -> None:
            await producer.send_and_wait(t.dlq, value=value, key=key)

        sender = await stack.enter_async_context(ChannelSender(settings.notify))
        notifier = Notifier(settings, redis=redis, sender=sender, dead_letter=to_dlq, clock=clock)
        with contextlib.suppress(RedisError, OSError):
            await notifier.warn_unsigned()
        if settings.notify.digest_every_s:  # the weekly scorecard pages
            from streams.notify.digest import start_digests

            stack.push_async_callback(start_digests(notifier, settings, stop=stop, clock=clock))
        tracker: OffsetTracker[Any] = OffsetTracker()
        consumer = AIOKafkaConsumer(
            **aiokafka_kwargs(settings.bootstrap_servers, settings.kafka),
            group_id=settings.notify.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=int(settings.session_timeout_s * 1000),
            heartbeat_interval_ms=int(settings.heartbeat_interval_s * 1000),
            rebalance_timeout_ms=int(settings.rebalance_timeout_s * 1000),
        )
        consumer.subscribe([t.alerts], listener=_Revoked(notifier, consumer, tracker))
        await consumer.start()
        stack.push_async_callback(consumer.stop)
        # whatever the log level: the one line an operator looks for
        print(
            f"watchkeeper notifier ready: reading {t.alerts} as group {settings.notify.group_id} "
            f"from {settings.bootstrap_servers}; {len(settings.notify.fallback_channels)} "
            "fallback channel(s)",
            file=sys.stderr,
            flush=True,
        )
        while not stop.is_set():
            wait = notifier.due_in()
            timeout_ms = 200 if wait is None else int(min(max(wait, 0.01), 0.2) * 1000)
            batch = await consumer.getmany(timeout_ms=timeout_ms, max_records=500)
            try:
                for tp, messages in batch.items():
                    for m in messages:
                        tracker.start(tp, m.offset)
                        await _intake(notifier, m, tracker, tp, to_dlq)
                await notifier.tick()
                await _commit(consumer, tracker)
            except (RedisError, OSError, KafkaError) as exc:  # unfinished offsets stay
                log.warning("notifier step failed (%r); retrying", exc)
                await asyncio.sleep(1.0)
        await notifier.flush()
        await notifier.tick()
        await _commit(consumer, tracker)


async def _intake(
    notifier: Notifier, m: Any, tracker: OffsetTracker[Any], tp: Any, to_dlq: DeadLetter
) -> None:
    alert, why = parse_alert(m.value or b"")
    if alert is None:
        rejected = Rejected("invalid_alert", why, None, m.value or b"")
        body = dead_letter(
            rejected, topic=m.topic, partition=m.partition, offset=m.offset, key=m.key
        )
        await to_dlq(m.key or b"", body)
        await notifier.store.count(dlq=1, dlq_invalid_alert=1)
        tracker.done(tp, m.offset)
        return
    NOTIFIER_ALERTS.labels(kind=alert["kind"], severity=alert["severity"]).inc()
    offset = m.offset
    notifier.offer(alert, release=lambda: tracker.done(tp, offset))


async def _commit(consumer: AIOKafkaConsumer, tracker: OffsetTracker[Any]) -> None:
    moves = tracker.committable()
    if moves:
        await consumer.commit(moves)
        tracker.committed(moves)


class _Revoked(ConsumerRebalanceListener):  # type: ignore[misc]
    """Before partitions move to another replica: send what is grouped, commit, forget."""

    def __init__(
        self, notifier: Notifier, consumer: AIOKafkaConsumer, tracker: OffsetTracker[Any]
    ) -> None:
        self.notifier = notifier
        self.consumer = consumer
        self.tracker = tracker

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self.notifier.flush()
        try:
            await _commit(self.consumer, self.tracker)
        except Exception:  # commit during rebalance may fail; the claims prevent re-pages
            log.warning("commit on revocation failed", exc_info=True)
        for tp in revoked:
            self.tracker.forget(tp)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        return None


async def _ping_redis(redis: Redis) -> None:
    """Set ``watchkeeper_redis_up`` from a PING every few seconds: the notifier's Redis
    calls happen only when alerts come, and fail inside retries that say nothing."""
    while True:
        try:
            await asyncio.wait_for(redis.ping(), REDIS_PING_S / 2)
        except (TimeoutError, RedisError, OSError):
            REDIS_UP.set(0)
        else:
            REDIS_UP.set(1)
        await asyncio.sleep(REDIS_PING_S)


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop
