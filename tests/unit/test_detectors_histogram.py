"""LogHistogram: decaying quarter-octave quantiles of durations (detectors.histogram)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.histogram import LogHistogram

QUARTER_OCTAVE = 2**0.25
FAST = settings(max_examples=150, deadline=None, derandomize=True)

durations = st.lists(
    st.floats(0.0, 1e9, allow_nan=False) | st.integers(0, 10**10).map(float),
    min_size=1,
    max_size=400,
)
quantiles = st.sampled_from([0.01, 0.25, 0.5, 0.9, 0.95, 0.99]) | st.floats(0.001, 0.999)


def weighted_quantile(values: list[float], weights: list[float], q: float) -> float:
    """The smallest value whose cumulative weight reaches ``q`` of the total (numpy's
    ``inverted_cdf`` when the weights are equal)."""
    order = np.argsort(values, kind="stable")
    cumulative = np.cumsum(np.asarray(weights)[order])
    at = int(np.searchsorted(cumulative, q * cumulative[-1], side="left"))
    return float(np.asarray(values)[order][min(at, len(values) - 1)])


def assert_within_a_quarter_octave(got: float, low: float, high: float) -> None:
    """``got`` is the upper edge of the quarter-octave bin (of log2(1 + ms)) holding the
    true quantile: not below it, and at most a quarter octave above it. ``low``/``high``
    are the true quantile at q a hair under and over (ties of float sums)."""
    assert got >= low * (1 - 1e-12)
    assert got <= (1.0 + high) * QUARTER_OCTAVE - 1.0 + 1e-9 * (1.0 + high)


@FAST
@given(durations, quantiles)
def test_quantiles_are_numpy_s_within_a_quarter_octave(values: list[float], q: float) -> None:
    h = LogHistogram()
    for v in values:
        h.add(v)
    assert h.count == len(values)
    exact = float(np.quantile(values, q, method="inverted_cdf"))
    low = float(np.quantile(values, q * (1 - 1e-9), method="inverted_cdf"))
    high = float(np.quantile(values, min(q * (1 + 1e-9), 1.0), method="inverted_cdf"))
    got = h.quantile(q)
    assert got is not None
    assert_within_a_quarter_octave(got, min(low, exact), max(high, exact))


@FAST
@given(durations, quantiles, st.floats(0.5, 0.9999))
def test_decayed_quantiles_weigh_each_value_by_decay_to_its_age(
    values: list[float], q: float, decay: float
) -> None:
    h = LogHistogram(decay)
    for v in values:
        h.add(v)
    n = len(values)
    weights = [decay ** (n - 1 - i) for i in range(n)]
    low = weighted_quantile(values, weights, q * (1 - 1e-9))
    high = weighted_quantile(values, weights, min(q * (1 + 1e-9), 1.0))
    got = h.quantile(q)
    assert got is not None
    assert_within_a_quarter_octave(got, low, high)
    assert h.count == n, "count is the number of observations, undecayed"


def test_random_durations_over_six_decades() -> None:
    rng = np.random.default_rng(7)
    values = np.exp(rng.uniform(0, np.log(1e7), 50_000))
    h = LogHistogram()
    for v in values:
        h.add(float(v))
    for q in (0.05, 0.5, 0.95, 0.99):
        exact = float(np.quantile(values, q))
        got = h.quantile(q)
        assert got is not None and exact <= got <= (1 + exact) * QUARTER_OCTAVE


def test_an_empty_histogram_has_no_quantile() -> None:
    assert LogHistogram().quantile(0.5) is None
    assert LogHistogram(0.9).quantile(0.99) is None


@pytest.mark.parametrize("decay", [0.0, -0.1, 1.0001, 2.0])
def test_decay_must_be_in_0_1(decay: float) -> None:
    with pytest.raises(ValueError, match="decay"):
        LogHistogram(decay)


def test_a_decaying_histogram_follows_a_level_shift_and_a_plain_one_does_not() -> None:
    rng = np.random.default_rng(3)
    fading, keeping = LogHistogram(0.99), LogHistogram()
    old, new = rng.uniform(90, 110, 2000), rng.uniform(9000, 11000, 500)
    for v in np.concatenate([old, new]):
        fading.add(float(v))
        keeping.add(float(v))
    median = fading.quantile(0.5)
    assert median is not None and 9000 <= median <= 11001 * QUARTER_OCTAVE
    low = fading.quantile(0.01)
    assert low is not None and low >= 9000, "2,000 old values weigh under 1 % by now"
    kept = keeping.quantile(0.5)
    assert kept is not None and kept <= 111 * QUARTER_OCTAVE, "without decay, the old level"


def test_strong_decay_survives_rescaling() -> None:
    """With decay 0.5 the weight of the next value passes 1e200 after ~665 values; the
    histogram rescales and must still weigh the latest values as before."""
    rng = np.random.default_rng(4)
    h = LogHistogram(0.5)
    values = rng.uniform(1, 1e6, 5000).tolist() + [5000.0] * 40
    for v in values:
        h.add(v)
    assert h.count == len(values)
    got = h.quantile(0.5)
    assert got is not None and 5000 <= got <= 5001 * QUARTER_OCTAVE
    h.add(1e8)  # half of all the weight now
    top = h.quantile(0.75)
    assert top is not None and 1e8 <= top <= (1e8 + 1) * QUARTER_OCTAVE


@given(durations, durations, st.sampled_from([1.0, 0.999, 0.5]))
@settings(max_examples=50, deadline=None, derandomize=True)
def test_a_pickled_histogram_goes_on_as_the_original(
    first: list[float], then: list[float], decay: float
) -> None:
    h = LogHistogram(decay)
    for v in first:
        h.add(v)
    copy = pickle.loads(pickle.dumps(h))
    for v in then:
        h.add(v)
        copy.add(v)
    assert copy.count == h.count == len(first) + len(then)
    for q in (0.05, 0.5, 0.95, 0.99):
        assert copy.quantile(q) == h.quantile(q)
    assert pickle.dumps(copy) == pickle.dumps(h)


def test_the_zeroth_quantile_is_the_bin_of_the_smallest_value() -> None:
    h = LogHistogram()
    for v in (1000.0, 2000.0, 5000.0):
        h.add(v)
    low = h.quantile(0.0)
    assert low is not None and 1000.0 <= low <= 1001.0 * QUARTER_OCTAVE
