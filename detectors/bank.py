"""The per-model detector bank: every enabled detector, fed the same error stream."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from detectors.base import Change, DriftDetector, Shift
from detectors.clipping import ErrorClipper
from detectors.config import MonitorConfig
from detectors.exceptions import InvalidOutcome
from detectors.registry import DETECTORS
from detectors.summing import running_sum

__all__ = ["RECENT_WINDOW", "ModelMonitor"]

RECENT_WINDOW = 100
"""Number of latest errors behind :attr:`ModelMonitor.recent_error_rate`."""


class ModelMonitor:
    """Per-model detector bank: one instance per model_id.

    It holds only plain Python and river objects, so it pickles into a changelog and, once
    unpickled, continues exactly where it stopped: the stream and a replay of the same
    outcomes report the same :class:`~detectors.base.Change` objects.

    Parameters
    ----------
    model_id
        The model whose outcomes this bank watches.
    config
        Which detectors run and with what hyper-parameters (see :mod:`detectors.config`).

    Regression errors are bounded first (:class:`~detectors.clipping.ErrorClipper`,
    ``config.error_clip``): the detectors, :attr:`error_rate` and
    :attr:`recent_error_rate` all see the clipped error, and :attr:`clipped` counts the
    errors that were lowered.

    Examples
    --------
    >>> import random
    >>> rng = random.Random(7)
    >>> monitor = ModelMonitor("fraud", MonitorConfig())
    >>> errors = [float(rng.random() < 0.05) for _ in range(1000)]
    >>> errors += [float(rng.random() < 0.5) for _ in range(1000)]
    >>> changes = monitor.update_many(errors, range(0, 2_000_000, 1000))
    >>> sorted({(c.detector, c.direction) for c in changes})
    [('adwin', 'increase'), ('page_hinkley', 'increase')]
    >>> all(c.index > 1000 for c in changes), monitor.n
    (True, 2000)
    """

    def __init__(self, model_id: str, config: MonitorConfig) -> None:
        self.model_id = model_id
        self.config = config
        self.n = 0
        self.error_sum = 0.0
        self.last_event_time_ms: int | None = None
        self._recent: deque[float] = deque(maxlen=RECENT_WINDOW)
        self._detectors: list[DriftDetector] = [
            detector for factory in DETECTORS.values() if (detector := factory(config)) is not None
        ]
        self.clipper = ErrorClipper(config.error_clip, config.task)

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if "clipper" not in state:  # pickled before errors were clipped
            self.clipper = ErrorClipper(self.config.error_clip, self.config.task)

    @property
    def clipped(self) -> int:
        """Errors lowered to the clipping bound so far (see :mod:`detectors.clipping`)."""
        return self.clipper.clipped

    @property
    def detector_names(self) -> tuple[str, ...]:
        """Names of the enabled detectors, in the order they are fed and report."""
        return tuple(detector.name for detector in self._detectors)

    @property
    def error_rate(self) -> float:
        """Mean error over every outcome seen (0.0 before the first)."""
        return self.error_sum / self.n if self.n else 0.0

    @property
    def recent_error_rate(self) -> float:
        """Mean error over the last :data:`RECENT_WINDOW` outcomes (0.0 before the first)."""
        recent = self._recent
        return math.fsum(recent) / len(recent) if recent else 0.0

    def update(self, error: float, event_time_ms: int) -> list[Change]:
        """Feed one outcome's error to every enabled detector, in registry order.

        Raises :class:`~detectors.exceptions.InvalidOutcome` (a ``ValueError``) for a
        non-finite error, before any state changes.
        """
        error = float(error)
        if not math.isfinite(error):
            raise InvalidOutcome(f"error must be finite, got {error!r} for model {self.model_id!r}")
        (error,) = self.clipper.clip([error])
        self.n += 1
        self.error_sum += error
        self.last_event_time_ms = event_time_ms
        self._recent.append(error)
        changes: list[Change] = []
        for detector in self._detectors:
            shift = detector.update(error)
            if shift is not None:
                changes.append(
                    Change(
                        detector.name,
                        shift.direction,
                        self.n,
                        event_time_ms,
                        shift.mean_before,
                        shift.n_before,
                        shift.mean_after,
                        shift.n_after,
                    )
                )
        return changes

    def update_many(self, errors: Sequence[float], times_ms: Sequence[int]) -> list[Change]:
        """Same as :meth:`update` in a loop, minus the per-call overhead: the hot path.

        Lists, tuples and numpy arrays are all accepted.

        The whole batch is checked first, so a non-finite error raises
        :class:`~detectors.exceptions.InvalidOutcome` naming its position and leaves the
        monitor untouched; the caller dead-letters it and resubmits the rest.
        """
        if len(errors) != len(times_ms):
            raise ValueError(f"got {len(errors)} errors but {len(times_ms)} event times")
        if len(errors) == 0:
            return []
        values = list(map(float, errors))
        if not math.isfinite(sum(values)):
            isfinite = math.isfinite
            for position, value in enumerate(values):
                if not isfinite(value):
                    raise InvalidOutcome(
                        f"error at position {position} must be finite, got {value!r} "
                        f"for model {self.model_id!r}"
                    )
        return self.feed(values, times_ms.__getitem__)

    def feed(
        self, values: list[float], time_of: Callable[[int], int], *, clipped: bool = False
    ) -> list[Change]:
        """:meth:`update_many` for a non-empty list of floats already known to be finite.

        Each detector takes the whole batch in one call (they are independent, so this
        equals feeding them value by value); the changes are then put back in stream
        order, then registry order. ``time_of(position)`` gives an outcome's event time;
        it is only asked where a change happened and for the last outcome. Regression
        errors are clipped in place first, unless the caller did (``clipped``: the clipper
        has state, so each error is clipped once).
        """
        if not clipped:
            values = self.clipper.clip(values)
        first = self.n
        hits: list[tuple[int, int, str, Shift]] = []
        for order, detector in enumerate(self._detectors):
            for position, shift in detector.update_many(values):
                hits.append((position, order, detector.name, shift))
        if len(hits) > 1:
            hits.sort(key=_stream_order)
        self.n = first + len(values)
        self.error_sum = running_sum(values, self.error_sum)
        self._recent.extend(values)
        self.last_event_time_ms = int(time_of(len(values) - 1))
        return [
            Change(
                name,
                shift.direction,
                first + position + 1,
                int(time_of(position)),
                shift.mean_before,
                shift.n_before,
                shift.mean_after,
                shift.n_after,
            )
            for position, _, name, shift in hits
        ]


def _stream_order(hit: tuple[int, int, str, Shift]) -> tuple[int, int]:
    return hit[0], hit[1]
