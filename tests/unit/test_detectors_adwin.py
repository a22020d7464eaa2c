"""The ADWIN adapter flags what river flags and splits the window where river cut it."""

from __future__ import annotations

import math
import pickle

import numpy as np
from detector_strategies import FAST, close, error_streams
from hypothesis import given
from hypothesis import strategies as st
from river.drift import ADWIN

from detectors.adwin import Adwin
from detectors.config import AdwinConfig


def streams() -> st.SearchStrategy[list[float]]:
    return error_streams(2500)


adwin_configs = st.builds(
    AdwinConfig,
    delta=st.floats(1e-4, 0.5),
    clock=st.integers(1, 64),
    max_buckets=st.integers(2, 8),
    min_window_length=st.integers(1, 20),
    grace_period=st.integers(0, 50),
)


def river_adwin(config: AdwinConfig) -> ADWIN:
    return ADWIN(
        delta=config.delta,
        clock=config.clock,
        max_buckets=config.max_buckets,
        min_window_length=config.min_window_length,
        grace_period=config.grace_period,
    )


@FAST
@given(stream=streams(), config=adwin_configs)
def test_shift_splits_the_window_river_held(stream: list[float], config: AdwinConfig) -> None:
    adapter = Adwin(config)
    twin = river_adwin(config)
    segment_start = 0  # river restarts its window on the update after a detection
    for i, x in enumerate(stream):
        width_before = int(twin.width)
        twin.update(x)
        shift = adapter.update(x)
        assert (shift is not None) == twin.drift_detected, i
        if shift is None:
            continue
        assert shift.n_before + shift.n_after == width_before + 1
        assert shift.n_before + shift.n_after == i + 1 - segment_start
        assert shift.n_after >= 1 and shift.n_before >= 1
        end = i + 1
        after = stream[end - shift.n_after : end]
        before = stream[segment_start : end - shift.n_after]
        assert close(shift.mean_after, math.fsum(after) / len(after))
        assert close(shift.mean_before, math.fsum(before) / len(before))
        expected = "increase" if shift.mean_after > shift.mean_before else "decrease"
        assert shift.direction == expected
        segment_start = end


def test_abrupt_increase_is_reported_as_increase() -> None:
    rng = np.random.default_rng(11)
    stream = np.concatenate([rng.random(2000) < 0.05, rng.random(2000) < 0.3]).astype(float)
    adapter = Adwin(AdwinConfig())
    shifts = [(i, s) for i, x in enumerate(stream.tolist(), 1) if (s := adapter.update(x))]
    assert shifts, "ADWIN missed a jump of the error rate from 5 % to 30 %"
    index, shift = shifts[0]
    assert index > 2000
    assert shift.direction == "increase"
    assert shift.mean_after > shift.mean_before


def test_abrupt_decrease_is_reported_as_decrease() -> None:
    rng = np.random.default_rng(12)
    stream = np.concatenate([rng.random(2000) < 0.4, rng.random(2000) < 0.05]).astype(float)
    adapter = Adwin(AdwinConfig())
    shifts = [s for x in stream.tolist() if (s := adapter.update(x))]
    assert shifts
    assert shifts[0].direction == "decrease"
    assert shifts[0].mean_after < shifts[0].mean_before


@FAST
@given(stream=streams(), config=adwin_configs, cut=st.floats(0.0, 1.0))
def test_unpickled_adapter_continues_like_the_original(
    stream: list[float], config: AdwinConfig, cut: float
) -> None:
    position = int(cut * len(stream))
    original = Adwin(config)
    for x in stream[:position]:
        original.update(x)
    restored = pickle.loads(pickle.dumps(original))
    assert restored.config == original.config
    tail = stream[position:]
    assert [restored.update(x) for x in tail] == [original.update(x) for x in tail]


def test_default_config_is_rivers_default() -> None:
    adapter = Adwin()
    river_default = ADWIN()
    assert adapter.config == AdwinConfig()
    for name in ("delta", "clock", "max_buckets", "min_window_length", "grace_period"):
        assert getattr(adapter.config, name) == getattr(river_default, name), name
    assert adapter.name == "adwin"
