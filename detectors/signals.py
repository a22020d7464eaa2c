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
from typing import Any

from detectors.adwin import Adwin
from detectors.base import Shift
from detectors.config import AdwinConfig, MonitorConfig
from detectors.histogram import LogHistogram
from detectors.labels import LabelWindows
from detectors.sequencer import Pending, Sequencer
from detectors.signal import Signal

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
        self._warm: list[tuple[int, int, Any, float | None]] | None = []
        self._ref: tuple[float, float] = (0.0, 1.0)
        self._prev_z: float | None = None
        pc = config.prediction_drift.positive_class.lower()
        self._positive = {"true": "1", "false": "0"}.get(pc, pc)
        drift = AdwinConfig(delta=config.prediction_drift.delta)
        self._drift: dict[str, Adwin] = {}
        # per signal, after a detection: [index, mean before, count before, sum, count]
        self._confirming: dict[str, list[Any] | None] = {}
        self._drift_config = drift
        q = config.input_quality
        self._invalid = Adwin(AdwinConfig(delta=q.delta)) if q.enabled else None
        self.quality_open: tuple[float, float] | None = None  # before, after
        e = config.estimated
        self._expected = Adwin(AdwinConfig(delta=e.delta)) if e.enabled else None
        self.estimate_open: tuple[int, int, float, float] | None = None  # index, ms, before, after
        self._reconcile: list[float] = [0, 0.0]  # outcomes since the estimate, errors
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
        opened = self.estimate_open
        if opened is not None and event_ms >= opened[1]:
            r = self._reconcile
            r[0] += 1
            r[1] += error
            if r[0] == self.config.estimated.reconcile_after:
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
            self.served += 1
            self.labels.predicted(te)
            out += self._gap(te)
            valid.append((self.seen, te, prediction, score))
        if self._invalid is not None:
            out += self._quality(self._invalid.update_many(quality), positions)
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
        prev = self._prev_z
        for index, te, prediction, _ in valid:
            if not _number(prediction):
                continue
            z = min(max((float(prediction) - mean) / scale, -_Z_CLIP), _Z_CLIP)
            level.append(z)
            at.append((index, te))
            if prev is not None:
                spread.append(min(abs(z - prev), _Z_CLIP))
                spread_at.append((index, te))
            prev = z
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
        return [
            self._drift_signal(name, confirmed, at_ms, severity)
            for confirmed, at_ms in self._confirm(
                name,
                adwin,
                values,
                at,
                lambda s: severity(abs(s.mean_after - s.mean_before)) != "info",
            )
        ]

    def _confirm(
        self,
        name: str,
        adwin: Adwin,
        values: list[float],
        at: list[tuple[int, int]],
        clear: Callable[[Shift], bool],
    ) -> list[tuple[list[Any], int]]:
        """Feed ``values`` to ``adwin``; a change it reports goes out at once when ``clear``
        says its own statistics already show enough; else the new level is measured over
        the next ``confirm`` values (ADWIN cuts its window soon after a change, so the
        part it keeps still holds older values, and understates the shift). Returns
        ([index of the detection, mean before, count before, sum after, count after],
        event time of the value that decided)."""
        hits = dict(adwin.update_many(values))
        confirming = self._confirming.get(name)
        if confirming is None and not hits:
            return []
        out = []
        need = self.config.prediction_drift.confirm
        for position, x in enumerate(values):
            if confirming is not None:
                confirming[3] += x
                confirming[4] += 1
                if confirming[4] >= need:
                    out.append((confirming, at[position][1]))
                    confirming = None
            elif position in hits:
                shift = hits[position]
                index, te = at[position]
                if clear(shift):
                    total = shift.mean_after * shift.n_after
                    out.append(
                        ([index, shift.mean_before, shift.n_before, total, shift.n_after], te)
                    )
                else:
                    confirming = [index, shift.mean_before, shift.n_before, 0.0, 0]
        self._confirming[name] = confirming
        return out

    def _drift_signal(
        self,
        name: str,
        confirmed: list[Any],
        at_ms: int,
        severity: Callable[[float], str],
    ) -> Signal:
        index, before, n_before, total, n = confirmed
        after = total / n
        size = after - before
        return Signal(
            "prediction_drift", "adwin", name, "firing",
            "increase" if size > 0 else "decrease", index, at_ms, severity(abs(size)),
            {"mean": round(before, 6), "count": n_before},
            {"mean": round(after, 6), "count": n},
            f"the {name.replace('_', ' ')} of the predictions moved from {before:.3g} to "
            f"{after:.3g} ({size:+.3g})",
        )  # fmt: skip

    def _shift_severity(self, size: float) -> str:
        c = self.config.prediction_drift
        return _level(size, c.warning_shift, c.critical_shift)

    def _std_severity(self, size: float) -> str:
        c = self.config.prediction_drift
        return _level(size, c.warning_std, c.critical_std)

    # --- input quality ------------------------------------------------------------------

    def _quality(self, found: list[tuple[int, Shift]], at: list[tuple[int, int]]) -> list[Signal]:
        out = []
        floor = self.config.input_quality.min_rate
        for position, shift in found:
            index, te = at[position]
            before = {"invalid_rate": round(shift.mean_before, 6), "count": shift.n_before}
            after = {"invalid_rate": round(shift.mean_after, 6), "count": shift.n_after}
            opened = self.quality_open
            if opened is None and shift.direction == "increase" and shift.mean_after >= floor:
                self.quality_open = (shift.mean_before, shift.mean_after)
                severity = "critical" if shift.mean_after >= 0.10 else "warning"
                out.append(
                    Signal(
                        "input_quality",
                        "adwin",
                        "invalid_rate",
                        "firing",
                        "increase",
                        index,
                        te,
                        severity,
                        before,
                        after,
                        f"{shift.mean_after:.1%} of this model's prediction events are "
                        f"dead-lettered (was {shift.mean_before:.1%})",
                    )  # fmt: skip
                )
            elif opened is not None and shift.direction == "decrease":
                if shift.mean_after < max(floor, (opened[0] + opened[1]) / 2):
                    self.quality_open = None
                    out.append(
                        Signal(
                            "input_quality",
                            "adwin",
                            "invalid_rate",
                            "resolved",
                            "decrease",
                            index,
                            te,
                            "info",
                            before,
                            after,
                            f"dead-lettered events are back to {shift.mean_after:.1%}",
                        )  # fmt: skip
                    )
        return out

    # --- estimated error ----------------------------------------------------------------

    def _estimate(self, values: list[float], at: list[tuple[int, int]]) -> list[Signal]:
        assert self._expected is not None
        out = []
        min_rise = self.config.estimated.min_rise

        def clear(shift: Shift) -> bool:
            opened = self.estimate_open
            if opened is None:
                return shift.mean_after - shift.mean_before >= min_rise
            return shift.mean_after < (opened[2] + opened[3]) / 2

        for confirmed, te in self._confirm("expected_error", self._expected, values, at, clear):
            index, mean_before, n_before, total, n = confirmed
            mean_after = total / n
            before = {"error_rate": round(mean_before, 6), "count": n_before}
            after = {"error_rate": round(mean_after, 6), "count": n}
            rise = mean_after - mean_before
            opened = self.estimate_open
            if opened is None and rise >= self.config.estimated.min_rise:
                self.estimate_open = (index, te, mean_before, mean_after)
                self._reconcile = [0, 0.0]
                doubled = mean_before > 0 and mean_after >= 2 * mean_before
                severity = "critical" if rise >= 0.10 or doubled else "warning"
                out.append(
                    Signal(
                        "estimated_degradation",
                        "adwin",
                        "expected_error",
                        "firing",
                        "increase",
                        index,
                        te,
                        severity,
                        before,
                        after,
                        f"the error expected from the scores rose from {mean_before:.1%}"
                        f" to {mean_after:.1%}, before any label",
                    )  # fmt: skip
                )
            elif opened is not None and rise < 0 and mean_after < (opened[2] + opened[3]) / 2:
                self.estimate_open = None
                out.append(
                    Signal(
                        "estimated_degradation",
                        "adwin",
                        "expected_error",
                        "resolved",
                        "decrease",
                        index,
                        te,
                        "info",
                        before,
                        after,
                        f"the error expected from the scores is back to {mean_after:.1%}",
                    )  # fmt: skip
                )
        return out

    def _reconciled(self, completed_ms: int) -> Signal:
        assert self.estimate_open is not None
        index, _, est_before, est_after = self.estimate_open
        n, errors = self._reconcile
        seen = errors / n
        confirmed = seen >= est_before + (est_after - est_before) / 2
        if not confirmed:
            self.estimate_open = None
        return Signal(
            "estimated_degradation", "reconcile", "error", "firing" if confirmed else "resolved",
            None, index, completed_ms, "info",
            {"error_rate": round(est_before, 6), "estimated": round(est_after, 6)},
            {"error_rate": round(seen, 6), "count": int(n)},
            f"labels of {int(n)} later predictions show an error rate of {seen:.1%} against "
            f"{est_after:.1%} estimated: {'confirmed' if confirmed else 'not confirmed'}",
        )  # fmt: skip

    # --- silence ------------------------------------------------------------------------

    def _silence_limit(self) -> int | None:
        c = self.config.silence
        if not c.enabled or self.gaps.count < c.warmup:
            return None
        usual = self.gaps.quantile(0.99) or 0.0
        return max(int(c.factor * usual), int(c.min_gap_s * 1000))

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
        self.gaps.add(te - last)
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


def _level(size: float, warning: float, critical: float) -> str:
    return "critical" if size >= critical else "warning" if size >= warning else "info"
