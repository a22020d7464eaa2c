"""Event-time ordering before the detectors: canonical order, nothing lost, late counted."""

from __future__ import annotations

import pickle
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.bank import ModelMonitor
from detectors.config import MonitorConfig
from detectors.sequencer import Sequencer
from detectors.track import ModelTrack

outcomes = st.lists(
    st.tuples(st.integers(0, 10_000), st.integers(0, 10**6)), max_size=80, unique=True
).map(lambda items: [(t, f"p{n:07d}") for t, n in items])


def arrive(items, jitter: int, seed: int):
    """Arrival order: each outcome shows up at most ``jitter`` after its event time."""
    rnd = random.Random(seed)
    return [
        x
        for _, _, x in sorted((t + rnd.randint(0, jitter), rnd.random(), (t, p)) for t, p in items)
    ]


@settings(max_examples=200, deadline=None)
@given(outcomes, st.integers(0, 500), st.integers(0, 2**32), st.floats(0, 1))
def test_arrivals_within_the_lag_come_out_in_canonical_order(items, jitter, seed, often):
    seq = Sequencer(lag_ms=jitter)
    rnd = random.Random(seed)
    released = []
    for t, pid in arrive(items, jitter, seed):
        seq.push(t, pid, 0.0, None)
        if rnd.random() < often:
            released += seq.ready()
    released += seq.drain()
    assert [(t, p) for t, p, _, _ in released] == sorted(items)
    assert seq.late == 0 and len(seq) == 0


@settings(max_examples=200, deadline=None)
@given(outcomes, st.integers(0, 500), st.integers(0, 2**32))
def test_with_too_small_a_lag_nothing_is_lost_and_late_ones_are_counted(items, jitter, seed):
    seq = Sequencer(lag_ms=0)
    released = []
    for t, pid in arrive(items, jitter, seed):
        seq.push(t, pid, 0.0, None)
        released += seq.ready()
    released += seq.drain()
    assert sorted((t, p) for t, p, _, _ in released) == sorted(items)
    order = [(t, p) for t, p, _, _ in released]
    inversions = sum(1 for a, b in zip(order, order[1:], strict=False) if b < a)
    assert (seq.late == 0) == (order == sorted(items))
    assert inversions <= seq.late


def test_negative_lag_is_rejected():
    with pytest.raises(ValueError, match="lag_ms"):
        Sequencer(-1)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32), st.integers(1, 400))
def test_track_detects_what_the_monitor_detects_on_the_sorted_stream(seed, cut):
    rnd = random.Random(seed)
    n = 1200
    items = [
        (i * 10 + rnd.randint(0, 5), f"p{i:05d}", float(rnd.random() < (0.05 if i < 600 else 0.4)))
        for i in range(n)
    ]
    direct = ModelMonitor("m", MonitorConfig())
    expected = []
    for t, _, e in sorted(items):
        expected += direct.update(e, t)
    track = ModelTrack("m", MonitorConfig(), lag_ms=200)
    found = []
    shuffled = arrive([(t, p) for t, p, _ in items], 150, seed)
    errors = {p: e for _, p, e in items}
    for i, (t, p) in enumerate(shuffled):
        if i == cut:  # a checkpoint/restore in the middle changes nothing
            track = pickle.loads(pickle.dumps(track))
        found += track.offer(t, p, errors[p], "1.0")
    found += track.flush()
    found = [d for d in found if not d.change.detector.endswith(":measured")]  # the track's own
    assert [d.change for d in found] == expected
    assert track.sequencer.late == 0
