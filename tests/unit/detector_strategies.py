"""Hypothesis strategies shared by the detector tests: seeded streams with one change."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import Phase, settings
from hypothesis import strategies as st

from detectors.config import ErrorClipConfig

FAST = settings(max_examples=60, deadline=None, derandomize=True)
SEEDS = st.integers(0, 2**32 - 1)
LAG = 60_000  # the reorder lag of the model-track tests
T0 = 1_700_000_000_000


def slow(max_examples: int) -> settings:
    """Few examples of long streams, a failure reported as found (shrinking a stream of
    thousands of events takes ages)."""
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
    )


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def mean(values: list[float]) -> float:
    return math.fsum(values) / len(values)


def error_streams(max_n: int = 2500) -> st.SearchStrategy[list[float]]:
    """A seeded error stream with one abrupt change: 0/1 errors or absolute residuals."""

    @st.composite
    def build(draw: st.DrawFn) -> list[float]:
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        n = draw(st.integers(1, max_n) | st.integers(1000, max_n))
        change_at = draw(st.integers(0, n))
        before, after = draw(st.floats(0.0, 1.0)), draw(st.floats(0.0, 1.0))
        if draw(st.booleans()):
            values = np.concatenate(
                [rng.random(change_at) < before, rng.random(n - change_at) < after]
            )
        else:
            scale = draw(st.floats(0.1, 10.0))
            values = np.abs(
                np.concatenate(
                    [
                        rng.normal(before * scale, 1.0, change_at),
                        rng.normal(after * scale, 1.0, n - change_at),
                    ]
                )
            )
        return values.astype(float).tolist()

    return build()


def with_outliers(streams: st.SearchStrategy[list[float]]) -> st.SearchStrategy[list[float]]:
    """Streams with a few absurd errors (a label off by 1e6, 1e300) at any positions."""

    @st.composite
    def build(draw: st.DrawFn) -> list[float]:
        stream = list(draw(streams))
        if stream:
            for _ in range(draw(st.integers(0, 3))):
                at = draw(st.integers(0, len(stream) - 1))
                stream[at] = draw(st.sampled_from([1e6, 1e300, 37.5]))
        return stream

    return build()


def reference_clip(stream: list[float], config: ErrorClipConfig, task: str | None) -> list[float]:
    """What the detectors must see, written out the slow, obvious way (detectors.clipping).

    Per error: the bound is ``min(max_error, factor * median of the last 9 block
    0.9-quantiles)``, a block being ``warmup`` consecutive nonzero clipped errors; nothing
    is clipped for classification, nor, with the task inferred, before the first error
    that is neither 0 nor 1.
    """
    if task == "classification" or (not config.enabled and config.max_error is None):
        return list(stream)
    hard = math.inf if config.max_error is None else config.max_error
    regression = task == "regression"
    quantiles: list[float] = []
    block: list[float] = []
    out = []
    for error in stream:
        if error not in (0.0, 1.0):
            regression = True
        if not regression:
            out.append(error)
            continue
        bound = hard
        if config.enabled and quantiles:
            last = sorted(quantiles[-9:])
            bound = min(hard, config.factor * last[len(last) // 2])
        error = min(error, bound)
        out.append(error)
        if config.enabled and error > 0:
            block.append(error)
            if len(block) == config.warmup:
                quantiles.append(sorted(block)[(len(block) - 1) * 9 // 10])
                block = []
    return out
