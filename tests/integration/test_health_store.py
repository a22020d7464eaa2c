"""Counters and snapshots of many models reach Redis exactly, in few script calls."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import AsyncIterator
from uuid import uuid4

import pytest
from redis.asyncio import Redis

from streams.engine.join import JoinStats
from streams.store.health import _HASHES_PER_CALL, HealthStore


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[HealthStore]:
    client = Redis.from_url(redis_url)
    try:
        yield HealthStore(client, f"t{uuid4().hex[:8]}:")
    finally:
        await client.aclose()


async def test_many_models_are_counted_exactly_over_several_writes(store: HealthStore):
    rng = random.Random(7)
    models = [f"m{i}" for i in range(_HASHES_PER_CALL * 2 + 17)]  # spans three calls
    expected: dict[str, Counter[str]] = {m: Counter() for m in models}
    totals: Counter[str] = Counter()
    for _ in range(3):
        stats = JoinStats()
        counters: dict[str, Counter[str]] = {}
        snapshots = {}
        for m in rng.sample(models, len(models) // 2):
            p, j, o = rng.randrange(1, 50), rng.randrange(0, 50), rng.randrange(0, 9)
            stats.predictions[m] += p
            stats.joined[m] += j
            counters[m] = Counter(outcomes=o, performance_degradation=o % 2)
            snapshots[m] = {"outcomes": o, "error_rate": o / 10, "held": 0}
            expected[m].update(
                {"predictions": p, "joined": j, "outcomes": o, "performance_degradation": o % 2}
            )
        stats.labels = 5
        totals.update(predictions=stats.totals()["predictions"], labels=5)
        totals.update(joined=stats.totals()["joined"])
        await store.add_join_stats(stats)
        await store.put_health(snapshots, counters)
        for c in counters.values():
            totals.update(c)
            totals["alerts"] += c["performance_degradation"]
        last_snapshots = snapshots

    for m in rng.sample(models, 50) + models[-3:]:
        assert await store.model_counters(m) == {k: v for k, v in expected[m].items() if v}
    for m in rng.sample(sorted(last_snapshots), 100):
        assert await store.health(m) == {k: str(v) for k, v in last_snapshots[m].items()}
    assert await store.totals() == {k: v for k, v in totals.items() if v}
    seen = {m for m, c in expected.items() if c["predictions"]}
    assert set(await store.models()) == seen
