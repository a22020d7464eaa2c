"""The Page-Hinkley adapter flags what river flags and reports the right segments."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from detector_strategies import FAST, close, error_streams, mean
from hypothesis import given
from hypothesis import strategies as st
from river.drift import PageHinkley as RiverPageHinkley

from detectors.config import PageHinkleyConfig
from detectors.page_hinkley import PageHinkley


def streams() -> st.SearchStrategy[list[float]]:
    return error_streams(2500)


ph_configs = st.builds(
    PageHinkleyConfig,
    min_instances=st.integers(1, 100),
    delta=st.floats(0.0, 0.2),
    threshold=st.floats(1.0, 10.0) | st.floats(1.0, 100.0),
    alpha=st.floats(0.99, 1.0),
    mode=st.sampled_from(["up", "down", "both"]),
    after_window=st.integers(1, 300),
)


def river_ph(config: PageHinkleyConfig) -> RiverPageHinkley:
    return RiverPageHinkley(
        min_instances=config.min_instances,
        delta=config.delta,
        threshold=config.threshold,
        alpha=config.alpha,
        mode=config.mode,
    )


def stepped(seed: int, before: float, after: float, n: int = 2000) -> list[float]:
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.random(n) < before, rng.random(n) < after]).astype(float).tolist()


@FAST
@given(stream=streams(), config=ph_configs)
def test_shift_reports_the_segment_since_the_last_detection(
    stream: list[float], config: PageHinkleyConfig
) -> None:
    adapter = PageHinkley(config)
    twin = river_ph(config)
    segment_start = 0
    for i, x in enumerate(stream):
        twin.update(x)
        shift = adapter.update(x)
        assert (shift is not None) == twin.drift_detected, i
        if shift is None:
            continue
        end = i + 1
        segment = stream[segment_start:end]
        n_after = min(config.after_window, len(segment))
        assert shift.n_after == n_after
        assert shift.n_before == len(segment) - n_after
        assert close(shift.mean_after, mean(segment[-n_after:]))
        if shift.n_before:
            assert close(shift.mean_before, mean(segment[:-n_after]))
        else:
            assert shift.mean_before == shift.mean_after
        if config.mode == "up":
            assert shift.direction == "increase"
        elif config.mode == "down":
            assert shift.direction == "decrease"
        elif shift.n_before and shift.mean_after != shift.mean_before:
            expected = "increase" if shift.mean_after > shift.mean_before else "decrease"
            assert shift.direction == expected
        segment_start = end


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_mode_up_ignores_a_falling_error(seed: int) -> None:
    stream = stepped(seed, before=0.5, after=0.05)
    both = PageHinkley(PageHinkleyConfig(mode="both"))
    fired_both = [s for x in stream if (s := both.update(x))]
    assert fired_both, "the stream must be one Page-Hinkley can see falling"
    up = PageHinkley(PageHinkleyConfig(mode="up"))
    assert [s for x in stream if (s := up.update(x))] == []


@pytest.mark.parametrize("mode", ["both", "down"])
def test_a_falling_error_is_reported_as_decrease(mode: str) -> None:
    stream = stepped(4, before=0.5, after=0.05)
    adapter = PageHinkley(PageHinkleyConfig(mode=mode))  # type: ignore[arg-type]
    shifts = [(i, s) for i, x in enumerate(stream, 1) if (s := adapter.update(x))]
    assert shifts
    index, shift = shifts[0]
    assert index > 2000
    assert shift.direction == "decrease"
    assert shift.mean_after < shift.mean_before


def test_mode_both_reports_a_rising_error_as_increase() -> None:
    stream = stepped(5, before=0.05, after=0.5)
    adapter = PageHinkley(PageHinkleyConfig(mode="both"))
    shifts = [s for x in stream if (s := adapter.update(x))]
    assert shifts and shifts[0].direction == "increase"
    assert shifts[0].mean_after > shifts[0].mean_before


@pytest.mark.parametrize(("level", "expected"), [(0.0, "increase"), (100.0, "decrease")])
def test_mode_both_with_empty_before_uses_the_trigger(level: float, expected: str) -> None:
    """A segment shorter than the after window has no "before": the last value decides."""
    config = PageHinkleyConfig(mode="both", min_instances=1, threshold=5.0, after_window=1000)
    adapter = PageHinkley(config)
    shifts = [s for x in [level] * 10 + [50.0] * 10 if (s := adapter.update(x))]
    assert shifts
    assert shifts[0].n_before == 0
    assert shifts[0].mean_before == shifts[0].mean_after
    assert shifts[0].direction == expected


@FAST
@given(stream=streams(), config=ph_configs, cut=st.floats(0.0, 1.0))
def test_unpickled_adapter_continues_like_the_original(
    stream: list[float], config: PageHinkleyConfig, cut: float
) -> None:
    position = int(cut * len(stream))
    original = PageHinkley(config)
    for x in stream[:position]:
        original.update(x)
    restored = pickle.loads(pickle.dumps(original))
    tail = stream[position:]
    assert [restored.update(x) for x in tail] == [original.update(x) for x in tail]


def test_defaults_are_tuned_for_few_false_alarms_and_the_rest_is_rivers() -> None:
    """mode, threshold, delta and alpha are ours (see PageHinkleyConfig and
    bench/quality.py); min_instances is river's."""
    adapter = PageHinkley()
    river_default = RiverPageHinkley()
    config = adapter.config
    assert (config.mode, config.threshold, config.delta, config.alpha) == ("up", 150.0, 0.01, 1.0)
    assert config.min_instances == river_default.min_instances
    assert adapter.name == "page_hinkley"
