"""The counter buffer: deltas summed between writes, newest snapshot kept, and writes
paced so that a slow write (many models) cannot take over the worker."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from streams.health import HealthBuffer
from streams.join import JoinStats


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

    async def put_health(self, snapshots: Any, counters: Any) -> None:
        self.clock.now += self.cost
        self.writes.append((dict(snapshots), {m: Counter(c) for m, c in counters.items()}))


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
