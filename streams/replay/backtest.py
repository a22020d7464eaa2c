"""The replay engine: the live join and detectors, fed from recorded events, no Faust.

Events go through one :class:`~streams.join.Joiner` per partition, exactly as the live
worker partitions them, and each model's outcomes reach its :class:`ModelTrack` in the
same canonical order the live worker uses: released when the oldest source partition
has read past them by ``reorder_lag_ms``, the rest at the end. With no late outcomes on
either side, the same events give the same detections at the same outcome indices, so
replayed alerts carry the live alert_ids.

Several detector configurations (a sweep) share one pass: the join runs once and every
configuration gets its own tracks. State is what the join holds pending plus one track
per model and configuration; outcomes are not kept.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from detectors.config import DetectorSettings, apply_overrides
from detectors.track import Detection, ModelTrack
from streams.contract.alerts import build_alert
from streams.contract.events import GroundTruth, Outcome, Prediction
from streams.engine.join import Joiner
from streams.engine.partitioning import partitions_for

__all__ = [
    "Backtest",
    "BacktestResult",
    "Combination",
    "ModelSummary",
    "expand_sweeps",
]

HOUR_MS = 3_600_000


@dataclass(frozen=True)
class Combination:
    """One detector configuration of a sweep; ``name`` is how tables and files call it."""

    name: str
    overrides: dict[str, str]
    settings: DetectorSettings


def expand_sweeps(base: DetectorSettings, sweeps: list[str]) -> list[Combination]:
    """``["adwin.delta=0.002,0.0005", "ph.threshold=25,50"]`` to all 4 combinations.

    No sweep gives the base configuration alone, named ``default``. Bad keys or values
    raise :class:`~detectors.exceptions.DetectorSettingsError` naming them."""
    axes: list[tuple[str, list[str]]] = []
    for sweep in sweeps:
        key, sep, values = sweep.partition("=")
        options = [v.strip() for v in values.split(",") if v.strip()]
        if not sep or not key.strip() or not options:
            raise ValueError(f"--sweep {sweep!r}: expected KEY=VALUE[,VALUE...]")
        axes.append((key.strip(), options))
    if not axes:
        return [Combination("default", {}, base)]
    combos = []
    for chosen in itertools.product(*(options for _, options in axes)):
        overrides = {name: value for (name, _), value in zip(axes, chosen, strict=True)}
        name = " ".join(f"{k}={v}" for k, v in overrides.items())
        combos.append(Combination(name, overrides, apply_overrides(base, overrides)))
    return combos


@dataclass
class ModelSummary:
    """Per model: what came in, what joined, and an hourly series for plots."""

    model_id: str
    predictions: int = 0
    joined: int = 0
    expired_predictions: int = 0
    unscorable: int = 0
    first_ms: int | None = None
    last_ms: int | None = None
    # hour bin (event time of the outcome's completion) -> [outcomes, error sum]
    errors: dict[int, list[float]] = field(default_factory=dict)
    # hour bin (prediction event time) -> [predictions, of which joined]
    coverage: dict[int, list[int]] = field(default_factory=dict)

    @property
    def label_coverage(self) -> float:
        return self.joined / self.predictions if self.predictions else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id,
            "predictions": self.predictions,
            "joined": self.joined,
            "label_coverage": round(self.label_coverage, 6),
            "expired_predictions": self.expired_predictions,
            "unscorable": self.unscorable,
            "first_event_ms": self.first_ms,
            "last_event_ms": self.last_ms,
        }


@dataclass
class BacktestResult:
    """What a replay found; ``alerts`` maps a combination name to its alert events."""

    start_ms: int | None
    end_ms: int | None
    combinations: list[Combination]
    models: dict[str, ModelSummary]
    alerts: dict[str, list[dict[str, Any]]]
    events: int = 0
    late_outcomes: int = 0
    dead_letters: int = 0
    elapsed_s: float = 0.0


class Backtest:
    """Feed parsed events in the order they were read; :meth:`finish` gives the result."""

    def __init__(
        self,
        combinations: list[Combination],
        *,
        partitions: int,
        ttl_ms: int,
        lag_ms: int,
        models: set[str] | None = None,
        start_ms: int | None = None,
        end_ms: int | None = None,
        detected_at: datetime | None = None,
    ) -> None:
        self.combinations = combinations
        self.partitions = partitions
        self.lag_ms = lag_ms
        self.only = models
        self.detected_at = detected_at or datetime.now(tz=UTC)
        self.joiners = [
            Joiner({}, ttl_ms=ttl_ms, task_for=self._task_for) for _ in range(partitions)
        ]
        self.tracks: list[dict[str, ModelTrack]] = [{} for _ in combinations]
        self.held: set[str] = set()
        self.models: dict[str, ModelSummary] = {}
        self.alerts: dict[str, list[dict[str, Any]]] = {c.name: [] for c in combinations}
        self.source_wm: dict[tuple[str, int], int] = {}
        self.result = BacktestResult(start_ms, end_ms, combinations, self.models, self.alerts)

    def _task_for(self, model_id: str) -> Any:
        return self.combinations[0].settings.for_model(model_id).task

    def _summary(self, model_id: str) -> ModelSummary:
        summary = self.models.get(model_id)
        if summary is None:
            summary = self.models[model_id] = ModelSummary(model_id)
        return summary

    # --- input ----------------------------------------------------------------------------

    def predictions(self, source: str, partition: int, preds: list[Prediction]) -> None:
        mine = preds if self.only is None else [p for p in preds if p.model_id in self.only]
        homes = partitions_for([p.prediction_id for p in mine], self.partitions)
        self.result.events += len(mine)
        for p, home in zip(mine, homes, strict=True):
            s = self._summary(p.model_id)
            s.first_ms = p.timestamp_ms if s.first_ms is None else min(s.first_ms, p.timestamp_ms)
            s.last_ms = p.timestamp_ms if s.last_ms is None else max(s.last_ms, p.timestamp_ms)
            s.coverage.setdefault(p.timestamp_ms // HOUR_MS, [0, 0])[0] += 1
            if (o := self.joiners[home].add_prediction(p)) is not None:
                self._outcome(o)
        self._read_up_to(source, partition, preds)

    def labels(self, source: str, partition: int, labels: list[GroundTruth]) -> None:
        homes = partitions_for([g.prediction_id for g in labels], self.partitions)
        self.result.events += len(labels)
        for g, home in zip(labels, homes, strict=True):
            if (o := self.joiners[home].add_label(g)) is not None:
                if self.only is None or o.model_id in self.only:
                    self._outcome(o)
        self._read_up_to(source, partition, labels)

    def _read_up_to(self, source: str, partition: int, events: list[Any]) -> None:
        if events:
            newest = max(e.timestamp_ms for e in events)
            key = (source, partition)
            if newest > self.source_wm.get(key, -(2**63)):
                self.source_wm[key] = newest

    def _outcome(self, o: Outcome) -> None:
        s = self._summary(o.model_id)
        s.joined += 1
        s.errors.setdefault(o.completed_ms // HOUR_MS, [0, 0.0])
        bin_ = s.errors[o.completed_ms // HOUR_MS]
        bin_[0] += 1
        bin_[1] += o.error
        s.coverage.setdefault(o.event_time_ms // HOUR_MS, [0, 0])[1] += 1
        for combo, tracks in zip(self.combinations, self.tracks, strict=True):
            track = tracks.get(o.model_id)
            if track is None:
                config = combo.settings.for_model(o.model_id)
                track = tracks[o.model_id] = ModelTrack(o.model_id, config, lag_ms=self.lag_ms)
            track.push(o.completed_ms, o.prediction_id, o.error, o.model_version)
        self.held.add(o.model_id)

    # --- release --------------------------------------------------------------------------

    def watermark(self, sources: int) -> int | None:
        """The oldest newest-event-time over all ``sources`` source partitions, minus the
        lag; None until each has delivered something (as the live worker waits)."""
        if len(self.source_wm) < sources:
            return None
        return min(self.source_wm.values()) - self.lag_ms

    def release(self, upto: int | None) -> None:
        """Run outcomes older than ``upto`` through the detectors (None: everything)."""
        for model_id in list(self.held):
            pending = False
            for combo, tracks in zip(self.combinations, self.tracks, strict=True):
                track = tracks[model_id]
                found = track.flush() if upto is None else track.release(upto)
                self._record(combo, track, found)
                pending = pending or track.pending > 0
            if not pending:
                self.held.discard(model_id)

    def _record(self, combo: Combination, track: ModelTrack, found: list[Detection]) -> None:
        for d in found:
            self.alerts[combo.name].append(
                build_alert(
                    d.change,
                    model_id=track.model_id,
                    model_version=d.model_version,
                    detected_at=self.detected_at,
                    config_fingerprint=track.config.fingerprint(),
                )
            )

    def finish(self) -> BacktestResult:
        self.release(None)
        # the join feeds every combination the same outcomes: count them once
        first = self.tracks[0] if self.tracks else {}
        self.result.late_outcomes = sum(t.sequencer.late for t in first.values())
        for joiner in self.joiners:
            stats = joiner.drain_stats()
            for model, n in stats.predictions.items():
                if model in self.models:
                    self.models[model].predictions += n
            for model, n in stats.expired_predictions.items():
                if model in self.models:
                    self.models[model].expired_predictions += n
            for model, n in stats.unscorable.items():
                if model in self.models:
                    self.models[model].unscorable += n
        return self.result


def hourly(errors: dict[int, list[float]]) -> list[tuple[int, float, int]]:
    """(hour start ms, error rate, outcomes) sorted by time, for tables and plots."""
    return [
        (hour * HOUR_MS, total / n if n else 0.0, int(n))
        for hour, (n, total) in sorted(errors.items())
    ]
