"""Regression errors are bounded: one absurd label neither fires nor blinds a detector."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from detector_strategies import FAST, error_streams, reference_clip, with_outliers
from hypothesis import given
from hypothesis import strategies as st

from detectors.bank import ModelMonitor
from detectors.base import Change
from detectors.clipping import ErrorClipper
from detectors.config import ErrorClipConfig, MonitorConfig

clip_configs = st.builds(
    ErrorClipConfig,
    enabled=st.booleans(),
    factor=st.floats(2.0, 20.0),
    warmup=st.integers(10, 60),
    max_error=st.none() | st.floats(0.5, 100.0),
)
tasks = st.sampled_from([None, "classification", "regression"])


@st.composite
def error_lists(draw: st.DrawFn) -> list[float]:
    """Streams of 0/1 or absolute residuals, with outliers, runs of exact zeros, and a
    0/1 prefix (so an inferred task switches to regression mid-stream)."""
    stream = draw(with_outliers(error_streams(1500)))
    if stream:  # moderate excursions too, which the exact bound decides
        for _ in range(draw(st.integers(0, 30))):
            at = draw(st.integers(0, len(stream) - 1))
            stream[at] = stream[at] * draw(st.floats(1.0, 12.0)) + draw(st.floats(0.0, 6.0))
    if draw(st.booleans()) and stream:
        at, n = draw(st.integers(0, len(stream) - 1)), draw(st.integers(1, 200))
        stream[at : at + n] = [0.0] * n
    prefix = draw(st.lists(st.sampled_from([0.0, 1.0]), max_size=50))
    return prefix + stream


def clip_in_pieces(clipper: ErrorClipper, stream: list[float], cuts: list[int]) -> list[float]:
    out: list[float] = []
    bounds = [0, *sorted(min(c, len(stream)) for c in cuts), len(stream)]
    for start, end in zip(bounds, bounds[1:], strict=False):
        out += clipper.clip(stream[start:end])
    return out


@FAST
@given(
    stream=error_lists(),
    config=clip_configs,
    task=tasks,
    cuts=st.lists(st.integers(0, 2000), max_size=30),
)
def test_clipping_equals_the_reference_in_any_split(
    stream: list[float], config: ErrorClipConfig, task: str | None, cuts: list[int]
) -> None:
    expected = reference_clip(stream, config, task)
    clipper = ErrorClipper(config, task)  # type: ignore[arg-type]
    assert clip_in_pieces(clipper, list(stream), cuts) == expected
    assert clipper.clipped == sum(a != b for a, b in zip(stream, expected, strict=True))
    assert all(a <= b for a, b in zip(expected, stream, strict=True)), "clipping only lowers"
    if config.max_error is not None and task != "classification":
        assert max(expected, default=0.0) <= max(config.max_error, 1.0)


@FAST
@given(stream=error_lists(), config=clip_configs)
def test_classification_errors_are_never_clipped(
    stream: list[float], config: ErrorClipConfig
) -> None:
    clipper = ErrorClipper(config, "classification")
    assert clipper.clip(list(stream)) == stream
    assert clipper.clipped == 0


def test_an_inferred_model_is_regression_from_its_first_error_other_than_0_or_1() -> None:
    clipper = ErrorClipper(ErrorClipConfig(max_error=0.5), None)
    assert clipper.clip([1.0, 0.0, 1.0]) == [1.0, 0.0, 1.0]
    assert not clipper.regression
    assert clipper.clip([1.0, 0.75, 1.0]) == [1.0, 0.5, 0.5]
    assert (clipper.regression, clipper.clipped) == (True, 2)


def test_max_error_applies_at_once_the_relative_bound_after_warmup() -> None:
    config = ErrorClipConfig(factor=5.0, warmup=10, max_error=1000.0)
    clipper = ErrorClipper(config, "regression")
    assert clipper.clip([1e6, 50.0]) == [1000.0, 50.0]  # warming up: only max_error
    assert clipper.scale is None
    clipper.clip([1.0] * 8)  # the first block completes: scale = its 0.9-quantile
    assert clipper.scale == 50.0 and clipper.bound == 250.0
    clipper.clip([0.0] * 50)  # exact predictions carry no scale
    assert clipper.scale == 50.0
    clipper.clip([2.0] * 10)
    assert clipper.scale == 50.0  # median of (50, 2) is the upper one
    clipper.clip([2.0] * 10)
    assert clipper.scale == 2.0 and clipper.bound == 10.0
    assert clipper.clip([11.0, 9.0]) == [10.0, 9.0]
    assert clipper.clipped == 2


def test_a_monitor_pickled_before_clipping_existed_gets_a_fresh_clipper() -> None:
    monitor = ModelMonitor("m", MonitorConfig(task="regression"))
    monitor.update_many([1.0, 2.0], [1, 2])
    state = dict(monitor.__dict__)
    del state["clipper"]
    old = ModelMonitor.__new__(ModelMonitor)
    old.__setstate__(state)  # what unpickling an older monitor does
    assert old.clipped == 0 and old.clipper.regression
    old.update_many([1e300], [3])
    assert pickle.loads(pickle.dumps(old)).n == 3


# --- one absurd label in a stable regression stream --------------------------------------

N, CHANGE = 10_000, 6_000
OUTLIERS = {3_000: 1e6, 4_000: 1e300}  # a label off by 1e6, and one at 1e300
SEEDS = range(12)


def regression_errors(seed: int, outliers: dict[int, float]) -> list[float]:
    """|prediction - label| of a stable model whose residual spread doubles at CHANGE."""
    rng = np.random.default_rng(seed)
    sigma = np.where(np.arange(N) < CHANGE, 1.0, 2.0)
    errors = np.abs(rng.normal(0.0, sigma)).tolist()
    for at, value in outliers.items():
        errors[at] = value
    return errors


def detect(errors: list[float], config: MonitorConfig) -> tuple[list[Change], ModelMonitor]:
    monitor = ModelMonitor("price", config)
    changes = []
    for start in range(0, len(errors), 512):  # as the worker feeds it: released batches
        batch = errors[start : start + 512]
        changes += monitor.update_many(batch, range(start, start + len(batch)))
    return changes, monitor


def first_after(changes: list[Change], detector: str, index: int) -> int | None:
    hits = [c.index for c in changes if c.detector == detector and c.index > index]
    return hits[0] if hits else None


@pytest.mark.parametrize("task", ["regression", None])
def test_one_absurd_label_raises_no_alert_and_a_later_shift_is_still_found(
    task: str | None,
) -> None:
    config = MonitorConfig(task=task)  # type: ignore[arg-type]
    unclipped = MonitorConfig(task=task, error_clip=ErrorClipConfig(enabled=False))  # type: ignore[arg-type]
    delays: dict[str, list[int]] = {"clean": [], "outliers": []}
    blinded = 0
    for seed in SEEDS:
        clean, _ = detect(regression_errors(seed, {}), config)
        dirty, monitor = detect(regression_errors(seed, OUTLIERS), config)
        assert [c for c in dirty if c.index <= CHANGE] == [], f"seed {seed}: false alert"
        assert monitor.clipped >= len(OUTLIERS)
        assert monitor.error_rate < 10, "the error rate is of clipped errors"
        for name, changes in (("clean", clean), ("outliers", dirty)):
            found = first_after(changes, "adwin", CHANGE)
            assert found is not None, f"seed {seed}: ADWIN missed the shift ({name})"
            delays[name].append(found - CHANGE)
        # what the bound prevents: without it, the outliers alert and then blind ADWIN
        raw, _ = detect(regression_errors(seed, OUTLIERS), unclipped)
        assert any(c.index <= CHANGE for c in raw)
        blinded += first_after(raw, "adwin", CHANGE) is None
    # the shift is found at close to the same index with or without the outliers
    assert all(
        abs(a - b) <= 64 for a, b in zip(delays["clean"], delays["outliers"], strict=True)
    ), delays
    assert sum(delays["outliers"]) <= sum(delays["clean"]) + 64
    assert blinded == len(SEEDS)
