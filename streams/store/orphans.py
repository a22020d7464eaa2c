"""Every model needs an accountable owner: the worker raises ``orphaned_model`` when a
model without one shows up in traffic, once per model per cooldown.

Owner lookups are cached for ``recheck_s`` so the join's hot path costs one Redis round
trip per batch at most, and none for models already known. While Redis is unreachable
(:mod:`streams.redis_outage`) no model is checked; the ones that came up are checked once
it answers again, so an orphan is raised late rather than never.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis

from streams.contract.alerts import build_orphan_alert
from streams.store.breaker import OUTAGE_ERRORS, RedisBreaker
from streams.store.owners import Owner, OwnerRegistry
from streams.store.paging import Clock

__all__ = ["OrphanWatch"]


class OrphanWatch:
    """Finds models without an owner and says which ones to raise an alert for."""

    def __init__(
        self,
        redis: Redis,
        prefix: str = "wk:",
        *,
        cooldown_s: float,
        recheck_s: float = 30.0,
        clock: Clock = time.time,
        breaker: RedisBreaker | None = None,
    ) -> None:
        self.redis = redis
        self.breaker = breaker or RedisBreaker()
        self.registry = OwnerRegistry(redis, prefix)
        self.marker = prefix + "orphan:"
        self.cooldown_s = cooldown_s
        self.recheck_s = recheck_s
        self.clock = clock
        self._next_check: dict[str, float] = {}

    async def check(self, models: Iterable[str]) -> list[dict[str, Any]]:
        """Alerts to publish for orphans among ``models``; call :meth:`raised` once sent."""
        if not self.breaker.available():
            return []  # nothing marked checked: every model is due when Redis is back
        now = self.clock()
        due = sorted(m for m in set(models) if self._next_check.get(m, 0.0) <= now)
        if not due:
            return []
        try:
            owned = await self.registry.get_many(due)
            orphans = [m for m in due if m not in owned]
            until = await self.redis.mget([self.marker + m for m in orphans]) if orphans else []
        except OUTAGE_ERRORS as exc:
            self.breaker.failed(f"checking the owners of {len(due)} models", exc)
            return []
        self.breaker.succeeded()
        for m in due:
            self._next_check[m] = now + self.recheck_s
        at = datetime.fromtimestamp(now, tz=UTC)
        return [
            build_orphan_alert(m, detected_at=at, cooldown_s=self.cooldown_s)
            for m, raised_until in zip(orphans, until, strict=True)
            if raised_until is None or int(raised_until) <= now * 1000
        ]

    async def raised(self, alerts: list[dict[str, Any]]) -> None:
        """Mark orphans as alerted (after the alerts are on the topic: a crash in between
        raises the alert again rather than never; so does a Redis outage, after
        ``recheck_s``, with the same alert id within the cooldown)."""
        if not alerts:
            return
        until = int((self.clock() + self.cooldown_s) * 1000)
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for a in alerts:  # read against the clock; the TTL only cleans up
                    px = int(self.cooldown_s * 1000) + 60_000
                    pipe.set(self.marker + a["model_id"], until, px=px)
                await pipe.execute()
        except OUTAGE_ERRORS as exc:
            self.breaker.failed(f"marking {len(alerts)} orphan alerts as raised", exc)
            return
        self.breaker.succeeded()

    async def owners_of(self, models: Iterable[str]) -> dict[str, Owner]:
        """Registered owners of ``models``; none while Redis is unreachable (the alert goes
        out without its owner's name, and the notifier looks the owner up when it pages)."""
        if not self.breaker.available():
            return {}
        try:
            owners = await self.registry.get_many(models)
        except OUTAGE_ERRORS as exc:
            self.breaker.failed("looking up the owners of alerted models", exc)
            return {}
        self.breaker.succeeded()
        return owners
