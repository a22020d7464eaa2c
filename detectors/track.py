"""One model's whole detection state: its sequencer and its detector bank.

This is the per-key step the live stream and replay share: ``offer`` outcomes in any
order, get back the changes their canonical order produces. It pickles as one value, so
the live worker checkpoints it per model in a changelog.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from detectors.bank import ModelMonitor
from detectors.base import Change
from detectors.config import MonitorConfig
from detectors.sequencer import Pending, Sequencer

__all__ = ["Detection", "ModelTrack"]


@dataclass(frozen=True, slots=True)
class Detection:
    """A change plus what the alert needs to know about the outcome that triggered it."""

    change: Change
    model_version: str | None
    prediction_id: str


class ModelTrack:
    """Sequencer + detector bank of one model."""

    push: Callable[[int, str, float, str | None], None]
    """``push(completion_ms, prediction_id, error, model_version)``: hold one outcome;
    :meth:`release` runs what the watermark lets through.

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

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["push"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.push = self.sequencer.push

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
        """Run whatever the watermark (or ``upto``) has released (after a batch of offers)."""
        return self._run(self.sequencer.ready(upto))

    def flush(self) -> list[Detection]:
        """Run everything held (idle stream, end of replay)."""
        return self._run(self.sequencer.drain())

    def _run(self, items: list[Pending]) -> list[Detection]:
        """Feed released outcomes to the bank as one batch: per outcome, only river runs."""
        if not items:
            return []
        self.model_version = items[-1][3]
        first = self.monitor.n + 1
        changes = self.monitor.feed(list(map(_error, items)), lambda i: items[i][0])
        found: list[Detection] = []
        for change in changes:
            _, prediction_id, _, version = items[change.index - first]
            found.append(Detection(change, version, prediction_id))
        return found


_error = itemgetter(2)
