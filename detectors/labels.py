"""``labels_missing``: the share of a model's predictions labelled in time, per window.

Predictions are counted in event-time windows (by prediction time). The expected label
delay ``D`` a window is judged by is fixed when the release of outcomes passes the
window's end, from the delays released until then, so it is a property of the events,
not of when batches happened to arrive. Outcomes released before that point completed
before the window ended, so they are within any ``D`` of at least one window. The window
is final once the watermark is ``D`` past its end: every label within ``D`` has been
released by then (in canonical order), and its coverage is compared with the model's
usual coverage.

Why windows and not a detector on a 0/1 stream: a label is "missing" only once its
expected delay has passed, which is a question about time, not about the order of
outcomes; and windows keep the state small (a few counters per window in flight).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from detectors.config import LabelsConfig
from detectors.histogram import LogHistogram
from detectors.signal import Signal

__all__ = ["LabelWindows"]

_DELAY_DECAY = 0.999  # label delays forget with a memory of about 1,000 labels
_BASELINE_ALPHA = 0.2  # weight of a healthy evaluation in the usual coverage
_DELAY_FORGET = 0.02  # log2 units per healthy evaluation: the usual delay halves in 50
_WARM_EVALUATIONS = 3  # healthy evaluations before anything is judged


@dataclass(slots=True)
class _Window:
    predicted: int = 0
    labelled: int = 0  # within the expected delay
    log_delay: float = 0.0  # sum of log2(1 + delay s) of those labels
    delay_ms: int | None = None  # D, once the release of outcomes passed the end


class LabelWindows:
    """Coverage windows of one model; see the module docstring."""

    def __init__(self, config: LabelsConfig) -> None:
        self.config = config
        self.width = max(int(config.window_s * 1000), 1)
        self.windows: dict[int, _Window] = {}
        self.done_below: int | None = None  # windows under this index are final
        self.delays = LogHistogram(_DELAY_DECAY)
        self.late = 0  # predictions or labels of windows already final
        self._pool = _Window()
        self.usual_coverage: float | None = None
        self.usual_log_delay: float | None = None
        self.healthy = 0
        self.open: tuple[str, float, float | None] | None = None  # signal, usual, usual delay

    # --- counting -----------------------------------------------------------------------

    def _window(self, te: int) -> _Window | None:
        """The open window of prediction time ``te``; None (counted late) if final."""
        w = te // self.width
        if self.done_below is not None and w < self.done_below:
            self.late += 1
            return None
        window = self.windows.get(w)
        if window is None:
            window = self.windows[w] = _Window()
        return window

    def predicted(self, te: int) -> None:
        self.predicted_in({te // self.width: 1})

    def predicted_in(self, counts: dict[int, int]) -> None:
        """``counts[w]`` predictions in window ``w`` (a batch's, counted by the caller)."""
        if not self.config.enabled:
            return
        for w, n in counts.items():
            if (window := self._window(w * self.width)) is not None:
                window.predicted += n
            else:
                self.late += n - 1  # _window counted one

    def labelled(self, te: int, completed: int) -> None:
        """One outcome, released in canonical order."""
        if not self.config.enabled:
            return
        delay = completed - te
        self.delays.add(delay)
        window = self._window(te)
        if window is None:
            return
        if window.delay_ms is None or delay <= window.delay_ms:
            window.labelled += 1
            window.log_delay += math.log2(1.0 + delay / 1000.0)

    # --- time ---------------------------------------------------------------------------

    def expected_delay_ms(self) -> int | None:
        """D now: the override, or the learned one (None while too few labels)."""
        c = self.config
        if c.expected_delay_s is not None:
            return max(int(c.expected_delay_s * 1000), self.width)
        if self.delays.count < c.warmup_labels:
            return None
        p95 = self.delays.quantile(0.95) or 0.0
        return max(int(c.delay_factor * p95), int(c.min_delay_s * 1000), self.width)

    def next_end(self) -> int | None:
        """The end of the oldest window whose D is not fixed yet."""
        ends = [(w + 1) * self.width for w, x in self.windows.items() if x.delay_ms is None]
        return min(ends) if ends else None

    def fix(self, end: int) -> None:
        """The release of outcomes reached ``end``: fix D of the windows ending there."""
        d = self.expected_delay_ms()
        for w, x in self.windows.items():
            if x.delay_ms is None and (w + 1) * self.width <= end:
                x.delay_ms = -1 if d is None else d  # -1: not judged (D unknown then)

    def next_due(self) -> int | None:
        """When the oldest window becomes final (watermark time), or None."""
        if not self.windows:
            return None
        w = min(self.windows)
        x = self.windows[w]
        end = (w + 1) * self.width
        if x.delay_ms is None:
            return end
        return end + max(x.delay_ms, 0)

    def finish(self, bound: int) -> list[Signal]:
        """Judge the windows that are final at watermark ``bound``, oldest first."""
        out: list[Signal] = []
        while self.windows:
            w = min(self.windows)
            x = self.windows[w]
            end = (w + 1) * self.width
            if x.delay_ms is None or end + max(x.delay_ms, 0) > bound:
                break
            del self.windows[w]
            self.done_below = w + 1
            if x.delay_ms < 0:
                continue
            pool = self._pool
            pool.predicted += x.predicted
            pool.labelled += x.labelled
            pool.log_delay += x.log_delay
            if pool.predicted >= self.config.min_predictions:
                self._pool = _Window()
                signal = self._judge(pool, w, end + x.delay_ms, x.delay_ms)
                if signal is not None:
                    out.append(signal)
        return out

    # --- judging ------------------------------------------------------------------------

    def _judge(self, pool: _Window, index: int, at_ms: int, delay_ms: int) -> Signal | None:
        c = self.config
        n = pool.predicted
        coverage = pool.labelled / n
        log_delay = pool.log_delay / pool.labelled if pool.labelled else None
        usual, usual_delay = self.usual_coverage, self.usual_log_delay
        after = {
            "coverage": round(coverage, 6),
            "count": n,
            "mean_delay_s": _seconds(log_delay),
            "expected_delay_s": delay_ms / 1000,
        }
        if self.open is not None:
            kind, usual, usual_delay = self.open
            back = coverage >= c.resolve_ratio * usual
            if usual_delay is not None and log_delay is not None:
                back = back and log_delay - usual_delay < math.log2(c.delay_growth / 2)
            if not back:
                return None
            self.open = None
            before = {"coverage": round(usual, 6), "mean_delay_s": _seconds(usual_delay)}
            return Signal(
                "labels_missing",
                "window",
                kind,
                "resolved",
                "increase",
                index,
                at_ms,
                "info",
                before,
                after,
                f"labels are back: {coverage:.0%} of {n} predictions labelled within "
                f"{delay_ms / 1000:.0f} s",
            )
        if usual is None or self.healthy < _WARM_EVALUATIONS:
            self._learn(coverage, log_delay)
            return None
        floor = c.coverage_ratio * usual
        ref = usual
        if c.min_coverage is not None and c.min_coverage > floor:
            floor = ref = c.min_coverage
        p = min(max(ref, 0.01), 0.99)
        z = (ref - coverage) / math.sqrt(p * (1 - p) / n)
        missing = coverage < floor and z >= c.z
        slower = (
            not missing
            and log_delay is not None
            and usual_delay is not None
            and pool.labelled >= 30
            and log_delay - usual_delay >= math.log2(c.delay_growth)
        )
        if not (missing or slower):
            self._learn(coverage, log_delay)
            return None
        signal = "label_coverage" if missing else "label_delay"
        self.open = (signal, usual, usual_delay)
        before = {"coverage": round(usual, 6), "mean_delay_s": _seconds(usual_delay)}
        if missing:
            message = (
                f"only {coverage:.0%} of {n} predictions got their label within the expected "
                f"{delay_ms / 1000:.0f} s (usually {usual:.0%})"
            )
        else:
            message = (
                f"labels arrive {_seconds(log_delay)} s after their prediction on average "
                f"(usually {_seconds(usual_delay)} s)"
            )
        severity = "critical" if coverage < floor / 2 else "warning"
        return Signal(
            "labels_missing",
            "window",
            signal,
            "firing",
            "decrease",
            index,
            at_ms,
            severity,
            before,
            after,
            message,
        )

    def _learn(self, coverage: float, log_delay: float | None) -> None:
        a = _BASELINE_ALPHA
        self.healthy += 1
        u = self.usual_coverage
        self.usual_coverage = coverage if u is None else (1 - a) * u + a * coverage
        if log_delay is not None:  # the longest recent delay, slowly forgotten: labels that
            d = self.usual_log_delay  # come in daily batches cycle every day, and that is usual
            self.usual_log_delay = log_delay if d is None else max(log_delay, d - _DELAY_FORGET)


def _seconds(log_delay: float | None) -> float | None:
    """A mean of log2(1 + s) back to seconds (a geometric mean)."""
    return None if log_delay is None else round(2.0**log_delay - 1.0, 3) + 0.0
