"""Counters and per-model health snapshots in Redis, shared by every worker process.

Kafka partitions split the join and the detectors across processes; what an operator
asks ("how many labels did fraud get, what is its error rate now?") spans all of them,
so the workers add their per-batch deltas here and the CLI and status readers read it.

Keys (``prefix`` defaults to ``wk:``):
    {prefix}stats            hash: totals (predictions, labels, joined, dlq, ...)
    {prefix}dlq              hash: dead-lettered records per reason
    {prefix}model:{model}    hash: per-model counters (predictions, joined, outcomes, alerts, ...)
    {prefix}health:{model}   hash: latest detector snapshot (error rates, n, last alert)
    {prefix}models           zset: model -> wall-clock ms when last seen in traffic
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping
from typing import Any

from redis.asyncio import Redis

from .join import JoinStats

__all__ = ["HealthStore"]


class HealthStore:
    """Writes and reads Watchkeeper's shared counters and snapshots."""

    def __init__(self, redis: Redis, prefix: str = "wk:") -> None:
        self.redis = redis
        self.prefix = prefix

    def key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    async def add_join_stats(self, stats: JoinStats) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for name, value in stats.totals().items():
            if value:
                pipe.hincrby(self.key("stats"), name, value)
        now = int(time.time() * 1000)
        seen: dict[str, int] = {}
        for field, counter in (
            ("predictions", stats.predictions),
            ("joined", stats.joined),
            ("expired_predictions", stats.expired_predictions),
            ("unscorable", stats.unscorable),
        ):
            for model, value in counter.items():
                pipe.hincrby(self.key("model", model), field, value)
                seen[model] = now
        if seen:
            pipe.zadd(self.key("models"), seen)
        await pipe.execute()

    async def add_skipped(self, reasons: Counter[str]) -> None:
        """Count dead-lettered records per reason; ``redelivered`` (skipped) and
        ``disordered_input`` (processed, but out of order) are plain counters."""
        reasons = Counter(reasons)
        for name in ("redelivered", "disordered_input"):
            value = reasons.pop(name, 0)
            if value:
                await self.redis.hincrby(self.key("stats"), name, value)
        await self.add_dlq(reasons)

    async def add_dlq(self, reasons: Counter[str]) -> None:
        if not reasons:
            return
        pipe = self.redis.pipeline(transaction=False)
        for reason, value in reasons.items():
            pipe.hincrby(self.key("dlq"), reason, value)
        pipe.hincrby(self.key("stats"), "dlq", sum(reasons.values()))
        await pipe.execute()

    async def put_health(
        self, snapshots: Mapping[str, Mapping[str, Any]], counters: Mapping[str, Counter[str]]
    ) -> None:
        if not snapshots and not counters:
            return
        pipe = self.redis.pipeline(transaction=False)
        for model, snapshot in snapshots.items():
            pipe.hset(self.key("health", model), mapping={k: str(v) for k, v in snapshot.items()})
        totals: Counter[str] = Counter()
        for model, counter in counters.items():
            for name, value in counter.items():
                pipe.hincrby(self.key("model", model), name, value)
                totals[name] += value
        for name, value in totals.items():
            pipe.hincrby(self.key("stats"), name, value)
        alerts = totals["performance_degradation"] + totals["performance_improvement"]
        if alerts:
            pipe.hincrby(self.key("stats"), "alerts", alerts)
        await pipe.execute()

    async def totals(self) -> dict[str, int]:
        raw = await self.redis.hgetall(self.key("stats"))
        return {_s(k): int(v) for k, v in raw.items()}

    async def dlq_reasons(self) -> dict[str, int]:
        raw = await self.redis.hgetall(self.key("dlq"))
        return {_s(k): int(v) for k, v in raw.items()}

    async def models(self) -> list[str]:
        members = await self.redis.zrange(self.key("models"), 0, -1)
        return [_s(m) for m in members if isinstance(m, bytes | str)]

    async def model_counters(self, model: str) -> dict[str, int]:
        raw = await self.redis.hgetall(self.key("model", model))
        return {_s(k): int(v) for k, v in raw.items()}

    async def held(self) -> int:
        """Outcomes waiting in the detectors' event-time buffers, over all models."""
        return await self._sum_health("held")

    async def late_outcomes(self) -> int:
        """Outcomes that reached a detector out of event-time order, over all models."""
        return await self._sum_health("late_outcomes")

    async def _sum_health(self, field: str) -> int:
        pipe = self.redis.pipeline(transaction=False)
        for model in await self.models():
            pipe.hget(self.key("health", model), field)
        return sum(int(v) for v in await pipe.execute() if v is not None)

    async def health(self, model: str) -> dict[str, str]:
        raw = await self.redis.hgetall(self.key("health", model))
        return {_s(k): _s(v) for k, v in raw.items()}


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
