"""One model's whole detection state: its sequencers, its detector bank and its signals.

This is the per-key step the live stream and replay share: ``offer`` outcomes in any
order, get back the changes their canonical order produces; ``see`` predictions, get back
the label-free signals (:mod:`detectors.signals`). It pickles as one value, so the live
worker checkpoints it per model in a changelog.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from operator import itemgetter
from typing import Any

from detectors.bank import ModelMonitor
from detectors.base import Change, error_severity
from detectors.config import MonitorConfig
from detectors.sequencer import Pending, Sequencer
from detectors.signal import Signal
from detectors.signals import SeenPayload, SignalWatch
from detectors.versions import VersionWatch

__all__ = ["Detection", "ModelTrack"]


@dataclass(frozen=True, slots=True)
class Detection:
    """A change plus what the alert needs to know about the outcome that triggered it."""

    change: Change
    model_version: str | None
    prediction_id: str
    versions: dict[str, Any] | None = None
    """{"before", "after", "changed_at_ms"} when the model's version changed shortly
    before (or during) the rise: the alert names both versions."""


class ModelTrack:
    """Sequencer + detector bank of one model."""

    push: Callable[[int, str, float, Any], None]
    """``push(completion_ms, prediction_id, error, (model_version, event_ms))``: hold one
    outcome; :meth:`release` runs what the watermark lets through. (A bare
    ``model_version`` is accepted too: the event time is then the completion time.)

    It is the sequencer's own :meth:`~detectors.sequencer.Sequencer.push`, bound per
    instance, so the per-outcome call is one call, not two. A non-finite error raises
    :class:`~detectors.exceptions.InvalidOutcome` before anything is held, so the caller
    can dead-letter that one outcome and a release cannot fail half-way through a batch.
    """

    def __init__(self, model_id: str, config: MonitorConfig, *, lag_ms: int) -> None:
        self.model_id = model_id
        self.monitor = ModelMonitor(model_id, config)
        self.sequencer = Sequencer(lag_ms)
        self.model_version: str | None = None
        self.push = self.sequencer.push
        self.watch = SignalWatch(model_id, config, lag_ms=lag_ms)
        # after an increase: [detector, mean before, count before, sum, count, squares]
        self.measuring: list[Any] | None = None
        self.reported = "info"  # the highest severity of the current rise
        self.lifecycle: list[Signal] = []  # version regressions the outcomes decided

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["push"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.push = self.sequencer.push
        self.__dict__.setdefault("measuring", None)
        self.__dict__.setdefault("reported", "info")
        self.__dict__.setdefault("lifecycle", [])
        if "watch" not in state:  # pickled before the label-free signals existed
            self.watch = SignalWatch(
                self.model_id, self.monitor.config, lag_ms=self.sequencer.lag_ms
            )
        if "versions" not in self.watch.__dict__:  # pickled before detectors.versions
            versions = VersionWatch(self.monitor.config.version_regression)
            if self.watch.version is not None:
                versions.served(0, 0, self.watch.version)  # the one serving is not new
            self.watch.versions = versions

    def see(self, event_ms: int, key: str, payload: SeenPayload) -> None:
        """Hold one served prediction (or a dead-lettered prediction event: ``None``)."""
        self.watch.push(event_ms, key, payload)

    def signals(self, pbound: int | None) -> list[Signal]:
        """Run the prediction stream up to the prediction watermark ``pbound``. Call it
        before :meth:`release` and :meth:`finish`: an estimate must exist before the
        labels that reconcile it."""
        return self.watch.release(pbound) if pbound is not None else []

    def finish(self, bound: int | None) -> list[Signal]:
        """Signals decided after the outcomes up to ``bound`` ran (see :meth:`signals`)."""
        found, self.lifecycle = self.lifecycle, []
        return found + self.watch.finish(bound)

    @property
    def config(self) -> MonitorConfig:
        return self.monitor.config

    def offer(
        self, completion_ms: int, prediction_id: str, error: float, model_version: str | None
    ) -> list[Detection]:
        """Take one outcome; return detections from whatever the watermark released."""
        self.push(completion_ms, prediction_id, error, model_version)
        return self.release()

    @property
    def pending(self) -> int:
        return len(self.sequencer)

    def release(self, upto: int | None = None) -> list[Detection]:
        """Run whatever the watermark (or ``upto``) has released (after a batch of offers).

        The release stops at each label window's end on the way, so the expected label
        delay of that window is fixed from exactly the outcomes completed before it."""
        found: list[Detection] = []
        if upto is not None:
            labels = self.watch.labels
            while (end := labels.next_end()) is not None and end <= upto:
                found += self._run(self.sequencer.ready(end))
                labels.fix(end)
        return found + self._run(self.sequencer.ready(upto))

    def flush(self) -> list[Detection]:
        """Run everything held (idle stream, end of replay)."""
        return self._run(self.sequencer.drain())

    def flush_signals(self) -> list[Signal]:
        """Run every prediction held (before :meth:`flush`; see :meth:`signals`)."""
        return self.watch.flush()

    def due(self) -> tuple[int | None, int | None]:
        """(outcome watermark, prediction watermark) at which this model next has
        something to decide even without new input: a label window, a silence."""
        return self.watch.labels.next_due(), self.watch.silence_due()

    def _run(self, items: list[Pending]) -> list[Detection]:
        """Feed released outcomes to the bank as one batch: per outcome, only river runs."""
        if not items:
            return []
        watch = self.watch
        versions = watch.versions
        first = self.monitor.n + 1
        # clipped once, here: the versions compare the errors the detectors see (an absurd
        # regression label must not make a version look worse), and the clipper has state
        errors = self.monitor.clipper.clip(list(map(_error, items)))
        for position, (completed, _, error, payload) in enumerate(items):
            if type(payload) is tuple:
                version, te = payload
            else:
                version, te = payload, completed
            watch.outcome(te, completed, error)
            if version is not None and (
                s := versions.outcome(first + position, completed, te, version, errors[position])
            ):
                self.lifecycle.append(s)
        self.model_version = _version(items[-1][3])
        changes = self.monitor.feed(errors, lambda i: items[i][0], clipped=True)
        found: list[Detection] = []
        for change in changes:
            _, prediction_id, _, payload = items[change.index - first]
            found.append(Detection(change, _version(payload), prediction_id))
        if changes or self.measuring is not None:
            found += self._escalations(items, first, changes)
        return [self._named(d) for d in found] if found and versions.switches else found

    def _named(self, d: Detection) -> Detection:
        """A rise whose detector window (its outcomes before and after the change, at
        most ``10 x version_regression.window``) spans a version switch names both
        versions: a deliberate version change does not page as a plain degradation."""
        c = d.change
        if c.direction != "increase":
            return d
        switch = self.watch.versions.switch_before(c.index)
        reach = min(c.n_before + c.n_after, 10 * self.config.version_regression.window)
        if switch is None or switch[0] <= c.index - reach:
            return d
        versions = {"before": switch[2], "after": switch[3], "changed_at_ms": switch[1]}
        return replace(d, versions=versions)

    def _escalations(
        self, items: list[Pending], first: int, changes: list[Change]
    ) -> list[Detection]:
        """A detector reports a rise soon after it starts, when the window it keeps still
        holds older outcomes: 0.04 to 0.07 for a rise to 0.20. The error rate of the
        ``MEASURE_AFTER`` outcomes after each rise is measured, and a second alert goes out
        (its own index, so its own id) when that is, by two standard errors, a higher
        severity than any reported for this rise (once per level, until an improvement)."""
        starts = {c.index - first: c for c in changes}
        m = self.measuring
        found: list[Detection] = []
        for position, (completed, prediction_id, error, payload) in enumerate(items):
            if m is not None:
                m[3] += error
                m[4] += 1
                m[5] += error * error
                if m[4] >= MEASURE_AFTER:
                    n = m[4]
                    after = m[3] / n
                    noise = math.sqrt(max(m[5] / n - after * after, 0.0) / n)
                    # by two standard errors, and above what this rise already reported
                    level = error_severity(m[1], after - 2 * noise)
                    if _RANK[level] > _RANK[self.reported]:
                        self.reported = level
                        change = Change(
                            f"{m[0]}:measured", "increase", first + position, completed, m[1],
                            m[2], after, n,
                        )  # fmt: skip
                        found.append(Detection(change, _version(payload), prediction_id))
                    m = None
            elif (c := starts.get(position)) is not None:
                if c.direction == "decrease":
                    self.reported = "info"  # an improvement ends the rise
                else:
                    level = error_severity(c.mean_before, c.mean_after)
                    if _RANK[level] > _RANK[self.reported]:
                        self.reported = level
                    m = [c.detector, c.mean_before, c.n_before, 0.0, 0, 0.0]
        self.measuring = m
        return found


_error = itemgetter(2)
_RANK = {"info": 0, "warning": 1, "critical": 2}
MEASURE_AFTER = 200
"""Outcomes after a reported rise whose error rate decides whether it is raised again."""


def _version(payload: object) -> str | None:
    return payload[0] if type(payload) is tuple else payload  # type: ignore[return-value]
