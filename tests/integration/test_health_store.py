"""Counters and snapshots of many models reach Redis exactly, in few script calls."""

from __future__ import annotations

import math
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


async def test_series_counts_add_up_over_writes_and_keep_the_newest_buckets(store: HealthStore):
    """Per-bucket deltas of several writes sum exactly (errors as floats); past the cap
    the oldest buckets go, fields and index entry alike; both keys expire like the model's."""
    rng = random.Random(3)
    bucket = SERIES_BUCKET_MS
    base = 1_700_000_000_000 - 1_700_000_000_000 % bucket
    expected: dict[int, list[float]] = {}
    for _ in range(4):  # four writes, overlapping buckets, in no time order
        deltas: dict[int, list[float]] = {}
        for k in rng.sample(range(SERIES_POINTS + 40), SERIES_POINTS):
            p, o = rng.randrange(0, 9), rng.randrange(0, 9)
            e = sum(rng.uniform(0, 3) for _ in range(o))  # regression: float errors
            deltas[base + k * bucket] = [p, o, e]
            mine = expected.setdefault(base + k * bucket, [0, 0, 0.0])
            mine[0], mine[1], mine[2] = mine[0] + p, mine[1] + o, mine[2] + e
        await store.put_health({}, {}, {"m": deltas})
    counted = sorted(t for t, (p, o, _) in expected.items() if p or o)
    kept = counted[-SERIES_POINTS:]
    assert len(counted) > SERIES_POINTS  # some had to go
    points = await store.series("m")
    assert [p.t_ms for p in points] == kept
    for p in points:
        want = expected[p.t_ms]
        assert (p.predictions, p.outcomes) == (want[0], want[1])
        assert math.isclose(p.error_sum, want[2], rel_tol=1e-12, abs_tol=1e-9)
    # the trimmed buckets left no field behind, and the hash stays in the compact encoding
    fields = {f.decode() for f in await store.redis.hkeys(store.key("series", "m"))}
    assert {int(f) for f in fields} == set(kept)
    encoding = await store.redis.object("encoding", store.key("series", "m"))
    assert encoding in (b"listpack", b"ziplist"), encoding
    since = kept[-3] + 1  # inside the third-newest bucket: that bucket counts
    assert [p.t_ms for p in await store.series("m", since_ms=since)] == kept[-3:]
    assert await store.series("unknown") == []


async def test_series_keys_expire_with_the_models_other_keys(redis_url: str):
    client = Redis.from_url(redis_url)
    prefix = f"t{uuid4().hex[:8]}:"
    store = HealthStore(client, prefix, retention_s=3600)
    try:
        await store.put_health({}, {}, {"m": {0: [1, 0, 0.0]}})
        ttl = await client.pttl(prefix + "series:m")
        assert 3_500_000 < ttl <= 3_600_000, ttl
    finally:
        await client.aclose()


async def test_a_model_id_with_a_colon_is_its_own_series(store: HealthStore):
    """Producers choose model ids, colons included: no model's keys are another's."""
    await store.put_health({}, {}, {"m": {0: [1, 1, 1.0]}, "m:t": {0: [2, 0, 0.0]}})
    assert [(p.predictions, p.outcomes) for p in await store.series("m")] == [(1, 1)]
    assert [(p.predictions, p.outcomes) for p in await store.series("m:t")] == [(2, 0)]


async def test_series_tails_read_the_newest_buckets_of_many_models(store: HealthStore):
    bucket = SERIES_BUCKET_MS
    models = [f"m{i}" for i in range(50)]
    series = {
        m: {k * bucket: [k, i % 3, 0.5 * (i % 3)] for k in range(i % 12)}
        for i, m in enumerate(models)
    }
    await store.put_health({}, {}, series)
    tails = await store.series_tails([*models, "unknown"], 4)
    assert tails["unknown"] == []
    for m in models:
        whole = await store.series(m)
        assert tails[m] == whole[-4:], m
        assert [p.t_ms for p in tails[m]] == sorted(
            t for t, (p, o, _) in series[m].items() if p or o
        )[-4:]
