"""Hypothesis strategies shared by the detector tests: seeded streams with one change."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import settings
from hypothesis import strategies as st

FAST = settings(max_examples=60, deadline=None, derandomize=True)


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
