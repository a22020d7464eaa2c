"""What a label-free or liveness detector reports: one alert's worth of facts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["Signal", "Status"]

Status = Literal["firing", "resolved"]


@dataclass(frozen=True, slots=True)
class Signal:
    """A signal of one model. ``index`` is what makes its alert id: a position in the
    model's prediction stream, a window, or an event time, never a wall-clock time."""

    kind: str  # prediction_drift, labels_missing, model_silent, input_quality, ...
    detector: str  # adwin, window, gap, reconcile
    signal: str  # positive_rate, score, prediction_mean, label_coverage, ...
    status: Status
    direction: str | None
    index: int
    event_time_ms: int
    severity: str
    before: dict[str, Any]
    after: dict[str, Any]
    message: str
