"""The label-free and liveness signals of one model, fed its prediction stream.

Every prediction a model serves (and every prediction event of it that was dead-lettered)
reaches :class:`SignalWatch` in canonical order: event time, then key, held by its own
:class:`~detectors.sequencer.Sequencer` until the prediction watermark passes. From that
one ordered stream it derives:

- ``prediction_drift``: ADWIN on the positive-class rate and on the score
  (classification), or on the standardised prediction and its successive differences
  (regression); see :class:`~detectors.config.PredictionDriftConfig`;
- ``model_silent``: no prediction for ``factor`` x the usual gap while the watermark moves
  on (:class:`~detectors.config.SilenceConfig`), resolved by the next prediction;
- ``input_quality``: ADWIN on 1 per dead-lettered and 0 per valid event;
- ``estimated_degradation``: ADWIN on each prediction's expected error from its score
  (CBPE style), reconciled once the labels of later predictions are in;
- the prediction counts behind ``labels_missing`` (:mod:`detectors.labels`).

Pure and picklable, like the detector bank: live and replay feed the same stream.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from detectors.adwin import Adwin
from detectors.config import AdwinConfig, MonitorConfig
from detectors.histogram import LogHistogram
from detectors.labels import LabelWindows
from detectors.sequencer import Pending, Sequencer
from detectors.signal import Signal
from detectors.summing import running_sum

__all__ = ["SeenPayload", "SignalWatch"]

SeenPayload = tuple[Any, float | None, str | None] | None
"""(prediction, score, model_version) of a served prediction; None for a dead letter."""

_GAP_DECAY = 0.998  # gaps forget with a memory of about 500 predictions
_Z_CLIP = 10.0  # standardised regression values are bounded, like errors are clipped


def _class_text(value: object) -> str:
    if value is True:
        return "1"
    if value is False:
        return "0"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).lower()


def _is_label_like(value: object) -> bool:
    return isinstance(value, bool | str) or value in (0, 1)


class SignalWatch:
    """Prediction-side signals of one model; see the module docstring."""

    def __init__(self, model_id: str, config: MonitorConfig, *, lag_ms: int) -> None:
        self.model_id = model_id
        self.config = config
        self.sequencer = Sequencer(lag_ms)
        self.seen = 0  # events released, valid or not: the index of prediction signals
        self.served = 0  # valid predictions released
        self.task = config.task
        self.last_ms: int | None = None  # newest prediction released
        self.version: str | None = None
        self.labels = LabelWindows(config.labels)
        self.gaps = LogHistogram(_GAP_DECAY)
        self.silent_since: int | None = None  # last prediction before an open silence
        self._floor_ms = int(config.silence.min_gap_s * 1000)
        self._limit: tuple[int, int] | None = None  # (gaps counted, silence limit)
        self._warm: list[tuple[int, int, Any, float | None]] | None = []
        self._ref: tuple[float, float] = (0.0, 1.0)
        self._prev_z: float | None = None
        pc = config.prediction_drift.positive_class.lower()
        self._positive = {"true": "1", "false": "0"}.get(pc, pc)
        drift = AdwinConfig(delta=config.prediction_drift.delta)
        self._drift: dict[str, Adwin] = {}
        # per signal, after a detection: [index, mean before, count before, sum, count,
        # severity reported at once or None, sum of squares]
        self._confirming: dict[str, list[Any] | None] = {}
        self._since: dict[str, _Level] = {}
        self._drift_config = drift
        q = config.input_quality
        self._invalid = Adwin(AdwinConfig(delta=q.delta)) if q.enabled else None
        self.quality_open: tuple[float, float] | None = None  # before, after
        e = config.estimated
        self._expected = Adwin(AdwinConfig(delta=e.delta)) if e.enabled else None
        self.estimate_open: tuple[int, int, float, float] | None = None  # index, ms, before, after
        # the estimate being reconciled: [index, from ms, before, after, outcomes, errors]
        self._reconciling: list[Any] | None = None
        self._pending: list[Signal] = []

    # --- input --------------------------------------------------------------------------

    def push(self, event_ms: int, key: str, payload: SeenPayload) -> None:
        """Hold one served prediction (or a dead-lettered event, ``payload`` None)."""
        self.sequencer.push(event_ms, key, 0.0, payload)

    @property
    def pending(self) -> int:
        return len(self.sequencer)

    def release(self, upto: int) -> list[Signal]:
        """Process what the prediction watermark ``upto`` lets through, then look for a
        silence at ``upto``."""
        out = self._take(self.sequencer.ready(upto))
        out += self._silence_at(upto)
        return out

    def flush(self) -> list[Signal]:
        """Process everything held (end of a replay, or an idle stream)."""
        return self._take(self.sequencer.drain())

    def outcome(self, event_ms: int, completed_ms: int, error: float) -> None:
        """One outcome of this model, released in canonical order."""
        self.labels.labelled(event_ms, completed_ms)
        r = self._reconciling
        if r is not None and event_ms >= r[1]:
            r[4] += 1
            r[5] += error
            if r[4] == self.config.estimated.reconcile_after:
                self._pending.append(self._reconciled(completed_ms))

    def finish(self, bound: int | None) -> list[Signal]:
        """Signals decided outside the prediction stream: reconciliations, and the label
        windows that are final at watermark ``bound``."""
        out, self._pending = self._pending, []
        if bound is not None:
            out += self.labels.finish(bound)
        return out

    def silence_due(self) -> int | None:
        """The prediction watermark at which this model counts as silent, if no
        prediction comes first."""
        if self.silent_since is not None or self.last_ms is None:
            return None
        limit = self._silence_limit()
        return None if limit is None else self.last_ms + limit + 1

    # --- the stream ---------------------------------------------------------------------

    def _take(self, items: list[Pending]) -> list[Signal]:
        if not items:
            return []
        out: list[Signal] = []
        quality: list[float] = []
        positions: list[tuple[int, int]] = []  # (index, event ms) per item
        valid: list[tuple[int, int, Any, float | None]] = []
        for te, _, _, payload in items:
            self.seen += 1
            positions.append((self.seen, te))
            if payload is None:
                quality.append(1.0)
                continue
            quality.append(0.0)
            prediction, score, version = payload
            self.version = version
            self.labels.predicted(te)
            out += self._gap(te)  # before counting it: the count is of the gap's start
            self.served += 1
            valid.append((self.seen, te, prediction, score))
        if self._invalid is not None:
            out += self._quality(quality, positions)
        if valid:
            out += self._predictions(valid)
        return out

    def _predictions(self, valid: list[tuple[int, int, Any, float | None]]) -> list[Signal]:
        warm = self._warm
        if warm is not None:
            warm += valid
            if len(warm) < self.config.prediction_drift.warmup:
                return []
            self._warm = None
            self._start(warm)
            valid = warm
        if not self.config.prediction_drift.enabled and self._expected is None:
            return []
        if self.task == "regression":
            return self._regression(valid)
        return self._classification(valid)

    def _start(self, warm: list[tuple[int, int, Any, float | None]]) -> None:
        """After warm-up: the task (when not configured) and the regression reference."""
        if self.task is None:
            label_like = all(_is_label_like(p) for _, _, p, _ in warm)
            self.task = "classification" if label_like else "regression"
        if self.task == "regression":
            values = [float(p) for _, _, p, _ in warm if _number(p)]
            if values:
                mean = math.fsum(values) / len(values)
                var = math.fsum((v - mean) ** 2 for v in values) / len(values)
                scale = math.sqrt(var) or max(abs(mean) * 0.01, 1e-9)
                self._ref = (mean, scale)

    def _classification(self, valid: list[tuple[int, int, Any, float | None]]) -> list[Signal]:
        positive = self._positive
        rate: list[float] = []
        scores: list[float] = []
        score_at: list[tuple[int, int]] = []
        expected: list[float] = []
        for index, te, prediction, score in valid:
            hit = _class_text(prediction) == positive
            rate.append(1.0 if hit else 0.0)
            if score is not None and 0.0 <= score <= 1.0:
                scores.append(score)
                score_at.append((index, te))
                expected.append(1.0 - score if hit else score)
        at = [(index, te) for index, te, _, _ in valid]
        out: list[Signal] = []
        if self.config.prediction_drift.enabled:
            out += self._drifts("positive_rate", rate, at, self._shift_severity)
            out += self._drifts("score", scores, score_at, self._shift_severity)
        if self._expected is not None and expected:
            out += self._estimate(expected, score_at)
        return out

    def _regression(self, valid: list[tuple[int, int, Any, float | None]]) -> list[Signal]:
        if not self.config.prediction_drift.enabled:
            return []
        mean, scale = self._ref
        level: list[float] = []
        spread: list[float] = []
        at: list[tuple[int, int]] = []
        spread_at: list[tuple[int, int]] = []
        prev = self._prev_z  # the first of a pair, waiting for its second
        for index, te, prediction, _ in valid:
            if not _number(prediction):
                continue
            z = min(max((float(prediction) - mean) / scale, -_Z_CLIP), _Z_CLIP)
            level.append(z)
            at.append((index, te))
            if prev is None:
                prev = z
            else:  # disjoint pairs: overlapping differences are correlated (false alarms)
                spread.append(min(abs(z - prev), _Z_CLIP))
                spread_at.append((index, te))
                prev = None
        self._prev_z = prev
        return self._drifts("prediction_mean", level, at, self._std_severity) + self._drifts(
            "prediction_spread", spread, spread_at, self._std_severity
        )

    def _drifts(
        self,
        name: str,
        values: list[float],
        at: list[tuple[int, int]],
        severity: Callable[[float], str],
    ) -> list[Signal]:
        adwin = self._drift.get(name)
        if adwin is None:
            adwin = self._drift[name] = Adwin(self._drift_config)

        def judge(before: float, after: float) -> str | None:
            return None  # always measured first: ADWIN's first cut understates the shift

        def handle(m: _Measured) -> Signal | None:
            size = m.after - m.before
            level = severity(abs(size))
            if (
                m.reported is not None
                and _RANK[severity(abs(size) - 2 * m.error)] <= _RANK[m.reported]
            ):
                return None  # measured after an alert that said as much, within the noise
            grew = "" if m.reported is None else f", grown from the {m.reported} first reported"
            return Signal(
                    "prediction_drift",
                    "adwin",
                    name,
                    "firing",
                    "increase" if size > 0 else "decrease",
                    m.index,
                    m.at_ms,
                    level,
                    {"mean": _r(m.before), "count": m.n_before},
                    {"mean": _r(m.after), "count": m.n},
                    f"the {name.replace('_', ' ')} of the predictions moved from "
                    f"{m.before:.3g} to {m.after:.3g} ({size:+.3g}){grew}",
                )  # fmt: skip

        return self._confirm(
            name, adwin, values, at, judge, handle, self.config.prediction_drift.confirm
        )

    def _confirm(
        self,
        name: str,
        adwin: Adwin,
        values: list[float],
        at: list[tuple[int, int]],
        judge: Callable[[float, float], str | None],
        handle: Callable[[_Measured], Signal | None],
        need: int,
    ) -> list[Signal]:
        """Feed ``values`` to ``adwin`` and measure the changes it reports.

        ADWIN cuts its window soon after a change, so the part it keeps still holds older
        values and understates the shift. A change goes out at once, with ADWIN's figures,
        when ``judge`` (ADWIN's mean before, mean after) finds them enough (it returns a
        severity);
        either way the new level is then measured over the next ``confirm`` values and
        reported again (``reported`` says at which severity it went out first, None if it
        did not), so a caller can raise what was understated. ``handle`` turns each
        measurement into a signal (or not) at once, in stream order: its state changes
        are what ``judge`` sees next, whatever the batches."""
        hits = dict(adwin.update_many(values))
        state = self._confirming.get(name)
        since = self._since.get(name)  # the values since the last change
        if since is None:
            since = self._since[name] = _Level()
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
                    m = _Measured(
                        index, at[position][1], before, n_before, mean, n, reported, error
                    )
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
                    m = _Measured(
                        index, te, shift.mean_before, shift.n_before, shift.mean_after,
                        shift.n_after, None, 0.0,
                    )  # fmt: skip
                    if (signal := handle(m)) is not None:
                        out.append(signal)
                state = [index, before, n_before, 0.0, 0, level, 0.0]
        if state is None and start < len(values):
            since.add(values[start:])
        self._confirming[name] = state
        return out

    def _shift_severity(self, size: float) -> str:
        c = self.config.prediction_drift
        return _level(size, c.warning_shift, c.critical_shift)

    def _std_severity(self, size: float) -> str:
        c = self.config.prediction_drift
        return _level(size, c.warning_std, c.critical_std)

    # --- input quality ------------------------------------------------------------------

    def _quality(self, values: list[float], at: list[tuple[int, int]]) -> list[Signal]:
        assert self._invalid is not None
        floor = self.config.input_quality.min_rate

        def level(rate: float) -> str:
            return "critical" if rate >= 0.10 else "warning"

        def threshold() -> float:
            opened = self.quality_open
            return floor if opened is None else max(floor, (opened[0] + opened[1]) / 2)

        def judge(before: float, after: float) -> str | None:
            return None  # always measured first: ADWIN's first cut understates the rate

        def handle(m: _Measured) -> Signal | None:
            before = {"invalid_rate": _r(m.before), "count": m.n_before}
            after = {"invalid_rate": _r(m.after), "count": m.n}
            opened = self.quality_open
            clears = m.after - 2 * m.error >= floor  # by two standard errors: not noise
            if opened is None and m.reported is None and clears and m.after > m.before:
                self.quality_open = (m.before, m.after)
                return Signal(
                        "input_quality",
                        "adwin",
                        "invalid_rate",
                        "firing",
                        "increase",
                        m.index,
                        m.at_ms,
                        level(m.after),
                        before,
                        after,
                        f"{m.after:.1%} of this model's prediction events are dead-lettered "
                        f"(was {m.before:.1%})",
                    )  # fmt: skip
            elif opened is not None and m.reported is None and m.after < threshold():
                self.quality_open = None
                return Signal(
                        "input_quality",
                        "adwin",
                        "invalid_rate",
                        "resolved",
                        "decrease",
                        m.index,
                        m.at_ms,
                        "info",
                        before,
                        after,
                        f"dead-lettered events are back to {m.after:.1%}",
                    )  # fmt: skip
            elif opened is not None and m.reported in _RANK and m.after > opened[1]:
                self.quality_open = (opened[0], m.after)  # measured after the alert
                if _RANK[level(m.after)] > _RANK[m.reported]:
                    return Signal(
                            "input_quality",
                            "adwin",
                            "invalid_rate",
                            "firing",
                            "increase",
                            m.index,
                            m.at_ms,
                            level(m.after),
                            before,
                            after,
                            f"{m.after:.1%} of this model's prediction events are "
                            f"dead-lettered (was {m.before:.1%}), more than first reported",
                        )  # fmt: skip
            return None

        need = self.config.input_quality.confirm
        return self._confirm("invalid_rate", self._invalid, values, at, judge, handle, need)

    # --- estimated error ----------------------------------------------------------------

    def _estimate(self, values: list[float], at: list[tuple[int, int]]) -> list[Signal]:
        assert self._expected is not None
        min_rise = self.config.estimated.min_rise

        def level(before: float, after: float) -> str:
            doubled = before > 0 and after >= 2 * before
            return "critical" if after - before >= 0.10 or doubled else "warning"

        def judge(before: float, after: float) -> str | None:
            opened = self.estimate_open
            if opened is None:
                return level(before, after) if after - before >= min_rise else None
            return "info" if after < (opened[2] + opened[3]) / 2 else None

        def handle(m: _Measured) -> Signal | None:
            before = {"error_rate": _r(m.before), "count": m.n_before}
            after = {"error_rate": _r(m.after), "count": m.n}
            rise = m.after - m.before
            opened = self.estimate_open
            if opened is None and m.reported is None and rise >= min_rise:
                self.estimate_open = (m.index, m.at_ms, m.before, m.after)
                self._reconciling = [m.index, m.at_ms, m.before, m.after, 0, 0.0]
                return Signal(
                        "estimated_degradation",
                        "adwin",
                        "expected_error",
                        "firing",
                        "increase",
                        m.index,
                        m.at_ms,
                        level(m.before, m.after),
                        before,
                        after,
                        f"the error expected from the scores rose from {m.before:.1%} to "
                        f"{m.after:.1%}, before any label",
                    )  # fmt: skip
            elif opened is not None and m.reported is None and rise < 0:
                if m.after < (opened[2] + opened[3]) / 2:
                    self.estimate_open = None
                    return Signal(
                            "estimated_degradation",
                            "adwin",
                            "expected_error",
                            "resolved",
                            "decrease",
                            m.index,
                            m.at_ms,
                            "info",
                            before,
                            after,
                            f"the error expected from the scores is back to {m.after:.1%}",
                        )  # fmt: skip
            elif opened is not None and m.reported in _RANK and m.after > opened[3]:
                self.estimate_open = (opened[0], opened[1], opened[2], m.after)
                if _RANK[level(m.before, m.after)] > _RANK[m.reported]:
                    return Signal(
                            "estimated_degradation",
                            "adwin",
                            "expected_error",
                            "firing",
                            "increase",
                            m.index,
                            m.at_ms,
                            level(m.before, m.after),
                            before,
                            after,
                            f"the error expected from the scores rose from {m.before:.1%} to "
                            f"{m.after:.1%}, more than first reported",
                        )  # fmt: skip
            return None

        need = self.config.estimated.confirm
        return self._confirm("expected_error", self._expected, values, at, judge, handle, need)

    def _reconciled(self, completed_ms: int) -> Signal:
        """The estimate against the labels of the predictions made after it. Information
        only: whether the estimate is still open when the labels are in depends on how
        predictions and labels interleave, so this changes no state (the estimate
        resolves when the scores recover)."""
        assert self._reconciling is not None
        index, _, est_before, est_after, n, errors = self._reconciling
        self._reconciling = None
        seen = errors / n
        confirmed = seen >= est_before + (est_after - est_before) / 2
        return Signal(
            "estimated_degradation", "reconcile", "error", "firing", None, index, completed_ms,
            "info",
            {"error_rate": _r(est_before), "estimated": _r(est_after)},
            {"error_rate": _r(seen), "count": int(n), "confirmed": confirmed},
            f"labels of {int(n)} later predictions show an error rate of {seen:.1%} against "
            f"{est_after:.1%} estimated: {'confirmed' if confirmed else 'not confirmed'}",
        )  # fmt: skip

    # --- silence ------------------------------------------------------------------------

    def _silence_limit(self) -> int | None:
        c = self.config.silence
        gaps = self.gaps
        if not c.enabled or gaps.count < c.warmup:
            return None
        cached = self._limit
        if cached is not None and cached[0] == gaps.count:
            return cached[1]  # asked once per batch and per long gap: the same answer
        usual = gaps.quantile(0.99) or 0.0
        limit = max(int(c.factor * usual), int(c.min_gap_s * 1000))
        self._limit = (gaps.count, limit)
        return limit

    def _gap(self, te: int) -> list[Signal]:
        last = self.last_ms
        self.last_ms = te if last is None else max(last, te)
        if last is None or te < last:
            return []
        out: list[Signal] = []
        if self.silent_since is None and te - last > self._floor_ms:
            limit = self._silence_limit()  # at least the floor: only asked above it
            if limit is not None and te - last > limit:
                out.append(self._silent(last, limit))
        if self.silent_since is not None:
            out.append(self._heard(te))
        self.gaps.add(te - last, te - last)  # by time: bursts must not hide the pauses
        return out

    def _silence_at(self, upto: int) -> list[Signal]:
        due = self.silence_due()
        if due is None or upto < due:
            return []
        assert self.last_ms is not None
        return [self._silent(self.last_ms, due - 1 - self.last_ms)]

    def _silent(self, last: int, limit: int) -> Signal:
        self.silent_since = last
        usual = self.gaps.quantile(0.99) or 0.0
        return Signal(
            "model_silent", "gap", "predictions", "firing", "decrease", last, last + limit,
            "warning",
            {"usual_gap_s": round(usual / 1000, 3), "count": self.served},
            {"silent_s": round(limit / 1000, 3)},
            f"no prediction for {limit / 1000:.0f} s of event time while other models "
            f"served (its usual gap is {usual / 1000:.1f} s)",
        )  # fmt: skip

    def _heard(self, te: int) -> Signal:
        last = self.silent_since
        assert last is not None
        self.silent_since = None
        return Signal(
            "model_silent", "gap", "predictions", "resolved", "increase", te, te, "info",
            {"last_prediction_ms": last}, {"silent_s": round((te - last) / 1000, 3)},
            f"serving again after {(te - last) / 1000:.0f} s of silence",
        )  # fmt: skip


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


_RANK = {"info": 0, "warning": 1, "critical": 2}
_BLOCK = 32  # values per block of the recent past that "before" leaves out ...
_RECENT_BLOCKS = 32  # ... this many of them (1,024 values: a slow detection)


class _Level:
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


def _r(x: float) -> float:
    """Rounded for an alert, and never -0.0 (a running mean can land there)."""
    return round(x, 6) + 0.0


@dataclass(frozen=True, slots=True)
class _Measured:
    """A change ADWIN reported, with the level after it (see ``SignalWatch._confirm``)."""

    index: int
    at_ms: int
    before: float
    n_before: int
    after: float
    n: int
    reported: str | None  # a follow-up of a change reported at this severity; None: first
    error: float  # standard error of ``after`` (0 when ADWIN's own figure)


def _level(size: float, warning: float, critical: float) -> str:
    return "critical" if size >= critical else "warning" if size >= warning else "info"
