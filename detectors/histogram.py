"""A decaying histogram of durations on a log scale, for quantiles that follow a stream.

Used for a model's gaps between predictions and its label delays: their scale spans
milliseconds to weeks, and daily seasonality moves them, so the bins are quarter octaves
and old observations fade by ``decay`` per new one. Deterministic and picklable.
"""

from __future__ import annotations

import math

__all__ = ["LogHistogram"]

_BINS_PER_OCTAVE = 4
_log2 = math.log2
_RESCALE_AT = 1e200


class LogHistogram:
    """Counts of ``log2(1 + ms)`` in quarter octaves, each observation weighted
    ``decay ** age``; ``count`` is the number of observations (undecayed)."""

    __slots__ = ("bins", "count", "decay", "total", "weight")

    def __init__(self, decay: float = 1.0) -> None:
        if not 0.0 < decay <= 1.0:
            raise ValueError(f"decay must be in (0, 1], got {decay}")
        self.decay = decay
        self.bins: list[float] = []
        self.total = 0.0
        self.weight = 1.0  # weight of the next observation (grows instead of decaying all)
        self.count = 0

    def add(self, ms: float, weight: float = 1.0) -> None:
        """Count ``ms`` (``weight`` times: a gap weighted by its length, say)."""
        b = int(_BINS_PER_OCTAVE * _log2(1.0 + ms)) if ms > 0 else 0
        bins = self.bins
        if b >= len(bins):
            bins.extend([0.0] * (b + 1 - len(bins)))
        w = self.weight * weight
        bins[b] += w
        self.total += w
        self.count += 1
        if self.decay < 1.0:
            self.weight /= self.decay
            if self.weight > _RESCALE_AT:
                scale = 1.0 / self.weight
                self.bins = [x * scale for x in bins]
                self.total *= scale
                self.weight = 1.0

    def quantile(self, q: float) -> float | None:
        """The upper edge (ms) of the bin holding quantile ``q``; None when empty."""
        if self.total <= 0.0:
            return None
        goal = q * self.total
        seen = 0.0
        for b, x in enumerate(self.bins):
            seen += x
            if seen >= goal and x > 0:
                return 2.0 ** ((b + 1) / _BINS_PER_OCTAVE) - 1.0
        return 2.0 ** (len(self.bins) / _BINS_PER_OCTAVE) - 1.0

    def __getstate__(self) -> tuple[float, list[float], float, float, int]:
        return self.decay, self.bins, self.total, self.weight, self.count

    def __setstate__(self, state: tuple[float, list[float], float, float, int]) -> None:
        self.decay, self.bins, self.total, self.weight, self.count = state
