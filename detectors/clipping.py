"""Winsorising regression errors before the detectors see them (see :class:`ErrorClipConfig`).

One absurd label (off by 1e6, or 1e300) must neither fire a detector nor stay in its
window, where it would dwarf every later change. :class:`ErrorClipper` bounds each error
by ``min(max_error, factor * scale)``; ``scale`` is the median of the 0.9-quantiles of
the latest :data:`SCALE_BLOCKS` blocks of ``warmup`` nonzero clipped errors.

Why this estimator: a block's 0.9-quantile ignores its top tenth, so a few outliers per
block do not move it, and the median over blocks ignores a block that is odd as a whole.
It costs a few C-level list operations per error and one sort of ``warmup`` floats per
block (about 0.1 us per regression error here, against about 1.3 us for the two
detectors), where a streaming quantile costs a Python-level update per error. And it is
exact arithmetic on a fixed sequence, so the same errors in the same order give the same
bounds in the live worker, in replay and after a restore from a pickle.
"""

from __future__ import annotations

import math
from collections import deque

from detectors.config import ErrorClipConfig, Task

__all__ = ["SCALE_BLOCKS", "ErrorClipper"]

SCALE_BLOCKS = 9
"""Blocks behind the scale (odd: the median is one of them)."""


class ErrorClipper:
    """One model's error bound and the state behind it; plain attributes, so it pickles.

    ``task`` is the configured task: ``"classification"`` turns clipping off (0/1 errors
    need none), ``"regression"`` on, and ``None`` waits for the first error that is
    neither 0 nor 1, which only a regression model produces.
    """

    def __init__(self, config: ErrorClipConfig, task: Task | None) -> None:
        self.relative = config.enabled
        self.factor = config.factor
        self.block_size = config.warmup
        self.max_error = math.inf if config.max_error is None else config.max_error
        self.off = task == "classification" or (not self.relative and config.max_error is None)
        self.regression = task == "regression"
        self.bound = self.max_error
        """Current clipping bound (inf until the first block, without ``max_error``)."""
        self.clipped = 0
        """Errors lowered to the bound so far."""
        self._block: list[float] = []
        self._scales: deque[float] = deque(maxlen=SCALE_BLOCKS)

    @property
    def scale(self) -> float | None:
        """The robust error scale, None before the first block is complete."""
        if not self._scales:
            return None
        ordered = sorted(self._scales)
        return ordered[len(ordered) // 2]

    def clip(self, values: list[float]) -> list[float]:
        """Bound ``values`` (finite, in stream order) in place and return the list.

        Feeding a stream in one call or in any split gives the same values: the bound only
        changes between errors, when a block completes.
        """
        if self.off:
            return values
        start = 0
        if not self.regression:
            if values.count(0.0) + values.count(1.0) == len(values):
                return values  # so far indistinguishable from classification: nothing to do
            start = next(i for i, v in enumerate(values) if v != 0.0 and v != 1.0)
            self.regression = True
        bound = self.bound
        clipped = 0
        if not self.relative:
            for i in range(start, len(values)):
                if values[i] > bound:
                    values[i] = bound
                    clipped += 1
            self.clipped += clipped
            return values
        # Segment by segment, each ending where the block may complete: the bound is
        # constant inside one, so max, min and extend do the work in C.
        block = self._block
        size = self.block_size
        i, end = start, len(values)
        while i < end:
            segment = values[i : i + size - len(block)]
            if max(segment) > bound:
                for j, error in enumerate(segment):
                    if error > bound:
                        segment[j] = bound
                        clipped += 1
                values[i : i + len(segment)] = segment
            if min(segment) > 0.0:
                block.extend(segment)
            else:  # exact predictions carry no scale
                block.extend([error for error in segment if error > 0.0])
            if len(block) == size:
                bound = self._close_block()
            i += len(segment)
        self.clipped += clipped
        return values

    def _close_block(self) -> float:
        block = self._block
        block.sort()
        self._scales.append(block[(len(block) - 1) * 9 // 10])
        block.clear()
        scale = self.scale
        assert scale is not None
        self.bound = min(self.max_error, self.factor * scale)
        return self.bound
