"""Counters and snapshots of many models reach Redis exactly, in few script calls."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import AsyncIterator
from uuid import uuid4

import pytest
from redis.asyncio import Redis

from streams.engine.join import JoinStats
from streams.store.health import _HASHES_PER_CALL, SERIES_BUCKET_MS, SERIES_POINTS, HealthStore


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


async def test_per_model_keys_expire_after_the_retention_and_shared_ones_never(redis_url: str):
    """Producers choose model ids: the keys of a model seen once must go away, while the
    fleet's totals stay. (Expiry itself is Redis's; this checks every per-model key gets a
    TTL of the retention, refreshed by each write, and the zset forgets old models.)"""
    client = Redis.from_url(redis_url)
    prefix = f"t{uuid4().hex[:8]}:"
    store = HealthStore(client, prefix, retention_s=3600)
    try:
        stats = JoinStats()
        stats.predictions.update({"m1": 3, "m2": 1})
        await store.add_join_stats(stats)
        await store.put_health({"m1": {"outcomes": 1}}, {"m2": Counter(outcomes=1)})
        await store.put_absolute({"model:m3": {"joined@j0": 2}, "stats": {"joined@j0": 2}})
        for key in ("model:m1", "model:m2", "health:m1", "model:m3"):
            ttl = await client.pttl(prefix + key)
            assert 3_500_000 < ttl <= 3_600_000, (key, ttl)
        for key in ("stats", "models"):
            assert await client.pttl(prefix + key) == -1, key  # no expiry
        # a model last seen two retention periods ago leaves the zset at the next write
        await client.zadd(prefix + "models", {"ancient": 1})
        await store.add_join_stats(stats)
        assert set(await store.models()) == {"m1", "m2", "m3"}
    finally:
        await client.aclose()


async def test_without_a_retention_nothing_expires(store: HealthStore):
    stats = JoinStats()
    stats.predictions.update({"m1": 1})
    await store.add_join_stats(stats)
    assert await store.redis.pttl(store.prefix + "model:m1") == -1


async def test_series_keeps_the_last_snapshot_of_each_bucket_and_a_bounded_history(
    store: HealthStore,
):
    bucket = SERIES_BUCKET_MS
    base = 1_700_000_000_000 - 1_700_000_000_000 % bucket
    # two snapshots in the first bucket (the second wins), then one a bucket
    writes = [(base + 10, 0.10), (base + bucket - 1, 0.20)]
    writes += [(base + k * bucket + 5, 0.01 * k) for k in range(1, SERIES_POINTS + 3)]
    for n, (t, rate) in enumerate(writes):
        snapshot = {
            "last_prediction_ms": t,
            "recent_error_rate": rate,
            "outcomes": n,
            "predictions_seen": 2 * n,
        }
        if n % 2:
            snapshot["label_coverage"] = 0.5
        await store.put_health({"m": snapshot}, {})
    points = await store.series("m")
    assert len(points) == SERIES_POINTS  # the oldest buckets fell off
    assert [p.t_ms for p in points] == sorted({p.t_ms for p in points})
    assert all(p.t_ms % bucket == 0 for p in points)
    last_t, last_rate = writes[-1]
    assert points[-1].t_ms == last_t - last_t % bucket
    assert points[-1].error_rate == last_rate
    assert points[-1].outcomes == len(writes) - 1
    assert points[-1].predictions == 2 * (len(writes) - 1)
    assert {p.label_coverage for p in points} == {None, 0.5}
    since = points[-3].t_ms + 1  # inside the third-newest bucket: that bucket counts
    assert [p.t_ms for p in await store.series("m", since_ms=since)] == [
        p.t_ms for p in points[-3:]
    ]


async def test_a_snapshot_in_the_first_bucket_is_replaced_not_added(store: HealthStore):
    t = 1_700_000_000_000
    for rate in (0.1, 0.3):
        await store.put_health({"m": {"last_prediction_ms": t, "recent_error_rate": rate}}, {})
    assert [(p.error_rate, p.outcomes) for p in await store.series("m")] == [(0.3, 0)]
    assert await store.series("unknown") == []
