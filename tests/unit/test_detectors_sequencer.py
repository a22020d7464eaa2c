"""The batched sequencer and detector paths give exactly what the simple ones give.

The sequencer sorts per batch instead of keeping a heap, and the bank feeds each detector
a whole batch; both are checked against straightforward references: the original
heap-based sequencer (kept below as the specification) and ``ModelMonitor.update`` one
outcome at a time on the canonical order.
"""

from __future__ import annotations

import heapq
import math
import pickle
import random

import numpy as np
import pytest
from detector_strategies import FAST, error_streams
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.adwin import Adwin
from detectors.config import AdwinConfig, MonitorConfig, PageHinkleyConfig
from detectors.exceptions import InvalidOutcome
from detectors.page_hinkley import PageHinkley
from detectors.sequencer import Pending, Sequencer
from detectors.track import ModelTrack


class HeapSequencer:
    """The original sequencer: one heap push per outcome, one heap pop per release."""

    def __init__(self, lag_ms: int) -> None:
        self.lag_ms = lag_ms
        self.max_seen_ms: int | None = None
        self.released: tuple[int, str] | None = None
        self.late = 0
        self._heap: list[Pending] = []
        self._late: list[Pending] = []

    def __len__(self) -> int:
        return len(self._heap) + len(self._late)

    def push(self, completion_ms: int, prediction_id: str, error: float, version: str | None):
        item = (completion_ms, prediction_id, error, version)
        if self.released is not None and (completion_ms, prediction_id) < self.released:
            self.late += 1
            self._late.append(item)
        else:
            heapq.heappush(self._heap, item)
        if self.max_seen_ms is None or completion_ms > self.max_seen_ms:
            self.max_seen_ms = completion_ms

    def ready(self, upto: int | None = None) -> list[Pending]:
        out, self._late = self._late, []
        if upto is not None:
            watermark = upto
        elif self.max_seen_ms is None:
            return out
        else:
            watermark = self.max_seen_ms - self.lag_ms
        while self._heap and self._heap[0][0] < watermark:
            out.append(heapq.heappop(self._heap))
        self._mark(out)
        return out

    def drain(self) -> list[Pending]:
        out, self._late = self._late, []
        while self._heap:
            out.append(heapq.heappop(self._heap))
        self._mark(out)
        return out

    def _mark(self, out: list[Pending]) -> None:
        if out:
            last = max((item[0], item[1]) for item in out)
            if self.released is None or last > self.released:
                self.released = last


# One step of a session: push an outcome, release (by lag or up to a watermark), drain,
# or checkpoint. Times are drawn from a narrow range so that ties, stragglers far behind
# the run (the heap path) and late arrivals all happen.
steps = st.lists(
    st.one_of(
        st.tuples(st.just("push"), st.integers(0, 3000), st.integers(0, 400)),
        st.tuples(st.just("ready"), st.none() | st.integers(-10, 3100), st.just(0)),
        st.tuples(st.just("drain"), st.just(0), st.just(0)),
        st.tuples(st.just("pickle"), st.just(0), st.just(0)),
    ),
    max_size=300,
)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(steps, st.integers(0, 500))
def test_sequencer_releases_exactly_what_the_heap_releases(steps, lag_ms) -> None:
    got, want = Sequencer(lag_ms), HeapSequencer(lag_ms)
    for i, (kind, a, b) in enumerate(steps):
        if kind == "push":
            item = (a, f"p{b:04d}", float(b % 3), None if b % 2 else "v1")
            got.push(*item)
            want.push(*item)
        elif kind == "ready":
            assert got.ready(a) == want.ready(a), i
        elif kind == "drain":
            assert got.drain() == want.drain(), i
        else:
            got = pickle.loads(pickle.dumps(got))
        assert (len(got), got.late, got.released) == (len(want), want.late, want.released)
        assert got.max_seen_ms == want.max_seen_ms
    assert got.drain() == want.drain()


def test_stragglers_far_behind_the_run_come_out_in_order() -> None:
    """Small batches reaching thousands of outcomes back take the heap path."""
    rng = random.Random(3)
    got, want = Sequencer(10**6), HeapSequencer(10**6)
    released_got, released_want = [], []
    for batch in range(200):
        for _ in range(rng.choice([1, 5, 50])):
            t = (
                batch * 100
                + rng.randrange(100)
                - (rng.randrange(15_000) if rng.random() < 0.2 else 0)
            )
            item = (t, f"p{rng.randrange(10**6):07d}", 0.0, None)
            got.push(*item)
            want.push(*item)
        upto = batch * 100 - 20_000  # stragglers are far behind, but not late
        released_got += got.ready(upto)
        released_want += want.ready(upto)
    assert got._heap, "the straggler path was not exercised"
    released_got += got.drain()
    released_want += want.drain()
    assert released_got == released_want
    assert got.late == 0
    assert [(t, p) for t, p, _, _ in released_got] == sorted((t, p) for t, p, _, _ in released_got)


def test_a_long_run_released_in_steps_is_compacted_and_stays_exact() -> None:
    rng = random.Random(5)
    got, want = Sequencer(0), HeapSequencer(0)
    for step in range(6):
        for i in range(step * 5000, (step + 1) * 5000):
            item = (i + rng.randrange(20), f"p{i:06d}", 0.0, "v")
            got.push(*item)
            want.push(*item)
        upto = step * 5000 + rng.randrange(1000, 4000)
        assert got.ready(upto) == want.ready(upto)
        assert len(got._run) - got._start == len(got) and len(got._run) < 10_000
        state = pickle.loads(pickle.dumps(got))
        assert state._start == 0 and state._run == got._run[got._start :]
    assert got.drain() == want.drain()


def test_a_sequencer_pickled_by_the_heap_version_is_restored() -> None:
    """Checkpoints written before the batched sequencer still load and continue."""
    old = HeapSequencer(100)
    for t in (50, 10, 400, 300, 20):
        old.push(t, f"p{t}", 0.0, "v")
    old.ready()  # releases 10, 20, 50 (watermark 300)
    old.push(5, "late", 1.0, "v")
    restored = Sequencer.__new__(Sequencer)
    restored.__setstate__(dict(old.__dict__))
    assert (len(restored), restored.late, restored.released) == (len(old), old.late, old.released)
    assert restored.max_seen_ms == old.max_seen_ms
    restored.push(350, "p350", 0.0, "v")
    old.push(350, "p350", 0.0, "v")
    assert restored.ready(1000) == old.ready(1000)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_non_finite_error_is_refused_before_it_is_held(bad: float) -> None:
    track = ModelTrack("m", MonitorConfig(), lag_ms=0)
    track.push(1, "a", 0.0, None)
    with pytest.raises(InvalidOutcome, match="'b'"):
        track.push(2, "b", bad, None)
    assert track.pending == 1
    assert [d.change.index for d in track.flush()] == []
    assert track.monitor.n == 1


@settings(max_examples=40, deadline=None, derandomize=True)
@given(st.integers(0, 2**32 - 1), st.integers(1, 700), st.integers(0, 3000))
def test_a_batched_track_detects_what_the_monitor_detects_one_by_one(
    seed: int, batch: int, checkpoint: int
) -> None:
    rng = random.Random(seed)
    n = 3000
    rate = [0.05 if i < 1500 else 0.3 for i in range(n)]
    items = [
        (i * 10 + rng.randrange(5), f"p{i:05d}", float(rng.random() < rate[i])) for i in range(n)
    ]
    arrival = sorted(items, key=lambda o: o[0] + rng.randrange(300))
    reference = ModelTrack("m", MonitorConfig(), lag_ms=0).monitor
    expected = [c for t, _, e in sorted(items) for c in reference.update(e, t)]
    assert expected, "the stream changes, so something must be detected"
    track = ModelTrack("m", MonitorConfig(), lag_ms=400)
    found = []
    for start in range(0, n, batch):
        if start <= checkpoint < start + batch:
            track = pickle.loads(pickle.dumps(track))
        for t, p, e in arrival[start : start + batch]:
            track.push(t, p, e, "1.0")
        found += track.release()
    found += track.flush()
    # the detectors' own (the track adds a measured one when a rise proves bigger)
    found = [d for d in found if not d.change.detector.endswith(":measured")]
    assert [d.change for d in found] == expected
    assert [d.prediction_id for d in found] == [sorted(items)[c.index - 1][1] for c in expected]
    assert track.sequencer.late == 0 and track.model_version == "1.0"
    assert (track.monitor.n, track.monitor.error_sum) == (reference.n, reference.error_sum)


def batches_of(stream: list[float], sizes: list[int]) -> list[list[float]]:
    out, start = [], 0
    for size in [*sizes, len(stream)]:
        out.append(stream[start : start + size])
        start += size
        if start >= len(stream):
            break
    return out


adwin_configs = st.builds(
    AdwinConfig,
    delta=st.floats(1e-4, 0.5),
    clock=st.integers(1, 64),
    min_window_length=st.integers(1, 20),
    grace_period=st.integers(0, 50),
)
ph_configs = st.builds(
    PageHinkleyConfig,
    min_instances=st.integers(1, 100),
    threshold=st.floats(1.0, 30.0),
    mode=st.sampled_from(["up", "down", "both"]),
    after_window=st.integers(1, 300),
)


@FAST
@given(
    stream=error_streams(2500),
    config=adwin_configs | ph_configs,
    sizes=st.lists(st.integers(0, 600), max_size=30),
)
def test_adapters_update_many_equals_update_in_a_loop(
    stream: list[float], config: AdwinConfig | PageHinkleyConfig, sizes: list[int]
) -> None:
    kind = Adwin if isinstance(config, AdwinConfig) else PageHinkley
    looped, batched = kind(config), kind(config)  # type: ignore[arg-type]
    expected = [(i, s) for i, x in enumerate(stream) if (s := looped.update(x)) is not None]
    got, offset = [], 0
    for part in batches_of(stream, sizes):
        got += [(offset + i, s) for i, s in batched.update_many(part)]
        offset += len(part)
    assert got == expected
    assert pickle.dumps(batched) == pickle.dumps(looped)


def test_adapters_update_many_see_a_real_change() -> None:
    rng = np.random.default_rng(9)
    stream = np.concatenate([rng.random(3000) < 0.05, rng.random(3000) < 0.4]).astype(float)
    for detector in (Adwin(AdwinConfig()), PageHinkley(PageHinkleyConfig())):
        found = detector.update_many(stream.tolist())
        assert found and found[0][0] >= 3000 and found[0][1].direction == "increase"
