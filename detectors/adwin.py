"""ADWIN adapter: river's adaptive window, reporting the window it cut and the one it kept."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Sequence

from river.drift import ADWIN

from detectors.base import Direction, Shift
from detectors.config import AdwinConfig
from detectors.summing import running_sum

__all__ = ["Adwin"]

_sink: deque[object] = deque(maxlen=0)
_drain: Callable[[Iterable[object]], None] = _sink.extend  # runs an iterator out, in C


class Adwin:
    """Adaptive windowing (ADWIN) over the error stream of one model.

    ADWIN keeps the longest recent window whose mean is statistically stable and drops
    its older part when the two parts differ. The part dropped is the "before" of the
    :class:`~detectors.base.Shift`, the part kept is the "after". river starts a fresh
    window on the update following a detection; the adapter inherits that behaviour, so
    it flags exactly the values river flags.

    Parameters
    ----------
    config
        Hyper-parameters, passed to :class:`river.drift.ADWIN` under the same names.

    Examples
    --------
    >>> import random
    >>> rng = random.Random(7)
    >>> adwin = Adwin(AdwinConfig())
    >>> stream = [float(rng.random() < 0.05) for _ in range(1000)]
    >>> stream += [float(rng.random() < 0.5) for _ in range(1000)]
    >>> shifts = [(i, s) for i, x in enumerate(stream, 1) if (s := adwin.update(x))]
    >>> index, shift = shifts[0]
    >>> 1000 < index < 1200, shift.direction, shift.mean_after > shift.mean_before
    (True, 'increase', True)

    References
    ----------
    Albert Bifet and Ricard Gavaldà. "Learning from time-changing data with adaptive
    windowing." SIAM International Conference on Data Mining, 2007.
    """

    name = "adwin"

    def __init__(self, config: AdwinConfig | None = None) -> None:
        self.config = config if config is not None else AdwinConfig()
        self._adwin = ADWIN(
            delta=self.config.delta,
            clock=self.config.clock,
            max_buckets=self.config.max_buckets,
            min_window_length=self.config.min_window_length,
            grace_period=self.config.grace_period,
        )

    def update(self, x: float) -> Shift | None:
        """Feed one value; on a detection, split the window at river's cut point."""
        adwin = self._adwin
        width_before = adwin.width
        total_before = adwin.total
        adwin.update(x)
        if not adwin.drift_detected:
            return None
        return self._shift(x, int(width_before), total_before)

    def update_many(self, values: Sequence[float]) -> list[tuple[int, Shift]]:
        """Feed a batch; ``(position, shift)`` for each value that completed a change.

        The same shifts as :meth:`update` in a loop, with less work per value. river's
        ADWIN only looks for a change every ``clock`` values (counted from its last
        restart), so values are fed in runs that end on such a check, by ``map`` at C
        speed, and ``drift_detected`` is read once per run. Between detections the window
        only grows (its width is the count and its total the running sum since the
        restart), so both are read once per batch and advanced by summing the batch in
        the same order.
        """
        adwin = self._adwin
        update = adwin.update
        clock = self.config.clock
        if adwin.drift_detected:  # river restarts the window on the next update
            width, total = 0, 0.0
        else:
            width, total = int(adwin.width), adwin.total
        found: list[tuple[int, Shift]] = []
        start = 0  # where the current window began in this batch
        position, n = 0, len(values)
        while position < n:
            seen = width + position - start  # values in the window before this one
            check = position + clock - 1 - seen % clock  # the value river checks after
            if check >= n:
                _drain(map(update, values[position:]))
                break
            _drain(map(update, values[position : check + 1]))
            position = check + 1
            if adwin.drift_detected:
                total = running_sum(values[start:check], total)
                found.append((check, self._shift(values[check], width + check - start, total)))
                width, total, start = 0, 0.0, position
        return found

    def _shift(self, x: float, width_before: int, total_before: float) -> Shift:
        adwin = self._adwin
        n_after = int(adwin.width)
        mean_after = adwin.total / n_after if n_after else 0.0
        n_before = width_before + 1 - n_after
        if n_before > 0:
            mean_before = (total_before + x - mean_after * n_after) / n_before
        else:
            n_before, mean_before = 0, mean_after
        direction: Direction = "increase" if mean_after > mean_before else "decrease"
        return Shift(direction, mean_before, n_before, mean_after, n_after)
