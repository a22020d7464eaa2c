"""Model versions: which version serves, and whether a new one is worse than the last.

:class:`VersionWatch` keeps one model's statistics per version (count, error sum and
squares, first and last prediction time) next to the per-model detectors, and raises:

- ``version_changed`` (info) the first time a version serves, from the prediction
  stream in canonical order (not for the model's very first version);
- ``version_regression`` when the newest version's error is worse than the previous
  version's, from the outcome stream in canonical order.

The comparison. When a version ``new`` first shows up in the outcomes after ``old``:

- *concurrent* (a canary, an A/B test): once ``old`` has ``min_outcomes`` outcomes of
  predictions made after ``new``'s first one, only the overlap is compared: ``old``'s
  outcomes from then on against ``new``'s outcomes no later than ``old``'s latest
  prediction (the newer ones wait until an ``old`` outcome passes them, so a period
  where ``new`` serves alone is left out);
- *before/after* (a plain switch) otherwise: ``old``'s last ``window`` outcomes before
  the switch against ``new``'s first ``window``.

The test is one-sided: a two-proportion z (pooled) when every error is 0 or 1, else
Welch's t, read against ``z`` (3 by default: with the handful of looks each version
change gets, a version no worse than the last is flagged about once in 200 changes, see
``bench/quality_versions.py``). It looks when the smaller sample reaches ``min_outcomes``
x 1, 2, 4, ... and ``window``, and also needs a real effect: ``min_effect`` points
(0/1 errors) or ``min_ratio`` x the old error. Once per (old, new) pair; a better
version raises nothing.

Pure, picklable, decided in event time only: live and replay give the same signals.
"""

from __future__ import annotations

import functools
import heapq
import math
from typing import Any

from detectors.config import VersionRegressionConfig
from detectors.measured import rounded
from detectors.signal import Signal

__all__ = ["Switch", "VersionWatch", "regression_z"]

_BLOCK = 50  # outcomes per block of a version's recent past (its "last window")
_STRAGGLERS = 10  # old outcomes after the switch below min_outcomes / this: a plain switch
_WAITING = 256  # new-version outcomes held until the old version's serving passes them

Switch = tuple[int, int, str, str]
"""(outcome index, prediction ms, old version, new version) where ``new`` first showed."""


def regression_z(
    old: tuple[float, float, float], new: tuple[float, float, float], binary: bool
) -> float:
    """The one-sided statistic of ``new`` (count, sum, squares) being worse than ``old``:
    a pooled two-proportion z for 0/1 errors, else Welch's t. 0 when undefined."""
    n1, s1, q1 = old
    n2, s2, q2 = new
    if n1 < 2 or n2 < 2:
        return 0.0
    m1, m2 = s1 / n1, s2 / n2
    if binary:
        p = (s1 + s2) / (n1 + n2)
        var = p * (1 - p) * (1 / n1 + 1 / n2)
    else:
        v1 = max(q1 - s1 * m1, 0.0) / (n1 - 1)
        v2 = max(q2 - s2 * m2, 0.0) / (n2 - 1)
        var = v1 / n1 + v2 / n2
    if var <= 0.0:
        return 0.0
    return (m2 - m1) / math.sqrt(var)


@functools.cache
def _looks(config: VersionRegressionConfig) -> tuple[int, ...]:
    """The sample sizes a comparison is tested at: ``min_outcomes`` x 1, 2, 4, ... and
    ``window`` (a handful of looks: each one adds to the false-alarm rate)."""
    out, n = [], config.min_outcomes
    while n < config.window:
        out.append(n)
        n *= 2
    out.append(config.window)
    return tuple(out)


class _Pair:
    """The comparison of ``new`` with ``old`` (see the module docstring)."""

    __slots__ = (
        "before", "binary", "done", "looked_all", "looked_overlap", "new", "new_all",
        "new_overlap", "old", "old_last", "old_overlap", "start_ms", "waiting",
    )  # fmt: skip

    def __init__(self, old: str, new: str, start_ms: int, before: list[float]) -> None:
        self.old, self.new, self.start_ms = old, new, start_ms
        self.before = before  # [count, sum, squares] of old before start_ms
        self.old_overlap = [0.0, 0.0, 0.0]
        self.new_all = [0.0, 0.0, 0.0]  # new's first outcomes
        self.new_overlap = [0.0, 0.0, 0.0]
        self.old_last = -(2**63)  # old's newest prediction time at or after start_ms
        self.waiting: list[tuple[int, float]] = []  # heap of (ms, error) of new, past old_last
        self.looked_all = 0  # looks taken on new_all (before/after) ...
        self.looked_overlap = 0  # ... and on the overlap
        self.binary = True
        self.done = False

    def __getstate__(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        for name, value in zip(self.__slots__, state, strict=True):
            setattr(self, name, value)


def _add(stats: list[float], error: float) -> None:
    stats[0] += 1
    stats[1] += error
    stats[2] += error * error


class VersionWatch:
    """Per-version statistics, ``version_changed`` and ``version_regression`` of one model."""

    def __init__(self, config: VersionRegressionConfig) -> None:
        self.config = config
        self.known: list[str] = []  # versions seen serving, oldest first (bounded)
        self.last_served: str | None = None
        # by version, in order of first outcome: [count, sum, squares, first ms, last ms]
        self.stats: dict[str, list[float]] = {}
        self.evicted = 0  # versions dropped from ``stats`` to keep it bounded
        self.newest: str | None = None  # the version that showed last in the outcomes
        self.recent: list[list[float]] = []  # the newest version's last blocks
        self.pair: _Pair | None = None
        self.switches: list[Switch] = []  # the latest few, oldest first
        self.compared: list[tuple[str, str]] = []  # pairs already judged worse (bounded)

    # --- the prediction stream ----------------------------------------------------------

    def served(self, index: int, event_ms: int, version: str | None) -> Signal | None:
        """One valid prediction, in canonical order (``index``: its position in the
        model's prediction stream). ``version_changed`` when ``version`` serves for the
        first time."""
        if version is None:
            return None
        previous, self.last_served = self.last_served, version
        known = self.known
        if version in known:
            return None
        known.append(version)
        if len(known) > 4 * self.config.max_versions:
            del known[0]
        if previous is None or not self.config.enabled:
            return None  # the model's first version: nothing changed
        return Signal(
            "version_changed",
            "version",
            "model_version",
            "firing",
            None,
            index,
            event_ms,
            "info",
            {"model_version": previous},
            {"model_version": version},
            f"model_version {version} started serving (the previous prediction was "
            f"served by {previous})",
        )

    # --- the outcome stream -------------------------------------------------------------

    def outcome(
        self, index: int, completed_ms: int, event_ms: int, version: str | None, error: float
    ) -> Signal | None:
        """One outcome in canonical order (``index``: its position in the model's outcome
        stream, ``event_ms`` its prediction time); a ``version_regression`` if this
        outcome completes one."""
        if version is None:
            return None
        stats = self.stats.get(version)
        if stats is None:
            stats = self._first(index, event_ms, version)
        stats[0] += 1
        stats[1] += error
        stats[2] += error * error
        if event_ms > stats[4]:
            stats[4] = event_ms
        if version == self.newest:
            self._recent(error)
        pair = self.pair
        if pair is None or pair.done or not self.config.enabled:
            return None
        if error != 0.0 and error != 1.0:
            pair.binary = False
        if version == pair.new:
            _add(pair.new_all, error)
            if event_ms <= pair.old_last:
                _add(pair.new_overlap, error)
            else:
                heapq.heappush(pair.waiting, (event_ms, error))
                if len(pair.waiting) > _WAITING:
                    heapq.heappop(pair.waiting)
        elif version == pair.old:
            if event_ms < pair.start_ms:
                _add(pair.before, error)
                return None
            _add(pair.old_overlap, error)
            if event_ms > pair.old_last:
                pair.old_last = event_ms
                waiting = pair.waiting
                while waiting and waiting[0][0] <= event_ms:
                    _add(pair.new_overlap, heapq.heappop(waiting)[1])
        else:
            return None
        return self._look(pair, index, completed_ms)

    def switch_before(self, index: int) -> Switch | None:
        """The latest version switch at or before outcome ``index``."""
        for switch in reversed(self.switches):
            if switch[0] <= index:
                return switch
        return None

    def _first(self, index: int, event_ms: int, version: str) -> list[float]:
        """A version's first outcome: its statistics, and a comparison with the newest."""
        stats = self.stats[version] = [0.0, 0.0, 0.0, float(event_ms), float(event_ms)]
        if len(self.stats) > self.config.max_versions:
            oldest = next(v for v in self.stats if v != self.newest and v != version)
            del self.stats[oldest]
            self.evicted += 1
        old = self.newest
        self.newest = version
        before = [0.0, 0.0, 0.0]
        for block in self.recent:
            for i in range(3):
                before[i] += block[i]
        self.recent = []
        if old is None:
            return stats
        self.switches.append((index, event_ms, old, version))
        del self.switches[:-4]
        if (old, version) not in self.compared:
            self.pair = _Pair(old, version, event_ms, before)
        else:
            self.pair = None
        return stats

    def _recent(self, error: float) -> None:
        recent = self.recent
        if not recent or recent[-1][0] >= _BLOCK:
            recent.append([0.0, 0.0, 0.0])
            if len(recent) > self.config.window // _BLOCK + 1:
                del recent[0]
        _add(recent[-1], error)

    def _look(self, pair: _Pair, index: int, completed_ms: int) -> Signal | None:
        """Test at the planned looks. Concurrent when the smaller of the two overlap
        samples reaches one; before/after when the new version's sample does and the old
        version served no more than a few stragglers after the switch. The comparison
        ends with a regression, after the last concurrent look, or at ``10 x window``."""
        c = self.config
        looks = _looks(c)
        found: Signal | None = None
        shared = min(pair.old_overlap[0], pair.new_overlap[0])
        if pair.looked_overlap < len(looks) and shared >= looks[pair.looked_overlap]:
            pair.looked_overlap += 1
            found = self._judge(pair, pair.old_overlap, pair.new_overlap, True, index,
                                completed_ms)  # fmt: skip
        if (
            found is None
            and pair.looked_all < len(looks)
            and pair.new_all[0] >= looks[pair.looked_all]
        ):
            pair.looked_all += 1
            alone = pair.old_overlap[0] < c.min_outcomes // _STRAGGLERS
            if alone and pair.before[0] >= c.min_outcomes:
                found = self._judge(pair, pair.before, pair.new_all, False, index, completed_ms)
        if (
            found is not None
            or pair.looked_overlap == len(looks)
            or pair.new_all[0] >= 10 * c.window
        ):
            pair.done = True
            pair.waiting = []
        return found

    def _judge(
        self,
        pair: _Pair,
        old: list[float],
        new: list[float],
        concurrent: bool,
        index: int,
        completed_ms: int,
    ) -> Signal | None:
        c = self.config
        n1, s1, q1 = old
        n2, s2, q2 = new
        z = regression_z((n1, s1, q1), (n2, s2, q2), pair.binary)
        m1, m2 = s1 / n1, s2 / n2
        effect = (pair.binary and m2 - m1 >= c.min_effect) or m2 >= c.min_ratio * m1
        if z < c.z or not effect or m2 <= m1:
            return None
        self.compared.append((pair.old, pair.new))
        del self.compared[:-16]
        doubled = m1 > 0 and m2 >= 2 * m1
        critical = (pair.binary and m2 - m1 >= 0.10) or doubled
        how = "concurrent" if concurrent else "before_after"
        period = "on the period both served" if concurrent else "before and after the switch"
        name = "error_rate" if pair.binary else "error_mean"
        shown = (lambda v: f"{v:.1%}") if pair.binary else (lambda v: f"{v:.4g}")
        return Signal(
            "version_regression",
            "versions",
            "error",
            "firing",
            "increase",
            index,
            completed_ms,
            "critical" if critical else "warning",
            {"model_version": pair.old, name: rounded(m1), "count": int(n1)},
            {
                "model_version": pair.new,
                name: rounded(m2),
                "count": int(n2),
                "compared": how,
                "z": round(z, 2),
                "threshold": c.z,
            },
            f"model_version {pair.new} errs more than {pair.old} {period}: "
            f"{shown(m2)} of {int(n2)} against {shown(m1)} of {int(n1)} (z = {z:.1f}); "
            f"roll back to {pair.old}?",
        )
