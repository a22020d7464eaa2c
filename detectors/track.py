"""One model's whole detection state: its sequencer and its detector bank.

This is the per-key step the live stream and replay share: ``offer`` outcomes in any
order, get back the changes their canonical order produces. It pickles as one value, so
the live worker checkpoints it per model in a changelog.
"""

from __future__ import annotations

from dataclasses import dataclass

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

    def __init__(self, model_id: str, config: MonitorConfig, *, lag_ms: int) -> None:
        self.model_id = model_id
        self.monitor = ModelMonitor(model_id, config)
        self.sequencer = Sequencer(lag_ms)
        self.model_version: str | None = None

    @property
    def config(self) -> MonitorConfig:
        return self.monitor.config

    def push(
        self, completion_ms: int, prediction_id: str, error: float, model_version: str | None
    ) -> None:
        """Hold one outcome; :meth:`release` runs what the watermark lets through."""
        self.sequencer.push(completion_ms, prediction_id, error, model_version)

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
        found: list[Detection] = []
        update = self.monitor.update
        for completion_ms, prediction_id, error, version in items:
            self.model_version = version
            for change in update(error, completion_ms):
                found.append(Detection(change, version, prediction_id))
        return found
