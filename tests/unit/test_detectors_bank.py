"""ModelMonitor reports exactly what river's detectors report, and survives pickling."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
from detector_strategies import FAST, error_streams, reference_clip, with_outliers
from hypothesis import given
from hypothesis import strategies as st
from river.drift import ADWIN
from river.drift import PageHinkley as RiverPageHinkley

from detectors.bank import RECENT_WINDOW, ModelMonitor
from detectors.base import Change
from detectors.config import AdwinConfig, ErrorClipConfig, MonitorConfig, PageHinkleyConfig
from detectors.exceptions import InvalidOutcome
from detectors.registry import DETECTORS


def streams() -> st.SearchStrategy[list[float]]:
    return with_outliers(error_streams(3000))


monitor_configs = st.builds(
    MonitorConfig,
    task=st.sampled_from([None, "classification", "regression"]),
    error_clip=st.builds(
        ErrorClipConfig,
        enabled=st.booleans(),
        factor=st.floats(2.0, 20.0),
        warmup=st.integers(10, 300),
        max_error=st.none() | st.floats(0.5, 100.0),
    ),
    adwin=st.builds(
        AdwinConfig,
        delta=st.floats(1e-4, 0.5),
        clock=st.integers(1, 64),
        max_buckets=st.integers(2, 8),
        min_window_length=st.integers(1, 20),
        grace_period=st.integers(0, 50),
    ),
    page_hinkley=st.builds(
        PageHinkleyConfig,
        min_instances=st.integers(1, 100),
        delta=st.floats(0.0, 0.2),
        threshold=st.floats(1.0, 10.0) | st.floats(1.0, 100.0),
        alpha=st.floats(0.99, 1.0),
        mode=st.sampled_from(["up", "down", "both"]),
        after_window=st.integers(1, 300),
    ),
)


def river_indices(detector: ADWIN | RiverPageHinkley, stream: list[float]) -> list[int]:
    """1-based positions at which a fresh river detector, run bare, flags a drift."""
    update = detector.update
    flagged = []
    for i, x in enumerate(stream, 1):
        update(x)
        if detector.drift_detected:
            flagged.append(i)
    return flagged


def expected_indices(config: MonitorConfig, stream: list[float]) -> dict[str, list[int]]:
    """What river flags on the stream as clipped by the reference implementation."""
    stream = reference_clip(stream, config.error_clip, config.task)
    expected = {}
    if config.adwin.enabled:
        a = config.adwin
        adwin = ADWIN(
            delta=a.delta,
            clock=a.clock,
            max_buckets=a.max_buckets,
            min_window_length=a.min_window_length,
            grace_period=a.grace_period,
        )
        expected["adwin"] = river_indices(adwin, stream)
    if config.page_hinkley.enabled:
        p = config.page_hinkley
        ph = RiverPageHinkley(
            min_instances=p.min_instances,
            delta=p.delta,
            threshold=p.threshold,
            alpha=p.alpha,
            mode=p.mode,
        )
        expected["page_hinkley"] = river_indices(ph, stream)
    return expected


def times_for(stream: list[float]) -> list[int]:
    """Event times that differ from the indices, so a mix-up between them shows."""
    return [1_700_000_000_000 + 250 * i for i in range(len(stream))]


def run(monitor: ModelMonitor, stream: list[float], times: list[int]) -> list[Change]:
    changes = []
    for error, time_ms in zip(stream, times, strict=True):
        changes.extend(monitor.update(error, time_ms))
    return changes


def state(monitor: ModelMonitor) -> tuple[object, ...]:
    return (
        monitor.n,
        monitor.error_sum,
        monitor.last_event_time_ms,
        monitor.error_rate,
        monitor.recent_error_rate,
        monitor.clipped,
        monitor.clipper.bound,
    )


@FAST
@given(stream=streams(), config=monitor_configs)
def test_monitor_flags_exactly_what_river_flags(stream: list[float], config: MonitorConfig) -> None:
    times = times_for(stream)
    changes = run(ModelMonitor("m", config), stream, times)
    expected = expected_indices(config, stream)
    got = {name: [c.index for c in changes if c.detector == name] for name in expected}
    assert got == expected
    assert {c.detector for c in changes} <= set(expected)
    for change in changes:
        assert change.event_time_ms == times[change.index - 1]
    order = list(DETECTORS)
    keys = [(c.index, order.index(c.detector)) for c in changes]
    assert keys == sorted(keys), "changes come in stream order, then registry order"


def test_a_real_drift_fires_both_detectors_as_an_increase() -> None:
    rng = np.random.default_rng(2024)
    change_point = 2000
    stream = np.concatenate([rng.random(change_point) < 0.05, rng.random(2000) < 0.3])
    errors = stream.astype(float).tolist()
    monitor = ModelMonitor("fraud", MonitorConfig())
    changes = run(monitor, errors, times_for(errors))
    for name in ("adwin", "page_hinkley"):
        fired = [c for c in changes if c.detector == name]
        assert fired, f"{name} missed a jump of the error rate from 5 % to 30 %"
        assert all(c.index > change_point for c in fired), f"{name} fired before the change"
        first = fired[0]
        assert first.direction == "increase"
        assert first.mean_after > first.mean_before
        assert first.n_before > 0 and first.n_after > 0
    assert changes == [
        c for idx in sorted({c.index for c in changes}) for c in changes if c.index == idx
    ]


@FAST
@given(stream=streams(), config=monitor_configs, cut=st.floats(0.0, 1.0))
def test_pickled_mid_stream_the_monitor_continues_identically(
    stream: list[float], config: MonitorConfig, cut: float
) -> None:
    times = times_for(stream)
    position = int(cut * len(stream))
    original = ModelMonitor("m", config)
    head = run(original, stream[:position], times[:position])
    restored = pickle.loads(pickle.dumps(original))
    assert state(restored) == state(original)
    assert restored.model_id == "m" and restored.config == config
    tail_original = run(original, stream[position:], times[position:])
    tail_restored = run(restored, stream[position:], times[position:])
    assert tail_restored == tail_original
    assert state(restored) == state(original)
    uninterrupted = run(ModelMonitor("m", config), stream, times)
    assert head + tail_restored == uninterrupted


@FAST
@given(stream=streams(), config=monitor_configs, data=st.data())
def test_update_many_equals_update_in_a_loop(
    stream: list[float], config: MonitorConfig, data: st.DataObject
) -> None:
    times = times_for(stream)
    looped = ModelMonitor("m", config)
    expected = run(looped, stream, times)
    batched = ModelMonitor("m", config)
    sizes = data.draw(st.lists(st.integers(0, 500), max_size=40), label="batch sizes")
    bounds = [0]
    for size in sizes:
        bounds.append(min(bounds[-1] + size, len(stream)))
    bounds.append(len(stream))
    got: list[Change] = []
    for start, end in zip(bounds, bounds[1:], strict=False):
        got.extend(batched.update_many(stream[start:end], times[start:end]))
    assert got == expected
    assert state(batched) == state(looped)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_errors_are_refused_before_any_state_changes(bad: float) -> None:
    rng = np.random.default_rng(5)
    stream = np.concatenate([rng.random(300) < 0.05, rng.random(700) < 0.6]).astype(float).tolist()
    times = times_for(stream)
    monitor = ModelMonitor("m", MonitorConfig())
    reference = ModelMonitor("m", MonitorConfig())
    run(monitor, stream[:300], times[:300])
    run(reference, stream[:300], times[:300])
    with pytest.raises(ValueError, match="finite"):
        monitor.update(bad, 0)
    with pytest.raises(InvalidOutcome, match="position 1"):
        monitor.update_many([1.0, bad, 0.0], [0, 0, 0])
    assert state(monitor) == state(reference)
    tail = run(monitor, stream[300:], times[300:])
    assert tail, "the tail drifts, so a corrupted detector state would show"
    assert tail == run(reference, stream[300:], times[300:])


def test_update_many_takes_numpy_arrays() -> None:
    rng = np.random.default_rng(8)
    stream = np.concatenate([rng.random(1000) < 0.05, rng.random(1000) < 0.5]).astype(float)
    times = np.array(times_for(stream.tolist()), dtype=np.int64)
    from_lists = ModelMonitor("m", MonitorConfig())
    expected = from_lists.update_many(stream.tolist(), times.tolist())
    from_arrays = ModelMonitor("m", MonitorConfig())
    got = from_arrays.update_many(stream, times)
    assert got and got == expected
    assert all(type(c.event_time_ms) is int for c in got)
    assert state(from_arrays) == state(from_lists)
    assert type(from_arrays.last_event_time_ms) is int


def test_update_many_accepts_huge_finite_errors() -> None:
    """A sum that overflows is not a non-finite error: only real nan/inf are refused."""
    monitor = ModelMonitor("m", MonitorConfig())
    monitor.update_many([1e308, 1e308], [1, 2])
    assert monitor.n == 2


def test_update_many_refuses_mismatched_lengths() -> None:
    monitor = ModelMonitor("m", MonitorConfig())
    with pytest.raises(ValueError, match="2 errors but 1 event times"):
        monitor.update_many([0.0, 1.0], [1])
    assert monitor.n == 0


@FAST
@given(stream=streams())
def test_error_rates_are_the_overall_and_the_recent_mean(stream: list[float]) -> None:
    monitor = ModelMonitor("m", MonitorConfig())
    assert (monitor.error_rate, monitor.recent_error_rate) == (0.0, 0.0)
    assert monitor.last_event_time_ms is None
    times = times_for(stream)
    run(monitor, stream, times)
    clipped = reference_clip(stream, MonitorConfig().error_clip, None)
    assert monitor.clipped == sum(a != b for a, b in zip(stream, clipped, strict=True))
    stream = clipped  # the rates are of what the detectors saw
    recent = stream[-RECENT_WINDOW:]
    assert monitor.n == len(stream)
    assert math.isclose(monitor.error_rate, math.fsum(stream) / len(stream), abs_tol=1e-9)
    assert math.isclose(monitor.recent_error_rate, math.fsum(recent) / len(recent), abs_tol=1e-9)
    assert monitor.last_event_time_ms == times[-1]


def with_enabled(adwin: bool, page_hinkley: bool) -> MonitorConfig:
    return MonitorConfig(
        adwin=AdwinConfig(enabled=adwin, clock=1),
        page_hinkley=PageHinkleyConfig(enabled=page_hinkley, threshold=5.0),
    )


@pytest.mark.parametrize(
    ("adwin", "page_hinkley", "names"),
    [
        (True, True, ("adwin", "page_hinkley")),
        (True, False, ("adwin",)),
        (False, True, ("page_hinkley",)),
        (False, False, ()),
    ],
)
def test_disabled_detectors_are_not_built_and_never_report(
    adwin: bool, page_hinkley: bool, names: tuple[str, ...]
) -> None:
    rng = np.random.default_rng(3)
    stream = np.concatenate([rng.random(500) < 0.05, rng.random(500) < 0.6]).astype(float).tolist()
    monitor = ModelMonitor("m", with_enabled(adwin, page_hinkley))
    assert monitor.detector_names == names
    fired = {c.detector for c in run(monitor, stream, times_for(stream))}
    assert fired == set(names)


def test_registry_order_is_adwin_then_page_hinkley() -> None:
    assert list(DETECTORS) == ["adwin", "page_hinkley"]
    built = [factory(MonitorConfig()) for factory in DETECTORS.values()]
    assert [getattr(detector, "name", None) for detector in built] == list(DETECTORS)
