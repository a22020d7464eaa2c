"""ADWIN changes, measured: the level before a change and the level after it.

ADWIN cuts its window soon after a change, so the part it keeps still holds older values
and understates the shift, and the part it drops is a few hundred values picked for being
extreme. So a change is judged on what comes after it (``need`` values) against the level
since the previous change (leaving out the latest values, where the change usually is).
Pure and picklable.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from detectors.adwin import Adwin
from detectors.config import AdwinConfig
from detectors.signal import Signal, Status
from detectors.summing import running_sum

__all__ = [
    "RANK",
    "Level",
    "Measured",
    "MeasuredAdwin",
    "measured_signal",
    "rounded",
    "severity_of",
]

RANK = {"info": 0, "warning": 1, "critical": 2}
_BLOCK = 32  # values per block of the recent past that "before" leaves out ...
_RECENT_BLOCKS = 32  # ... this many of them (1,024 values: a slow detection)


class Level:
    """The mean of a signal since its last change, leaving out the latest
    ``_BLOCK * _RECENT_BLOCKS`` values, kept as block sums (a few floats per signal)."""

    __slots__ = ("block", "count", "filled", "recent", "total")

    def __init__(self) -> None:
        self.total = 0.0  # settled: older than the recent blocks
        self.count = 0
        self.recent: list[float] = []  # sums of the latest full blocks, oldest first
        self.block = 0.0  # the block being filled
        self.filled = 0

    def reset(self, total: float, count: int) -> None:
        self.total, self.count, self.recent, self.block, self.filled = total, count, [], 0.0, 0

    def add(self, values: list[float]) -> None:
        i, n = 0, len(values)
        while i < n:
            take = min(_BLOCK - self.filled, n - i)
            self.block = running_sum(values[i : i + take], self.block)
            self.filled += take
            i += take
            if self.filled == _BLOCK:
                self.recent.append(self.block)
                self.block, self.filled = 0.0, 0
                if len(self.recent) > _RECENT_BLOCKS:
                    self.total += self.recent.pop(0)
                    self.count += _BLOCK

    def mean(self) -> tuple[float, int]:
        """(mean, count) of the settled values; of everything while there are none."""
        if self.count:
            return self.total / self.count, self.count
        total = math.fsum(self.recent) + self.block
        n = len(self.recent) * _BLOCK + self.filled
        return (total / n if n else 0.0), n

    def __getstate__(self) -> tuple[float, int, list[float], float, int]:
        return self.total, self.count, self.recent, self.block, self.filled

    def __setstate__(self, state: tuple[float, int, list[float], float, int]) -> None:
        self.total, self.count, self.recent, self.block, self.filled = state


def rounded(x: float) -> float:
    """Rounded for an alert, and never -0.0 (a running mean can land there)."""
    return round(x, 6) + 0.0


@dataclass(frozen=True, slots=True)
class Measured:
    """A change ADWIN reported, with the level after it (see :meth:`MeasuredAdwin.feed`)."""

    index: int
    at_ms: int
    before: float
    n_before: int
    after: float
    n: int
    reported: str | None  # a follow-up of a change reported at this severity; None: first
    error: float  # standard error of ``after`` (0 when ADWIN's own figure)


def measured_signal(
    kind: str,
    signal: str,
    status: Status,
    direction: str,
    m: Measured,
    severity: str,
    before: dict[str, Any],
    after: dict[str, Any],
    message: str,
) -> Signal:
    """The signal of an ADWIN change as measured (see :meth:`MeasuredAdwin.feed`)."""
    return Signal(
        kind,
        "adwin",
        signal,
        status,
        direction,
        m.index,
        m.at_ms,
        severity,
        before,
        after,
        message,
    )


def severity_of(size: float, warning: float, critical: float) -> str:
    """The severity of a shift of ``size``, from its two thresholds."""
    return "critical" if size >= critical else "warning" if size >= warning else "info"


class MeasuredAdwin:
    """ADWIN over one signal, and the measurement of each change it reports."""

    def __init__(self, delta: float, need: int) -> None:
        self.adwin = Adwin(AdwinConfig(delta=delta))
        self.need = need
        self.since = Level()  # the values since the last change
        # after a detection: [index, mean before, count before, sum, count, severity
        # reported at once or None, sum of squares]
        self.state: list[Any] | None = None

    def feed(
        self,
        values: list[float],
        at: list[tuple[int, int]],
        judge: Callable[[float, float], str | None],
        handle: Callable[[Measured], Signal | None],
    ) -> list[Signal]:
        """Feed ``values`` (``at``: their (index, event ms)) and measure the changes.

        A change goes out at once, with ADWIN's figures, when ``judge`` (ADWIN's mean
        before, mean after) finds them enough (it returns a severity); either way the new
        level is then measured over the next ``need`` values and reported again
        (``reported`` says at which severity it went out first, None if it did not), so
        a caller can raise what was understated. ``handle`` turns each measurement into a
        signal (or not) at once, in stream order: its state changes are what ``judge``
        sees next, whatever the batches."""
        hits = dict(self.adwin.update_many(values))
        state = self.state
        since = self.since
        need = self.need
        if state is None and not hits:
            since.add(values)
            return []
        out: list[Signal] = []
        start = 0  # values[start:] are not counted in ``since`` yet
        for position, x in enumerate(values):
            if state is not None:
                state[3] += x
                state[4] += 1
                state[6] += x * x
                if state[4] >= need:
                    index, before, n_before, total, n, reported, squares = state
                    if reported is not None:  # a follow-up: its own index, its own alert
                        index = at[position][0]
                    mean = total / n
                    error = math.sqrt(max(squares / n - mean * mean, 0.0) / n)
                    m = Measured(index, at[position][1], before, n_before, mean, n, reported, error)
                    if (signal := handle(m)) is not None:
                        out.append(signal)
                    state = None
                    since.reset(total, n)  # the new level starts the next "before"
                    start = position + 1
            elif position in hits:
                since.add(values[start : position + 1])
                start = position + 1
                shift = hits[position]
                index, te = at[position]
                # "before": the values since the last change but the latest few hundred
                # (the change is usually among them), not ADWIN's cut, which drops only an
                # old sliver of its window, picked for being extreme
                before, n_before = since.mean()
                level = judge(shift.mean_before, shift.mean_after)  # ADWIN's own view
                if level is not None:
                    m = Measured(
                        index,
                        te,
                        shift.mean_before,
                        shift.n_before,
                        shift.mean_after,
                        shift.n_after,
                        None,
                        0.0,
                    )
                    if (signal := handle(m)) is not None:
                        out.append(signal)
                state = [index, before, n_before, 0.0, 0, level, 0.0]
        if state is None and start < len(values):
            since.add(values[start:])
        self.state = state
        return out
