"""``model_silent`` in event time: a model that was serving stops while others go on.

A model's usual gap is the 99th percentile of its recent gaps between predictions, each
weighted by its length, in a decaying histogram (see
:class:`~detectors.config.SilenceConfig`). A silence is raised at event time
``last prediction + limit``, whether the watermark passes that point first (a deadline)
or the next prediction comes after it within one batch (a gap): both give the same signal.
Pure and picklable.
"""

from __future__ import annotations

from detectors.config import SilenceConfig
from detectors.histogram import LogHistogram
from detectors.signal import Signal

__all__ = ["Silence"]

_GAP_DECAY = 0.998  # gaps forget with a memory of about 500 predictions


class Silence:
    """The gaps of one model's prediction stream, and whether it is silent."""

    def __init__(self, config: SilenceConfig) -> None:
        self.config = config
        self.gaps = LogHistogram(_GAP_DECAY)
        self.last_ms: int | None = None  # newest prediction
        self.silent_since: int | None = None  # last prediction before an open silence
        self._floor_ms = int(config.min_gap_s * 1000)
        self._limit: tuple[int, int] | None = None  # (gaps counted, silence limit)

    def limit(self) -> int | None:
        """How long a gap makes this model silent (None while warming up or off)."""
        c = self.config
        gaps = self.gaps
        if not c.enabled or gaps.count < c.warmup:
            return None
        cached = self._limit
        if cached is not None and cached[0] == gaps.count:
            return cached[1]  # asked once per batch and per long gap: the same answer
        usual = gaps.quantile(0.99) or 0.0
        limit = max(int(c.factor * usual), self._floor_ms)
        self._limit = (gaps.count, limit)
        return limit

    def due(self) -> int | None:
        """The prediction watermark at which this model counts as silent, if no
        prediction comes first."""
        if self.silent_since is not None or self.last_ms is None:
            return None
        limit = self.limit()
        return None if limit is None else self.last_ms + limit + 1

    def served(self, te: int, count: int) -> list[Signal]:
        """A prediction at ``te`` (``count``: predictions served before it)."""
        last = self.last_ms
        self.last_ms = te if last is None else max(last, te)
        if last is None or te < last:
            return []
        out: list[Signal] = []
        if self.silent_since is None and te - last > self._floor_ms:
            limit = self.limit()  # at least the floor: only asked above it
            if limit is not None and te - last > limit:
                out.append(self._silent(last, limit, count))
        if self.silent_since is not None:
            out.append(self._heard(te))
        self.gaps.add(te - last, te - last)  # by time: bursts must not hide the pauses
        return out

    def at(self, upto: int, count: int) -> list[Signal]:
        """The silence the prediction watermark ``upto`` reveals, if any."""
        due = self.due()
        if due is None or upto < due:
            return []
        assert self.last_ms is not None
        return [self._silent(self.last_ms, due - 1 - self.last_ms, count)]

    def _silent(self, last: int, limit: int, count: int) -> Signal:
        self.silent_since = last
        usual = self.gaps.quantile(0.99) or 0.0
        return Signal(
            "model_silent",
            "gap",
            "predictions",
            "firing",
            "decrease",
            last,
            last + limit,
            "warning",
            {"usual_gap_s": round(usual / 1000, 3), "count": count},
            {"silent_s": round(limit / 1000, 3)},
            f"no prediction for {limit / 1000:.0f} s of event time while other models "
            f"served (its usual gap is {usual / 1000:.1f} s)",
        )

    def _heard(self, te: int) -> Signal:
        last = self.silent_since
        assert last is not None
        self.silent_since = None
        return Signal(
            "model_silent",
            "gap",
            "predictions",
            "resolved",
            "increase",
            te,
            te,
            "info",
            {"last_prediction_ms": last},
            {"silent_s": round((te - last) / 1000, 3)},
            f"serving again after {(te - last) / 1000:.0f} s of silence",
        )
