"""The weekly digest: each owner gets their maintenance scorecard as one page, and the
fallback channels get the whole report, orphans first (:mod:`streams.views.report`).

Periods are ``digest_every_s`` long (a week by default) and start on Mondays 00:00 UTC.
At the first poll in a new period, the digest of the period that just ended goes out:

- once across notifier replicas: a ``SET NX`` marker per period
  (``notify:digest:{period}``) decides which replica builds and sends it; it holds a
  lease while sending, so a replica that dies mid-way leaves it to another after the
  lease, and each page is also claimed like any page (``sent:{digest id}:{channel}``),
  so what one replica already sent is not sent again;
- only after a whole period began with a notifier running: ``notify:digest-start``
  records when a notifier first ran under this prefix, so a fresh install (or a test)
  does not get a digest the moment it starts.

A digest is a text page: its totals on one line and the command that prints the whole
scorecard (a page is read on a phone, and mail and Slack clip long text). Webhooks also
get the scorecard as JSON (``notification_details.scorecard``). PagerDuty channels are
skipped: a digest is not an incident, and PagerDuty would open one.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
from aiokafka.errors import KafkaError
from redis.exceptions import RedisError

from streams.contract.alerts import rfc3339_ms
from streams.contract.notification import Channel, InvalidChannel, Notification, parse_channel
from streams.errors import WatchkeeperError
from streams.settings import Settings
from streams.store.owners import format_duration
from streams.store.paging import Clock
from streams.views.report import NOBODY, Report, Scorecard, read_report
from streams.views.report_text import digest_text, fleet_digest_text

if TYPE_CHECKING:
    from streams.notify.loop import Notifier

__all__ = [
    "DIGEST_KIND",
    "DIGEST_MODEL",
    "Digests",
    "period_label",
    "period_start",
    "start_digests",
]

log = logging.getLogger(__name__)

DIGEST_KIND = "scorecard_digest"
DIGEST_MODEL = "watchkeeper"  # as the notifier's other summary pages
WEEK_S = 7 * 86_400
MONDAY_S = 4 * 86_400  # 1970-01-05, the first Monday of the epoch
BUILD_LEASE_S = 600.0  # a replica building and sending the digest holds the period this long
SKIPPED_KINDS = frozenset({"pagerduty"})

Build = Callable[[int, int], Awaitable[Report]]  # (since_ms, now_ms) -> the report


def period_start(now_s: float, every_s: float) -> float:
    """Start of the period holding ``now_s``: periods are aligned on Monday 00:00 UTC."""
    return MONDAY_S + math.floor((now_s - MONDAY_S) / every_s) * every_s


def period_label(start_s: float, every_s: float) -> str:
    """``2026-W48`` for a week, else the start time (RFC 3339)."""
    if every_s == WEEK_S:
        year, week, _ = datetime.fromtimestamp(start_s, tz=UTC).isocalendar()
        return f"{year}-W{week:02d}"
    return rfc3339_ms(int(start_s * 1000))


class Digests:
    """Sends each period's digest once; :meth:`step` is called every few seconds."""

    def __init__(
        self,
        notifier: Notifier,
        settings: Settings,
        *,
        clock: Clock,
        build: Build | None = None,
    ) -> None:
        self.notifier = notifier
        self.settings = settings
        self.every_s = settings.notify.digest_every_s
        self.store = notifier.store
        self.redis = notifier.store.redis
        self.clock = clock
        self._build = build

    async def build(self, since_ms: int, now_ms: int) -> Report:
        if self._build is not None:
            return await self._build(since_ms, now_ms)
        return await read_report(self.redis, self.settings, since_ms=since_ms, now_ms=now_ms)

    async def step(self) -> bool:
        """Send the digest of the period that just ended, if it is due and no replica has
        taken it; True when this replica sent it."""
        now = self.clock()
        current = period_start(now, self.every_s)
        started_key = self.store.key("digest-start")
        await self.redis.set(started_key, int(now * 1000), nx=True)
        started = int(await self.redis.get(started_key) or 0)
        if started >= current * 1000:  # no notifier ran when this period began
            return False
        previous = current - self.every_s
        marker = self.store.key("digest", period_label(previous, self.every_s))
        lease_ms = int(BUILD_LEASE_S * 1000)
        if not await self.redis.set(marker, f"sending|{self.store.token}", nx=True, px=lease_ms):
            return False
        try:
            await self._send(int(previous * 1000), int(now * 1000))
        except BaseException:
            # another replica (or this one, at the next poll) tries again; pages already
            # sent are claimed and not sent twice
            await self.redis.delete(marker)
            raise
        keep_ms = int(max(2 * self.every_s, BUILD_LEASE_S) * 1000)
        await self.redis.set(marker, f"sent|{int(self.clock() * 1000)}", px=keep_ms)
        await self.store.count(digests=1)
        return True

    async def _send(self, since_ms: int, now_ms: int) -> None:
        report = await self.build(since_ms, now_ms)
        since = format_duration(self.every_s)
        channels = await self._owner_channels()
        stamp = int(since_ms // 1000)
        pages: list[tuple[Notification, tuple[Channel, ...]]] = []
        for card in report.scorecards:
            if card.owner == NOBODY:
                continue
            to = _usable(channels.get(card.owner, ()))
            if not to:
                log.info("no channel for the digest of owner %r (pagerduty only?)", card.owner)
                continue
            text = digest_text(card, report, since=since)
            pages.append((_note(_digest_id(stamp, card.owner), card.owner, text, card, now_ms), to))
        fallback = _usable(self.notifier.fallback)
        if fallback:
            text = fleet_digest_text(report, since=since)
            pages.append((_note(f"digest-{stamp}-all", None, text, report, now_ms), fallback))
        for note, to in pages:
            await asyncio.gather(*(self.notifier._deliver(note, ch, None, "") for ch in to))

    async def _owner_channels(self) -> dict[str, tuple[Channel, ...]]:
        """Per owner name, the channels of every model they own (in registry order); a
        record that no longer reads is skipped (the notifier reports those when routing)."""
        raw = await self.redis.hgetall(self.notifier.registry.key)
        found: dict[str, dict[Channel, None]] = {}
        for _, value in sorted(raw.items()):
            try:
                record = orjson.loads(value)
                owner = str(record["owner"])
                specs = list(record.get("channels") or [])
                parsed = [parse_channel(str(s)) for s in specs]
            except (orjson.JSONDecodeError, KeyError, TypeError, InvalidChannel):
                continue
            found.setdefault(owner, {}).update(dict.fromkeys(parsed))
        return {owner: tuple(chs) for owner, chs in found.items()}


def _usable(channels: tuple[Channel, ...] | list[Channel]) -> tuple[Channel, ...]:
    return tuple(c for c in channels if c.kind not in SKIPPED_KINDS)


def _digest_id(stamp: int, owner: str) -> str:
    """The page's id: one per period and owner (owner names may hold anything)."""
    return f"digest-{stamp}-{hashlib.sha256(owner.encode()).hexdigest()[:12]}"


def _note(
    digest_id: str, owner: str | None, text: str, what: Scorecard | Report, now_ms: int
) -> Notification:
    summary: dict[str, Any] = {
        "alert_id": digest_id,
        "model_id": DIGEST_MODEL,
        "kind": DIGEST_KIND,
        "severity": "info",
        "message": "maintenance scorecard of the week"
        + (f" for {owner}" if owner is not None else ", every owner"),
        "event_time_ms": now_ms,
    }
    key = "scorecard" if isinstance(what, Scorecard) else "report"
    return Notification(
        DIGEST_MODEL, (summary,), owner, None, details={"summary": text, key: what.to_json()}
    )


def start_digests(
    notifier: Notifier, settings: Settings, *, stop: asyncio.Event, clock: Clock
) -> Callable[[], Awaitable[None]]:
    """Start polling for due digests in the background; returns what stops it."""
    digests = Digests(notifier, settings, clock=clock)
    poll_s = min(max(settings.notify.digest_every_s / 4, 0.2), 60.0)

    async def run() -> None:
        while not stop.is_set():
            try:
                await digests.step()
            except (WatchkeeperError, RedisError, KafkaError, OSError) as exc:
                log.warning("weekly digest not sent yet (%s); trying again", exc)
            except Exception:  # a bug here must not stop the notifier's paging
                log.exception("weekly digest failed; trying again")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), poll_s)

    task = asyncio.create_task(run())

    async def stop_digests() -> None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    return stop_digests
