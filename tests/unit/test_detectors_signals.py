"""Label-free and liveness signals of one model (detectors.signals, through ModelTrack).

The core promise is the one the detector bank keeps: a signal is a property of the
events, so live and replay agree. The same events, arriving in any order within the lag
and released by any cadence of watermarks (with pickling in between), must give exactly
the same signals. Each detector is then checked against what it is meant to catch.

``drive`` plays the part of the engine (streams/engine/detect_step.py): per batch
``signals(pbound)``, ``release(bound)``, ``finish(bound)`` with ``bound <= pbound``, and
at the end ``flush_signals()``, ``flush()``, ``finish(None)``.
"""

from __future__ import annotations

import math
import pickle
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.config import (
    EstimatedConfig,
    InputQualityConfig,
    LabelsConfig,
    MonitorConfig,
    PredictionDriftConfig,
    SilenceConfig,
)
from detectors.signal import Signal
from detectors.signals import SeenPayload
from detectors.track import ModelTrack

LAG = 60_000
T0 = 1_700_000_000_000
SLOW = settings(max_examples=12, deadline=None, derandomize=True)

Prediction = tuple[int, str, SeenPayload]
Outcome = tuple[int, str, float, tuple[str, int]]


@dataclass
class Events:
    """One model's prediction events and outcomes, as the join would deliver them."""

    predictions: list[Prediction] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)

    def predict(self, te: int, prediction: Any, score: float | None, version: str = "v1") -> str:
        key = f"p{len(self.predictions):07d}"
        self.predictions.append((te, key, (prediction, score, version)))
        return key

    def dead_letter(self, te: int) -> None:
        self.predictions.append((te, f"p{len(self.predictions):07d}", None))

    def label(self, key: str, te: int, completed: int, error: float) -> None:
        self.outcomes.append((completed, key, error, ("v1", te)))

    @property
    def end(self) -> int:
        """A watermark past every event."""
        times = [p[0] for p in self.predictions] + [o[0] for o in self.outcomes]
        return max(times) + 1


@dataclass(frozen=True)
class Cadence:
    """How the events reach the track: arrival jitter (below the lag), batch cuts, how far
    the outcome watermark trails the prediction watermark, and pickling between batches."""

    seed: int
    batches: int  # about this many cuts, plus ticks
    ticks: int = 0  # watermark moves with no event of this model (other models served)
    trail: int = 0  # at most this many ms between pbound and bound
    pickle_every: int = 0  # round-trip the track through pickle every n batches


def drive(
    config: MonitorConfig, events: Events, cadence: Cadence | None, *, lag_ms: int = LAG
) -> tuple[list[Signal], ModelTrack]:
    """Feed ``events`` to a fresh track the way the engine does; ``None`` is the simplest
    cadence: everything pushed in canonical order, one release at the end."""
    track = ModelTrack("m", config, lag_ms=lag_ms)
    signals: list[Signal] = []
    arrivals: list[tuple[int, int, int]] = []  # (arrival ms, order, what)
    if cadence is None:
        for p in sorted(events.predictions):
            track.see(*p)
        for o in sorted(events.outcomes):
            track.push(*o)
    else:
        rng = np.random.default_rng(cadence.seed)
        n_p, n_o = len(events.predictions), len(events.outcomes)
        jitter = rng.integers(0, lag_ms, n_p + n_o)
        times = [p[0] for p in events.predictions] + [o[0] for o in events.outcomes]
        arrivals = [(t + int(j), int(o), i) for i, (t, j, o) in enumerate(
            zip(times, jitter, rng.permutation(n_p + n_o), strict=True)
        )]  # fmt: skip
        lo, hi = min(times), max(times) + lag_ms
        for k, at in enumerate(rng.integers(lo, hi, cadence.ticks)):
            arrivals.append((int(at), -1 - k, -1))  # a tick: the watermark moves
        arrivals.sort()
        n = len(arrivals)
        cuts = set(rng.integers(1, n, cadence.batches).tolist()) if n > 1 else set()
        cuts |= {i + 1 for i, a in enumerate(arrivals) if a[2] < 0}
        bound = None
        batch = 0
        for i, (at, _, what) in enumerate(arrivals):
            if 0 <= what < n_p:
                track.see(*events.predictions[what])
            elif what >= n_p:
                track.push(*events.outcomes[what - n_p])
            if i + 1 not in cuts:
                continue
            # nothing still to arrive is older than this: arrival - jitter > at - lag
            pbound = at - lag_ms + 1
            trailing = pbound - int(rng.integers(0, cadence.trail + 1))
            bound = trailing if bound is None else min(pbound, max(bound, trailing))
            signals += track.signals(pbound)
            track.release(bound)
            signals += track.finish(bound)
            batch += 1
            if cadence.pickle_every and batch % cadence.pickle_every == 0:
                track = pickle.loads(pickle.dumps(track))
    end = events.end + lag_ms
    signals += track.signals(end)
    track.release(end)
    signals += track.finish(end)
    signals += track.flush_signals()
    track.flush()
    signals += track.finish(None)
    if cadence is not None:
        assert track.sequencer.late == 0 and track.watch.sequencer.late == 0, "not within lag"
    return signals, track


def canonical(signals: list[Signal]) -> list[Signal]:
    """The order the engine reports signals in (streams/engine/local.py)."""
    return sorted(signals, key=lambda s: (s.event_time_ms, s.kind, s.index, s.signal, s.status))


def of(signals: list[Signal], kind: str, **where: Any) -> list[Signal]:
    return [s for s in signals if s.kind == kind and all(getattr(s, k) == v for k, v in where.items())]


# --- a stream with a bit of everything ---------------------------------------------------


def eventful(seed: int) -> Events:
    """~5,000 predictions 2 s apart on average: a positive-rate shift, a burst of dead
    letters, a label outage, a silent half hour, a loss of confidence, and labels 5-120 s
    after their prediction."""
    rng = np.random.default_rng(seed)
    events = Events()
    n = int(rng.integers(4500, 5500))
    shift_at, burst_at, outage_at = (int(x) for x in rng.integers(800, 1500, 3))
    outage_len = int(rng.integers(1200, 1800))
    silent_at = int(rng.integers(2500, 3500))
    doubt_at = int(rng.integers(3800, 4200))
    t = T0 + int(rng.integers(0, 3_600_000))
    for k in range(n):
        t += int(rng.exponential(2000)) + 1
        if k == silent_at:
            t += int(rng.integers(20, 40)) * 60_000
        if burst_at <= k < burst_at + 700 and rng.random() < 0.3:
            events.dead_letter(t)
            continue
        rate = 0.3 if k < shift_at else 0.45
        confidence = 0.92 if k < doubt_at else 0.7
        c = min(max(confidence + rng.normal(0, 0.03), 0.5), 1.0)
        positive = bool(rng.random() < rate)
        key = events.predict(t, int(positive), c if positive else 1 - c)
        if not outage_at <= k < outage_at + outage_len:
            delay = 5_000 + int(rng.exponential(20_000))
            events.label(key, t, t + delay, float(rng.random() > c))
    return events


EVENTFUL = MonitorConfig(labels=LabelsConfig(window_s=600.0, min_predictions=100))


@SLOW
@given(st.integers(0, 2**32 - 1), st.lists(st.integers(0, 2**32 - 1), min_size=3, max_size=3))
def test_signals_do_not_depend_on_arrival_order_or_batch_cadence(
    seed: int, cadence_seeds: list[int]
) -> None:
    events = eventful(seed)
    reference, _ = drive(EVENTFUL, events, None)
    kinds = {s.kind for s in reference}
    assert {"prediction_drift", "model_silent", "labels_missing"} <= kinds, kinds
    cadences = [
        Cadence(cadence_seeds[0], batches=3000),  # one batch per event or two
        Cadence(cadence_seeds[1], batches=40, ticks=200, trail=300_000),
        Cadence(cadence_seeds[2], batches=5, ticks=10, trail=3_600_000, pickle_every=1),
    ]
    for cadence in cadences:
        got, _ = drive(EVENTFUL, events, cadence)
        assert canonical(got) == canonical(reference), cadence
