"""ADWIN adapter: river's adaptive window, reporting the window it cut and the one it kept."""

from __future__ import annotations

from river.drift import ADWIN

from detectors.base import Direction, Shift
from detectors.config import AdwinConfig

__all__ = ["Adwin"]


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
        n_after = int(adwin.width)
        mean_after = adwin.total / n_after if n_after else 0.0
        n_before = int(width_before) + 1 - n_after
        if n_before > 0:
            mean_before = (total_before + x - mean_after * n_after) / n_before
        else:
            n_before, mean_before = 0, mean_after
        direction: Direction = "increase" if mean_after > mean_before else "decrease"
        return Shift(direction, mean_before, n_before, mean_after, n_after)
