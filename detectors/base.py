"""The contract between detector adapters and the per-model monitor.

An adapter wraps one river detector and turns its bare ``drift_detected`` flag into a
:class:`Shift` carrying the statistics an alert needs; the monitor stamps each shift with
its position in the stream and event time, giving a :class:`Change`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

__all__ = ["Change", "Direction", "DriftDetector", "Shift"]

Direction = Literal["increase", "decrease"]


@dataclass(frozen=True, slots=True)
class Shift:
    """What an adapter reports when its detector fires: the mean error before and after."""

    direction: Direction
    mean_before: float
    n_before: int
    mean_after: float
    n_after: int


@dataclass(frozen=True, slots=True)
class Change:
    """What the monitor reports: a :class:`Shift` placed in the model's outcome stream.

    ``index`` is the 1-based count of outcomes the monitor had seen, including the one that
    triggered; with the model id it identifies the change in live runs and replays alike.
    """

    detector: str
    direction: Direction
    index: int
    event_time_ms: int
    mean_before: float
    n_before: int
    mean_after: float
    n_after: int


class DriftDetector(Protocol):
    """A detector adapter: one river detector behind a stateful, picklable ``update``."""

    name: str

    def update(self, x: float) -> Shift | None:
        """Feed one error value; return a :class:`Shift` if this value completed a change."""
        ...

    def update_many(self, values: Sequence[float]) -> list[tuple[int, Shift]]:
        """Feed a batch of finite floats; ``(position, shift)`` for each value that fired.

        Must report exactly what :meth:`update` in a loop would: it exists so that the
        per-value cost is river's own, not the adapter's bookkeeping.
        """
        ...


def error_severity(before: float, after: float) -> str:
    """The severity of a rise of the error rate from ``before`` to ``after``: critical when
    it rose by 10 points or at least doubled, warning otherwise (info for no rise)."""
    if after <= before:
        return "info"
    doubled = before > 0 and after >= 2 * before
    return "critical" if after - before >= 0.10 or doubled else "warning"
