"""Page-Hinkley adapter: river's CUSUM-style test, reporting the segment before and after."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from river.drift import PageHinkley as RiverPageHinkley

from detectors.base import Direction, Shift
from detectors.config import PageHinkleyConfig
from detectors.summing import running_sum

__all__ = ["PageHinkley"]


class PageHinkley:
    """Page-Hinkley test over the error stream of one model.

    Page-Hinkley accumulates deviations from the running mean and fires when they exceed
    ``threshold``; it says *when*, not *where*, the mean moved. The adapter therefore
    reports the last ``after_window`` values as "after" and the rest of the segment since
    the previous detection (river restarts the test after each one) as "before". When the
    segment is no longer than the window, "before" is empty: ``n_before == 0`` and
    ``mean_before == mean_after``.

    The direction is fixed by ``mode``: ``"up"`` only fires on an increase, ``"down"`` only
    on a decrease; for ``"both"`` it compares the two means, falling back to the
    triggering value against the mean of the values before it when "before" is empty.

    Parameters
    ----------
    config
        Hyper-parameters of :class:`river.drift.PageHinkley` plus ``after_window``.

    Examples
    --------
    >>> import random
    >>> rng = random.Random(7)
    >>> ph = PageHinkley(PageHinkleyConfig())
    >>> stream = [float(rng.random() < 0.05) for _ in range(1000)]
    >>> stream += [float(rng.random() < 0.5) for _ in range(1000)]
    >>> shifts = [(i, s) for i, x in enumerate(stream, 1) if (s := ph.update(x))]
    >>> index, shift = shifts[0]
    >>> 1000 < index < 1500, shift.direction, shift.n_after, shift.mean_after > shift.mean_before
    (True, 'increase', 100, True)

    References
    ----------
    E. S. Page. "Continuous Inspection Schemes." Biometrika 41 (1954), 100-115.
    """

    name = "page_hinkley"

    def __init__(self, config: PageHinkleyConfig | None = None) -> None:
        self.config = config if config is not None else PageHinkleyConfig()
        self._ph = RiverPageHinkley(
            min_instances=self.config.min_instances,
            delta=self.config.delta,
            threshold=self.config.threshold,
            alpha=self.config.alpha,
            mode=self.config.mode,
        )
        self._count = 0
        self._sum = 0.0
        self._recent: deque[float] = deque(maxlen=self.config.after_window)

    def update(self, x: float) -> Shift | None:
        """Feed one value; on a detection, report the segment and restart it."""
        ph = self._ph
        ph.update(x)
        self._count += 1
        self._sum += x
        self._recent.append(x)
        if not ph.drift_detected:
            return None
        return self._shift(x)

    def update_many(self, values: Sequence[float]) -> list[tuple[int, Shift]]:
        """Feed a batch; ``(position, shift)`` for each value that completed a change.

        The same shifts as :meth:`update` in a loop: the segment's count, sum and last
        values are advanced once per stretch between detections (summed in the same
        order), not once per value.
        """
        ph = self._ph
        update = ph.update
        found: list[tuple[int, Shift]] = []
        start = 0
        for i, x in enumerate(values):
            update(x)
            if ph.drift_detected:
                self._absorb(values[start : i + 1])
                found.append((i, self._shift(x)))
                start = i + 1
        if start < len(values):
            self._absorb(values[start:] if start else values)
        return found

    def _absorb(self, segment: Sequence[float]) -> None:
        self._count += len(segment)
        self._sum = running_sum(segment, self._sum)
        self._recent.extend(segment)

    def _shift(self, x: float) -> Shift:
        """The segment that ends with ``x`` fired: report it and start the next one."""
        recent = self._recent
        n_after = len(recent)
        sum_after = sum(recent)
        mean_after = sum_after / n_after
        n_before = self._count - n_after
        mean_before = (self._sum - sum_after) / n_before if n_before > 0 else mean_after
        direction = self._direction(x, mean_before, mean_after, n_before)
        self._count = 0
        self._sum = 0.0
        recent.clear()
        return Shift(direction, mean_before, max(n_before, 0), mean_after, n_after)

    def _direction(
        self, x: float, mean_before: float, mean_after: float, n_before: int
    ) -> Direction:
        mode = self.config.mode
        if mode == "up":
            return "increase"
        if mode == "down":
            return "decrease"
        if n_before > 0 and mean_after != mean_before:
            return "increase" if mean_after > mean_before else "decrease"
        earlier = self._count - 1
        mean_earlier = (self._sum - x) / earlier if earlier else x
        return "increase" if x > mean_earlier else "decrease"
