"""``labels_missing``: label coverage per event-time window (detectors.labels), driven
through ModelTrack the way the engine drives it (see test_detectors_signals.drive)."""

from __future__ import annotations

import math
import pickle
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_detectors_signals import (
    LAG,
    SEEDS,
    SLOW,
    Cadence,
    Events,
    canonical,
    drive,
    live,
    of,
)

from detectors.config import LabelsConfig, MonitorConfig
from detectors.labels import LabelWindows
from detectors.signal import Signal
from detectors.track import ModelTrack

WIDTH = 600_000  # ten-minute windows
BASE = (1_700_000_000_000 // WIDTH + 1) * WIDTH  # a window edge
HOUR = 3_600_000

Delay = Callable[[int, np.random.Generator], int | None]


def config(**labels: object) -> MonitorConfig:
    return MonitorConfig(labels=LabelsConfig(window_s=WIDTH / 1000, **labels))  # type: ignore[arg-type]


def stream(seed: int, hours: float, every_ms: int, delay: Delay, jitter: bool = True) -> Events:
    """Predictions ``every_ms`` apart (jittered unless told) from ``BASE``; each labelled
    ``delay(t, rng)`` ms later, or never when that is None."""
    rng = np.random.default_rng(seed)
    events = Events()
    t = BASE
    end = BASE + int(hours * HOUR)
    while True:
        t += int(rng.integers(1, 2 * every_ms)) if jitter else every_ms
        if t >= end:
            return events
        key = events.predict(t, int(rng.random() < 0.3), None)
        d = delay(t, rng)
        if d is not None:
            events.label(key, t, t + d, float(rng.random() < 0.1))


def usual_delay(t: int, rng: np.random.Generator) -> int:
    return 5_000 + int(rng.exponential(20_000))


def outage(start: int, stop: int, delay: Delay = usual_delay) -> Delay:
    """No label for the predictions made in [start, stop)."""
    return lambda t, rng: None if start <= t < stop else delay(t, rng)


def window_of(te: int) -> int:
    return te // WIDTH


def end_of(w: int) -> int:
    return (w + 1) * WIDTH


def labels_missing(signals: list[Signal]) -> list[Signal]:
    return of(signals, "labels_missing")


# --- firing and resolving ---------------------------------------------------------------


@settings(SLOW, max_examples=6)
@given(SEEDS, st.integers(3 * HOUR, 5 * HOUR), st.integers(HOUR, 3 * HOUR))
def test_labels_that_stop_fire_one_window_plus_the_expected_delay_later(
    seed: int, stop_after: int, outage_ms: int
) -> None:
    stop, back = BASE + stop_after, BASE + stop_after + outage_ms
    events = stream(seed, 10, 2000, outage(stop, back))
    found = labels_missing(live(config(), events, seed).signals)
    assert [(s.status, s.signal) for s in found] == [
        ("firing", "label_coverage"),
        ("resolved", "label_coverage"),
    ], found
    firing, resolved = found
    # the window the labels stopped in, or the first one wholly without labels
    assert window_of(stop) <= firing.index <= window_of(stop) + 1
    delay_ms = firing.after["expected_delay_s"] * 1000
    # the learned delay: 2 x the 95th percentile of ~80 s, under one window: one window
    assert delay_ms == WIDTH
    assert firing.event_time_ms == end_of(firing.index) + delay_ms
    assert firing.direction == "decrease" and firing.detector == "window"
    # every prediction was labelled before (less a window the labels stopped half-way in)
    assert firing.before["coverage"] > 0.9
    if firing.index > window_of(stop):
        assert firing.after["coverage"] == 0.0 and firing.severity == "critical"
    assert firing.after["count"] >= 100
    # the first window with labels back enough resolves, under its own index
    assert window_of(back) <= resolved.index <= window_of(back) + 1
    resolved_delay_ms = resolved.after["expected_delay_s"] * 1000
    assert resolved.event_time_ms == end_of(resolved.index) + resolved_delay_ms
    assert resolved.severity == "info" and resolved.direction == "increase"
    assert resolved.after["coverage"] >= 0.8 * firing.before["coverage"]


def test_a_window_is_judged_once_the_watermark_is_its_delay_past_its_end() -> None:
    stop = BASE + 4 * HOUR
    events = stream(1, 7, 2000, outage(stop, BASE + 10 * HOUR))
    reference = labels_missing(drive(config(), events, None).signals)
    [firing] = reference
    # replay up to a bound well before the firing, then find the first bound that fires
    track = ModelTrack("m", config(), lag_ms=LAG)
    for p in events.predictions:
        track.see(*p)
    for o in events.outcomes:
        track.push(*o)
    early = stop - HOUR
    assert not labels_missing(track.signals(early) + step(track, early))

    def fires(bound: int) -> bool:
        copy = pickle.loads(pickle.dumps(track))
        return bool(labels_missing(copy.signals(bound) + step(copy, bound)))

    low, high = early, firing.event_time_ms + HOUR
    assert fires(high)
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if fires(mid) else (mid, high)
    assert high == firing.event_time_ms, "judged exactly when the bound reaches end + D"


def step(track: ModelTrack, bound: int) -> list[Signal]:
    track.release(bound)
    return track.finish(bound)


@settings(SLOW, max_examples=4)
@given(SEEDS, st.sampled_from([1.0, 0.6]))
def test_steady_labels_raise_nothing_for_a_day(seed: int, share: float) -> None:
    """Stable delays, all labelled or only ``share`` of the predictions ever labelled."""

    def delay(t: int, rng: np.random.Generator) -> int | None:
        return usual_delay(t, rng) if rng.random() < share else None

    events = stream(seed, 24, 3000, delay)
    run = live(config(), events, seed)
    assert labels_missing(run.signals) == []
    assert run.track.watch.labels.usual_coverage == pytest.approx(share, abs=0.05)


def test_delays_that_grow_threefold_fire_label_delay() -> None:
    def delay(t: int, rng: np.random.Generator) -> int:
        scale = 20_000 if t < BASE + 4 * HOUR else 200_000
        return 1000 + int(rng.exponential(scale))

    events = stream(2, 8, 2000, delay)
    found = labels_missing(live(config(), events).signals)
    assert found, "labels ten times later went unnoticed"
    first = found[0]
    assert (first.signal, first.status, first.severity) == ("label_delay", "firing", "warning")
    assert first.index >= window_of(BASE + 4 * HOUR)
    assert first.after["mean_delay_s"] >= 3 * first.before["mean_delay_s"]
    assert first.after["coverage"] > 0.5, "labels keep coming: not a coverage problem"


# --- settings ---------------------------------------------------------------------------


def test_expected_delay_s_overrides_the_learned_delay() -> None:
    stop = BASE + 4 * HOUR
    events = stream(3, 9, 2000, outage(stop, BASE + 6 * HOUR))
    for override_s, expected_ms in ((1800.0, 1_800_000), (60.0, WIDTH), (None, WIDTH)):
        found = labels_missing(live(config(expected_delay_s=override_s), events).signals)
        assert found, override_s
        for s in found:
            assert s.after["expected_delay_s"] * 1000 == expected_ms, (override_s, s)
            assert s.event_time_ms == end_of(s.index) + expected_ms


def test_labels_later_than_expected_delay_s_count_as_missing() -> None:
    late = stream(4, 6, 2000, lambda t, rng: 40 * 60_000 + int(rng.integers(0, 600_000)))
    # 40-50 minutes: learned, that is the usual; declared as 30 minutes, none is in time
    assert labels_missing(live(config(), late).signals) == []
    assert labels_missing(live(config(expected_delay_s=1800.0), late).signals) == []
    # the declared delay holds from the start, so no coverage was ever usual: warm-up
    # learns 0 % and stays quiet; a model that did get labels in time does alert
    switch = BASE + 3 * HOUR

    def delay(t: int, rng: np.random.Generator) -> int:
        return usual_delay(t, rng) if t < switch else 40 * 60_000

    events = stream(5, 8, 2000, delay)
    found = labels_missing(live(config(expected_delay_s=1800.0), events).signals)
    assert found and found[0].signal == "label_coverage" and found[0].after["coverage"] == 0.0
    assert found[0].index >= window_of(switch)


def test_min_coverage_raises_the_bar() -> None:
    """From 100 % labelled to 80 %: under min_coverage 0.9, but above half of usual."""

    def delay(t: int, rng: np.random.Generator) -> int | None:
        share = 1.0 if t < BASE + 3 * HOUR else 0.8
        return usual_delay(t, rng) if rng.random() < share else None

    events = stream(6, 8, 2000, delay)
    assert labels_missing(live(config(), events).signals) == []
    found = labels_missing(live(config(min_coverage=0.9), events).signals)
    assert found and found[0].status == "firing" and found[0].signal == "label_coverage"
    assert found[0].index >= window_of(BASE + 3 * HOUR)
    assert 0.7 < found[0].after["coverage"] < 0.9
    assert found[0].severity == "warning", "not under half the bar"


def test_no_alert_while_warming_up() -> None:
    # fewer labels than warmup_labels, then none: the expected delay is never known
    few = stream(7, 6, 2000, outage(BASE + 300_000, BASE + 100 * HOUR))
    assert 100 < len(few.outcomes) < 200
    run = live(config(), few)
    assert labels_missing(run.signals) == []
    assert run.track.watch.labels.expected_delay_ms() is None
    # a model that never got a label: nothing to miss
    never = stream(8, 6, 2000, lambda t, rng: None)
    assert labels_missing(live(config(expected_delay_s=600.0), never).signals) == []
    # labels for the first window only: the first windows judged teach what is usual
    # (labels.py: three evaluations) whatever they show, so they raise nothing
    brief = stream(9, 6, 2000, outage(BASE + WIDTH, BASE + 100 * HOUR))
    found = labels_missing(live(config(expected_delay_s=600.0), brief).signals)
    assert all(s.index >= window_of(BASE) + 3 for s in found), found
    # the same outage after a few hours of labels does alert
    later = stream(9, 9, 2000, outage(BASE + 4 * HOUR, BASE + 100 * HOUR))
    assert labels_missing(live(config(expected_delay_s=600.0), later).signals)


@pytest.mark.parametrize("min_predictions", [10, 100, 150])
def test_windows_of_a_quiet_model_pool_until_min_predictions(min_predictions: int) -> None:
    # exactly 20 predictions per window (one every 30 s from a window edge)
    stop = BASE + 6 * HOUR
    events = stream(10, 10, 30_000, outage(stop, BASE + 100 * HOUR), jitter=False)
    per_window = WIDTH // 30_000
    cfg = config(min_predictions=min_predictions, expected_delay_s=600.0)
    found = labels_missing(live(cfg, events).signals)
    assert len(found) == 1 and found[0].status == "firing", found
    firing = found[0]
    pooled = math.ceil(min_predictions / per_window)
    assert firing.after["count"] == pooled * per_window
    assert firing.event_time_ms == end_of(firing.index) + WIDTH
    # the pool the labels stopped in (if they stopped early enough in it), or the next
    assert window_of(stop) <= firing.index < window_of(stop) + 2 * pooled


# --- determinism and state --------------------------------------------------------------


@SLOW
@given(SEEDS, st.lists(SEEDS, min_size=2, max_size=2), st.sampled_from([100, 300]))
def test_label_windows_do_not_depend_on_arrival_order_or_cadence(
    seed: int, cadence_seeds: list[int], min_predictions: int
) -> None:
    """Slow, spread labels (up to hours), two outages, a quiet stretch that pools."""
    rng = np.random.default_rng(seed)
    a, b = (int(x) for x in rng.integers(3 * HOUR, 8 * HOUR, 2))

    def delay(t: int, rng: np.random.Generator) -> int | None:
        if BASE + a <= t < BASE + a + HOUR or BASE + 9 * HOUR <= t < BASE + b + 6 * HOUR:
            return None
        return int(rng.lognormal(math.log(120_000), 1.2))

    events = stream(seed, 14, 3000, delay)
    cfg = config(min_predictions=min_predictions)
    reference = drive(cfg, events, None).signals
    assert labels_missing(reference), "the outages went unnoticed"
    for cadence in (
        Cadence(cadence_seeds[0], batches=500, trail=2 * HOUR),
        Cadence(cadence_seeds[1], batches=30, ticks=100, trail=10 * 60_000, pickle_every=3),
    ):
        got = drive(cfg, events, cadence).signals
        assert canonical(got) == canonical(reference)


def test_labels_for_a_final_window_are_counted_late_not_judged_again() -> None:
    windows = LabelWindows(LabelsConfig(window_s=WIDTH / 1000, expected_delay_s=600.0))
    for k in range(200):
        te = BASE + k * 3000
        windows.predicted(te)
        windows.labelled(te, te + 10_000)
    windows.fix(BASE + WIDTH)
    assert windows.next_due() == BASE + 2 * WIDTH
    assert windows.finish(BASE + 2 * WIDTH - 1) == []
    assert windows.finish(BASE + 2 * WIDTH) == []  # judged: healthy, learned
    assert windows.healthy == 1 and windows.done_below == window_of(BASE) + 1
    windows.labelled(BASE + 5, BASE + 3 * WIDTH)
    windows.predicted(BASE + 6)
    assert windows.late == 2
    assert window_of(BASE) not in windows.windows
    assert pickle.loads(pickle.dumps(windows)).__dict__.keys() == windows.__dict__.keys()


def test_labels_disabled_says_nothing() -> None:
    events = stream(11, 8, 2000, outage(BASE + 4 * HOUR, BASE + 100 * HOUR))
    assert labels_missing(live(config(), events).signals), "the outage fires when enabled"
    assert labels_missing(live(config(enabled=False), events).signals) == []
