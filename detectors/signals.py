"""The label-free and liveness signals of one model, fed its prediction stream.

Every prediction a model serves (and every prediction event of it that was dead-lettered)
reaches :class:`SignalWatch` in canonical order: event time, then key, held by its own
:class:`~detectors.sequencer.Sequencer` until the prediction watermark passes. From that
one ordered stream it derives:

- ``prediction_drift``: ADWIN on the positive-class rate and on the score
  (classification), or on the standardised prediction and its successive differences
  (regression); see :class:`~detectors.config.PredictionDriftConfig`. A drift of
  ``warning`` or more opens; it resolves once every drifted signal is measured back
  within less than a ``warning`` shift (less two standard errors) of its level before
  the first drift;
- ``model_silent``: no prediction for ``factor`` x the usual gap while the watermark moves
  on, resolved by the next prediction (:mod:`detectors.silence`);
- ``input_quality``: ADWIN on 1 per dead-lettered and 0 per valid event;
- ``estimated_degradation``: ADWIN on each prediction's expected error from its score
  (CBPE style), reconciled once the labels of later predictions are in;
- the prediction counts behind ``labels_missing`` (:mod:`detectors.labels`);
- ``feature_drift`` and ``schema_change`` from the events' features
  (:mod:`detectors.features`), once a first event with features came.

Each ADWIN change is measured before it is reported (:mod:`detectors.measured`). Pure and
picklable, like the detector bank: live and replay feed the same stream.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from detectors.config import MonitorConfig
from detectors.features import FeatureRow, FeatureWatch
from detectors.histogram import LogHistogram
from detectors.labels import LabelWindows
from detectors.measured import (
    RANK,
    Measured,
    MeasuredAdwin,
    measured_signal,
    rounded,
    severity_of,
)
from detectors.sequencer import Pending, Sequencer
from detectors.signal import Signal
from detectors.silence import Silence
from detectors.versions import VersionWatch

__all__ = ["SeenPayload", "SignalWatch"]

SeenPayload = (
    tuple[Any, float | None, str | None]
    | tuple[Any, float | None, str | None, dict[str, Any]]
    | None
)
"""(prediction, score, model_version) of a served prediction, then its features when it
had some; None for a dead letter."""

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

    inputs: FeatureWatch | None = None  # from the first event with features (a class
    # default: a watch pickled before features existed reads back without one)
    drift_open: dict[str, float] | None = None  # by drifted signal: its level before the
    # first drift of the open incident (a class default, like ``inputs``)

    def __init__(self, model_id: str, config: MonitorConfig, *, lag_ms: int) -> None:
        self.model_id = model_id
        self.config = config
        self.sequencer = Sequencer(lag_ms)
        self.seen = 0  # events released, valid or not: the index of prediction signals
        self.served = 0  # valid predictions released
        self.task = config.task
        self.version: str | None = None
        self.labels = LabelWindows(config.labels)
        self.silence = Silence(config.silence)
        self._warm: list[tuple[int, int, Any, float | None]] | None = []
        self._ref: tuple[float, float] = (0.0, 1.0)
        self._prev_z: float | None = None
        pc = config.prediction_drift.positive_class.lower()
        self._positive = {"true": "1", "false": "0"}.get(pc, pc)
        self._drift: dict[str, MeasuredAdwin] = {}  # by signal, made on first use
        q = config.input_quality
        self._invalid = MeasuredAdwin(q.delta, q.confirm) if q.enabled else None
        self.quality_open: tuple[float, float] | None = None  # before, after
        e = config.estimated
        self._expected = MeasuredAdwin(e.delta, e.confirm) if e.enabled else None
        self.estimate_open: tuple[int, int, float, float] | None = None  # index, ms, before, after
        # the estimate being reconciled: [index, from ms, before, after, outcomes, errors]
        self._reconciling: list[Any] | None = None
        self._pending: list[Signal] = []
        self.versions = VersionWatch(config.version_regression)  # detectors.versions

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
        out += self.silence.at(upto, self.served)
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
        return self.silence.due()

    @property
    def last_ms(self) -> int | None:
        """The newest prediction released."""
        return self.silence.last_ms

    @property
    def silent_since(self) -> int | None:
        """The last prediction before an open silence."""
        return self.silence.silent_since

    @property
    def gaps(self) -> LogHistogram:
        """The model's gaps between predictions (:class:`~detectors.silence.Silence`)."""
        return self.silence.gaps

    # --- the stream ---------------------------------------------------------------------

    def _take(self, items: list[Pending]) -> list[Signal]:
        if not items:
            return []
        out: list[Signal] = []
        quality: list[float] = []
        positions: list[tuple[int, int]] = []  # (index, event ms) per item
        valid: list[tuple[int, int, Any, float | None]] = []
        rows: list[FeatureRow] = []  # events with features
        index = self.seen
        served = self.served
        silence = self.silence.served
        windows: dict[int, int] = {}  # prediction counts per label window, added at once
        width = self.labels.width
        for te, _, _, payload in items:
            index += 1
            positions.append((index, te))
            if payload is None:
                quality.append(1.0)
                continue
            quality.append(0.0)
            if payload[2] != self.version and (v := self.versions.served(index, te, payload[2])):
                out.append(v)
            if len(payload) == 3:
                prediction, score, self.version = payload
            else:  # with the event's features
                prediction, score, self.version, row = payload
                rows.append((index, te, row))
            w = te // width
            windows[w] = windows.get(w, 0) + 1
            if found := silence(te, served):  # counted after: the gap's start
                out += found
            served += 1
            valid.append((index, te, prediction, score))
        self.seen, self.served = index, served
        self.labels.predicted_in(windows)
        if self._invalid is not None:
            out += self._quality(quality, positions)
        if rows or self.inputs is not None:
            out += self._inputs(valid, rows)
        if valid:
            out += self._predictions(valid)
        return out

    def _inputs(
        self, valid: list[tuple[int, int, Any, float | None]], rows: list[FeatureRow]
    ) -> list[Signal]:
        """``feature_drift`` and ``schema_change`` (:mod:`detectors.features`): every valid
        event from the model's first one with features on."""
        watch = self.inputs
        first = 0
        if watch is None:  # then ``rows`` holds the first event with features
            c = self.config
            if not (c.feature_drift.enabled or c.schema_change.enabled):
                return []
            watch = self.inputs = FeatureWatch(c.feature_drift, c.schema_change)
            first = rows[0][0]
        if len(rows) < len(valid):  # some came without: an empty row each
            by_index = {index: row for index, _, row in rows}
            rows = [(i, te, by_index.get(i)) for i, te, _, _ in valid if i >= first]
        return watch.feed(rows)

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
            streams = [("positive_rate", rate, at), ("score", scores, score_at)]
            out += self._drifts(streams, self._shift_severity)
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
        streams = [("prediction_mean", level, at), ("prediction_spread", spread, spread_at)]
        return self._drifts(streams, self._std_severity)

    def _drifts(
        self,
        streams: list[tuple[str, list[float], list[tuple[int, int]]]],
        severity: Callable[[float], str],
    ) -> list[Signal]:
        """ADWIN on each (signal name, values, their (index, event ms)); the changes are
        measured, then judged in index order across the signals (they share the open
        incident), whatever the batches."""
        changes: list[tuple[int, str, Measured]] = []

        def judge(before: float, after: float) -> str | None:
            return None  # always measured first: ADWIN's first cut understates it

        for name, values, at in streams:
            adwin = self._drift.get(name)
            if adwin is None:
                c = self.config.prediction_drift
                adwin = self._drift[name] = MeasuredAdwin(c.delta, c.confirm)

            def keep(m: Measured, name: str = name) -> None:
                changes.append((m.index, name, m))

            adwin.feed(values, at, judge, keep)
        changes.sort(key=lambda c: (c[0], c[1]))
        out: list[Signal] = []
        for _, name, m in changes:
            if (signal := self._drift_change(name, m, severity)) is not None:
                out.append(signal)
        return out

    def _drift_change(
        self, name: str, m: Measured, severity: Callable[[float], str]
    ) -> Signal | None:
        """A measured change of signal ``name``: a drift, or its return."""
        size = m.after - m.before
        level = severity(abs(size))
        opened = self.drift_open
        reference = None if opened is None else opened.get(name)
        if (
            reference is not None
            and severity(max(abs(m.after - reference) - 2 * m.error, 0)) == "info"
        ):
            return self._drift_back(name, reference, m)  # no warning from where it was
        if level != "info":
            if opened is None:
                opened = self.drift_open = {}
            opened.setdefault(name, m.before)
        return Signal(
            "prediction_drift",
            "adwin",
            name,
            "firing",
            "increase" if size > 0 else "decrease",
            m.index,
            m.at_ms,
            level,
            {"mean": rounded(m.before), "count": m.n_before},
            {"mean": rounded(m.after), "count": m.n},
            f"the {name.replace('_', ' ')} of the predictions moved from "
            f"{m.before:.3g} to {m.after:.3g} ({size:+.3g})",
        )

    def _drift_back(self, name: str, reference: float, m: Measured) -> Signal | None:
        """``name`` measured back near its level before the drift: the incident resolves
        when it was the last drifted signal still away."""
        opened = self.drift_open
        assert opened is not None
        del opened[name]
        if opened:
            return None  # another signal of the prediction stream is still away
        self.drift_open = None
        return Signal(
            "prediction_drift",
            "adwin",
            name,
            "resolved",
            "increase" if m.after > m.before else "decrease",
            m.index,
            m.at_ms,
            "info",
            {"mean": rounded(reference), "drifted": rounded(m.before), "count": m.n_before},
            {"mean": rounded(m.after), "count": m.n},
            f"the {name.replace('_', ' ')} of the predictions is back to {m.after:.3g} "
            f"(was {reference:.3g} before the drift, {m.before:.3g} since)",
        )

    def _shift_severity(self, size: float) -> str:
        c = self.config.prediction_drift
        return severity_of(size, c.warning_shift, c.critical_shift)

    def _std_severity(self, size: float) -> str:
        c = self.config.prediction_drift
        return severity_of(size, c.warning_std, c.critical_std)

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

        def handle(m: Measured) -> Signal | None:
            before = {"invalid_rate": rounded(m.before), "count": m.n_before}
            after = {"invalid_rate": rounded(m.after), "count": m.n}
            opened = self.quality_open
            clears = m.after - 2 * m.error >= floor  # by two standard errors: not noise
            if opened is None and m.reported is None and clears and m.after > m.before:
                self.quality_open = (m.before, m.after)
                return measured_signal(
                    "input_quality",
                    "invalid_rate",
                    "firing",
                    "increase",
                    m,
                    level(m.after),
                    before,
                    after,
                    f"{m.after:.1%} of this model's prediction events are dead-lettered "
                    f"(was {m.before:.1%})",
                )
            elif opened is not None and m.reported is None and m.after < threshold():
                self.quality_open = None
                return measured_signal(
                    "input_quality",
                    "invalid_rate",
                    "resolved",
                    "decrease",
                    m,
                    "info",
                    before,
                    after,
                    f"dead-lettered events are back to {m.after:.1%}",
                )
            elif opened is not None and m.reported in RANK and m.after > opened[1]:
                self.quality_open = (opened[0], m.after)  # measured after the alert
                if RANK[level(m.after)] > RANK[m.reported]:
                    return measured_signal(
                        "input_quality",
                        "invalid_rate",
                        "firing",
                        "increase",
                        m,
                        level(m.after),
                        before,
                        after,
                        f"{m.after:.1%} of this model's prediction events are "
                        f"dead-lettered (was {m.before:.1%}), more than first reported",
                    )
            return None

        return self._invalid.feed(values, at, judge, handle)

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

        def handle(m: Measured) -> Signal | None:
            before = {"error_rate": rounded(m.before), "count": m.n_before}
            after = {"error_rate": rounded(m.after), "count": m.n}
            rise = m.after - m.before
            opened = self.estimate_open
            if opened is None and m.reported is None and rise >= min_rise:
                self.estimate_open = (m.index, m.at_ms, m.before, m.after)
                self._reconciling = [m.index, m.at_ms, m.before, m.after, 0, 0.0]
                return measured_signal(
                    "estimated_degradation",
                    "expected_error",
                    "firing",
                    "increase",
                    m,
                    level(m.before, m.after),
                    before,
                    after,
                    f"the error expected from the scores rose from {m.before:.1%} to "
                    f"{m.after:.1%}, before any label",
                )
            elif opened is not None and m.reported is None and rise < 0:
                if m.after < (opened[2] + opened[3]) / 2:
                    self.estimate_open = None
                    return measured_signal(
                        "estimated_degradation",
                        "expected_error",
                        "resolved",
                        "decrease",
                        m,
                        "info",
                        before,
                        after,
                        f"the error expected from the scores is back to {m.after:.1%}",
                    )
            elif opened is not None and m.reported in RANK and m.after > opened[3]:
                self.estimate_open = (opened[0], opened[1], opened[2], m.after)
                r = self._reconciling
                if r is not None and r[0] == opened[0]:
                    r[3] = m.after  # reconciled against the level measured
                if RANK[level(m.before, m.after)] > RANK[m.reported]:
                    return measured_signal(
                        "estimated_degradation",
                        "expected_error",
                        "firing",
                        "increase",
                        m,
                        level(m.before, m.after),
                        before,
                        after,
                        f"the error expected from the scores rose from {m.before:.1%} to "
                        f"{m.after:.1%}, more than first reported",
                    )
            return None

        return self._expected.feed(values, at, judge, handle)

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
            "estimated_degradation",
            "reconcile",
            "error",
            "firing",
            None,
            index,
            completed_ms,
            "info",
            {"error_rate": rounded(est_before), "estimated": rounded(est_after)},
            {"error_rate": rounded(seen), "count": int(n), "confirmed": confirmed},
            f"labels of {int(n)} later predictions show an error rate of {seen:.1%} against "
            f"{est_after:.1%} estimated: {'confirmed' if confirmed else 'not confirmed'}",
        )


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
