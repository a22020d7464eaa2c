"""The counter buffer: deltas summed between writes, newest snapshot kept, and writes
paced so that a slow write (many models) cannot take over the worker."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from streams.engine.join import JoinStats
from streams.store.health import HealthBuffer


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class SlowStore:
    """Records what would be written; each write takes ``cost`` seconds of the clock."""

    def __init__(self, clock: Clock, cost: float) -> None:
        self.clock, self.cost = clock, cost
        self.writes: list[tuple[dict[str, Any], dict[str, Counter[str]]]] = []
        self.joined: list[dict[str, int]] = []

    async def add_join_stats(self, stats: JoinStats) -> None:
        self.joined.append(stats.totals())

    async def add_skipped(self, reasons: Counter[str]) -> None:
        pass

    async def put_health(self, snapshots: Any, counters: Any, series: Any = None) -> None:
        self.clock.now += self.cost
        self.writes.append((dict(snapshots), {m: Counter(c) for m, c in counters.items()}))

    async def put_absolute(self, counts: Any) -> None:
        pass


def test_deltas_are_summed_and_the_newest_snapshot_wins() -> None:
    clock = Clock()
    store = SlowStore(clock, cost=0.0)
    buf = HealthBuffer(store, interval_s=0.5, clock=clock)  # type: ignore[arg-type]

    async def scenario() -> None:
        for held in (5, 3, 0):
            buf.put_health({"m": {"held": held}}, {"m": Counter(outcomes=10)})
            buf.add_join_stats(JoinStats(predictions=Counter(m=2)))
            await buf.maybe_flush()  # not due yet: nothing written
        assert store.writes == []
        clock.now = 0.5
        await buf.maybe_flush()

    asyncio.run(scenario())
    assert store.writes == [({"m": {"held": 0}}, {"m": Counter(outcomes=30)})]
    assert store.joined[0]["predictions"] == 6


def test_a_slow_write_spaces_the_next_one_by_four_times_its_duration() -> None:
    clock = Clock()
    store = SlowStore(clock, cost=1.0)  # e.g. 10,000 models
    buf = HealthBuffer(store, interval_s=0.5, clock=clock)  # type: ignore[arg-type]

    async def scenario() -> list[float]:
        written_at = []
        for step in range(200):
            clock.now = max(clock.now, step * 0.1)
            before = len(store.writes)
            buf.put_health({}, {"m": Counter(outcomes=1)})
            await buf.maybe_flush()
            if len(store.writes) > before:
                written_at.append(clock.now)
        await buf.flush()  # what shutdown does
        return written_at

    written_at = asyncio.run(scenario())
    gaps = [b - a for a, b in zip(written_at, written_at[1:], strict=False)]
    assert len(written_at) >= 3
    assert gaps and all(g >= 5.0 - 1e-9 for g in gaps), gaps  # 1 s write + 4 s pause
    # nothing lost: every delta is in exactly one write
    assert sum(c["m"]["outcomes"] for _, c in store.writes) == 200


class FlakyStore:
    """Records writes; fails (before writing anything) at the steps it is told to."""

    def __init__(self) -> None:
        self.fail_at: set[str] = set()
        self.error: type[Exception] = RedisConnectionError
        self.joined: Counter[str] = Counter()
        self.skipped: Counter[str] = Counter()
        self.counters: dict[str, Counter[str]] = {}
        self.snapshots: dict[str, Any] = {}
        self.absolute: dict[str, dict[str, int]] = {}
        self.series: dict[tuple[str, int], list[float]] = {}

    def _step(self, name: str) -> None:
        if name in self.fail_at:
            raise self.error(f"{name}: failed")

    async def add_join_stats(self, stats: JoinStats) -> None:
        self._step("join")
        self.joined.update(stats.joined)

    async def add_skipped(self, reasons: Counter[str]) -> None:
        self._step("skipped")
        self.skipped.update(reasons)

    async def put_health(self, snapshots: Any, counters: Any, series: Any = None) -> None:
        self._step("health")
        self.snapshots.update(snapshots)
        for model, counter in counters.items():
            self.counters.setdefault(model, Counter()).update(counter)
        for model, buckets in (series or {}).items():
            for start, values in buckets.items():
                into = self.series.setdefault((model, start), [0, 0, 0.0])
                for i, v in enumerate(values):
                    into[i] += v

    async def put_absolute(self, counts: Any) -> None:
        self._step("absolute")
        for key, fields in counts.items():
            self.absolute.setdefault(key, {}).update(fields)


_step = st.one_of(
    st.tuples(st.just("add"), st.sampled_from("abc"), st.integers(1, 5)),
    st.tuples(
        st.just("flush"),
        st.sets(st.sampled_from(["join", "skipped", "health", "absolute"])),
        # refused or reset, timed out, an error reply (OOM at maxmemory), the socket itself
        st.sampled_from([RedisConnectionError, RedisTimeoutError, ResponseError, OSError]),
    ),
    st.tuples(st.just("wait"), st.floats(0.0, 20.0)),
)


@given(st.lists(_step, max_size=60))
@settings(max_examples=150, deadline=None)
def test_counts_written_through_redis_failures_are_neither_lost_nor_doubled(
    steps: list[tuple[Any, ...]],
) -> None:
    """Whatever fails, and whenever: once a write succeeds everything added was written
    exactly once, and the snapshot of each model is the newest one."""
    clock = Clock()
    store = FlakyStore()
    buf = HealthBuffer(store, interval_s=0.5, clock=clock)  # type: ignore[arg-type]
    added_joined: Counter[str] = Counter()
    added_skipped: Counter[str] = Counter()
    added_outcomes: dict[str, int] = Counter()
    newest: dict[str, int] = {}
    partition_counts: dict[str, int] = Counter()  # a partition's checkpointed counters
    added_series: dict[tuple[str, int], list[float]] = {}

    async def scenario() -> None:
        for step in steps:
            if step[0] == "add":
                _, model, n = step
                partition_counts[model] += n
                buf.set_counts(f"model:{model}", "j0", {"joined": partition_counts[model]})
                buf.add_join_stats(JoinStats(joined=Counter({model: n})))
                buf.add_skipped(Counter(invalid_json=n))
                buf.put_health({model: {"outcomes": n}}, {model: Counter(outcomes=n)})
                bucket = 900_000 * (n % 3)
                buf.add_series({model: {bucket: [n + 1, n, 0.5 * n]}})
                into = added_series.setdefault((model, bucket), [0, 0, 0.0])
                into[0], into[1], into[2] = into[0] + n + 1, into[1] + n, into[2] + 0.5 * n
                added_joined[model] += n
                added_skipped["invalid_json"] += n
                added_outcomes[model] += n
                newest[model] = n
            elif step[0] == "flush":
                store.fail_at, store.error = step[1], step[2]
                await buf.maybe_flush()
            else:
                clock.now += step[1]
        store.fail_at = set()
        clock.now += 60.0  # past any wait of the breaker
        await buf.flush()

    asyncio.run(scenario())
    assert store.joined == added_joined
    assert store.skipped == added_skipped
    assert {m: c["outcomes"] for m, c in store.counters.items()} == added_outcomes
    assert {m: s["outcomes"] for m, s in store.snapshots.items()} == newest
    assert store.series == added_series  # halves: exact in floats
    # absolute counts: the newest value of every part is the one written last
    assert {k: f["joined@j0"] for k, f in store.absolute.items()} == {
        f"model:{m}": n for m, n in partition_counts.items()
    }
    assert buf.unwritten() == (0, 0)
    assert not buf.breaker.down


def test_while_redis_is_down_the_buffer_calls_it_once_per_wait_and_the_wait_doubles() -> None:
    clock = Clock()
    store = FlakyStore()
    store.fail_at = {"health"}
    calls = []
    original = store.put_health

    async def counted(snapshots: Any, counters: Any, series: Any = None) -> None:
        calls.append(clock.now)
        await original(snapshots, counters, series)

    store.put_health = counted  # type: ignore[method-assign]
    buf = HealthBuffer(store, interval_s=0.5, clock=clock)  # type: ignore[arg-type]

    async def scenario() -> None:
        for step in range(400):  # a batch every 0.1 s for 40 s, Redis down throughout
            clock.now = step * 0.1
            buf.put_health({}, {"m": Counter(outcomes=1)})
            buf.add_series({"m": {step // 100 * 900_000: [1, 0, 0.0]}})
            await buf.maybe_flush()

    asyncio.run(scenario())
    gaps = [round(b - a, 6) for a, b in zip(calls, calls[1:], strict=False)]
    # attempts 1, 2, 4, 8 s apart, then every 15 s (the cap); never once per batch
    assert gaps[:4] == [1.0, 2.0, 4.0, 8.0], gaps
    assert all(g == 15.0 for g in gaps[4:]), gaps
    # what a stop would lose: the 400 outcomes and the 400 predictions of the series
    assert buf.breaker.down and buf.unwritten() == (800, 0)
