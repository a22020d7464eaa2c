"""Backtests: the live engine, fed the records of a time range, with per-model summaries.

A :class:`Backtest` drives the engine's join and detect steps in memory
(:class:`~streams.engine.local.LocalTopology`): the same parsing, routing, watermarks and
canonical release order as the live worker, so with no late outcomes the same records give
the same detections at the same outcome indices, and replayed alerts carry the live
alert_ids. Nothing about routing, watermarks or tracks lives here.

Several detector configurations (a sweep) share one pass: the join runs once and every
configuration gets its own detect steps. State is what the join holds pending plus one
track per model and configuration, and per model a bounded series for plots
(:class:`TimeBins`); outcomes are not kept.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from detectors.config import DetectorSettings, Task, apply_overrides
from streams.contract.events import Outcome, Prediction
from streams.engine.join_step import InputRecord
from streams.engine.local import LocalTopology
from streams.engine.rules import InputRules

__all__ = [
    "Backtest",
    "BacktestResult",
    "Combination",
    "ModelSummary",
    "TimeBins",
    "expand_sweeps",
]

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000
WIDTHS_MS = (
    MINUTE_MS,
    5 * MINUTE_MS,
    15 * MINUTE_MS,
    30 * MINUTE_MS,
    HOUR_MS,
    3 * HOUR_MS,
    6 * HOUR_MS,
    12 * HOUR_MS,
    DAY_MS,
    7 * DAY_MS,
)
"""Bin widths, each dividing the next, so bins of one width merge exactly into the next."""
MAX_BINS = 2048
"""Bins a model's series may span before its width coarsens: memory per model is bounded
whatever the range, and a week still has 5-minute bins."""
PREDICTIONS, JOINED, ERROR_SUM, ERROR_SQUARES = range(4)


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


class TimeBins:
    """Predictions and their outcomes counted by the prediction's event time.

    One clock for error rate and label coverage: a bin holds the predictions made in it,
    how many got a label, and the sum and sum of squares of their errors (enough for a
    mean and its uncertainty). Binned by prediction time, a degradation shows where the
    model started to go wrong, not where its labels happened to arrive. The width starts
    at a minute and coarsens along :data:`WIDTHS_MS` when the bins would span more than
    :data:`MAX_BINS`."""

    __slots__ = ("bins", "hi", "lo", "width_ms")

    def __init__(self) -> None:
        self.width_ms = WIDTHS_MS[0]
        # bin index (event time // width_ms) -> [predictions, joined, error sum, squares]
        self.bins: dict[int, list[float]] = {}
        self.lo = self.hi = 0  # the lowest and highest index held (when bins exist)

    def slot(self, event_ms: int) -> list[float]:
        """The counters of the bin holding ``event_ms`` (made, coarsening if need be)."""
        key = event_ms // self.width_ms
        counters = self.bins.get(key)
        if counters is not None:
            return counters
        if not self.bins:
            self.lo = self.hi = key
        else:
            self.lo, self.hi = min(self.lo, key), max(self.hi, key)
            while self.hi - self.lo >= MAX_BINS and self.width_ms != WIDTHS_MS[-1]:
                self._coarsen()
            key = event_ms // self.width_ms
            counters = self.bins.get(key)
            if counters is not None:
                return counters
        counters = self.bins[key] = [0, 0, 0.0, 0.0]
        return counters

    def _coarsen(self) -> None:
        old = self.width_ms
        new = self.width_ms = WIDTHS_MS[WIDTHS_MS.index(old) + 1]
        merged: dict[int, list[float]] = {}
        for key, counters in self.bins.items():
            into = merged.get(key * old // new)
            if into is None:
                merged[key * old // new] = counters
            else:
                for i, value in enumerate(counters):
                    into[i] += value
        self.bins = merged
        self.lo, self.hi = self.lo * old // new, self.hi * old // new

    def rows(self) -> list[tuple[int, int, int, float, float]]:
        """(bin start ms, predictions, joined, error sum, error squares), by time."""
        width = self.width_ms
        return [
            (key * width, int(c[PREDICTIONS]), int(c[JOINED]), c[ERROR_SUM], c[ERROR_SQUARES])
            for key, c in sorted(self.bins.items())
        ]


@dataclass
class ModelSummary:
    """Per model: what came in, what joined, and a series for plots."""

    model_id: str
    predictions: int = 0
    joined: int = 0
    expired_predictions: int = 0
    unscorable: int = 0
    first_ms: int | None = None
    last_ms: int | None = None
    series: TimeBins = field(default_factory=TimeBins)

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
    events: int = 0  # valid events read: the chosen models' predictions, every label
    late_outcomes: int = 0
    dead_letters: int = 0  # what the live worker would have dead-lettered
    elapsed_s: float = 0.0
    dead_letter_reasons: dict[str, int] = field(default_factory=dict)  # reason -> count


class Backtest:
    """:meth:`feed` the records read, in offset order per partition; :meth:`finish` gives
    the result. ``models`` restricts detections and summaries to those models."""

    def __init__(
        self,
        combinations: list[Combination],
        *,
        partitions: int,
        ttl_ms: int,
        rules: InputRules,
        models: set[str] | None = None,
        start_ms: int | None = None,
        end_ms: int | None = None,
        detected_at: datetime | None = None,
    ) -> None:
        self.combinations = combinations
        self.only = models
        self.detected_at = detected_at or datetime.now(tz=UTC)
        self.models: dict[str, ModelSummary] = {}
        self.result = BacktestResult(start_ms, end_ms, combinations, self.models, {})
        self.topology = LocalTopology(
            partitions,
            detectors=[c.settings for c in combinations],
            ttl_ms=ttl_ms,
            rules=rules,
            task_for=self._task_for,
            models=models,
            on_predictions=self._predictions,
            on_outcomes=self._outcomes,
        )

    def _task_for(self, model_id: str) -> Task | None:
        if not self.combinations:
            return None
        return self.combinations[0].settings.for_model(model_id).task

    def _summary(self, model_id: str) -> ModelSummary:
        summary = self.models.get(model_id)
        if summary is None:
            summary = self.models[model_id] = ModelSummary(model_id)
        return summary

    def feed(self, records: Sequence[InputRecord]) -> None:
        """Records of ``predictions`` and ``ground-truth`` as read (one getmany, say)."""
        self.topology.feed(records)

    def _predictions(self, preds: list[Prediction]) -> None:
        only = self.only
        models = self.models
        seen = 0
        for p in preds:
            model_id = p.model_id
            if only is not None and model_id not in only:
                continue
            seen += 1
            s = models.get(model_id) or self._summary(model_id)
            ts = p.timestamp_ms
            if s.first_ms is None or ts < s.first_ms:
                s.first_ms = ts
            if s.last_ms is None or ts > s.last_ms:
                s.last_ms = ts
            series = s.series
            counters = series.bins.get(ts // series.width_ms) or series.slot(ts)
            counters[0] += 1  # PREDICTIONS
        self.result.events += seen

    def _outcomes(self, outcomes: Sequence[Outcome]) -> None:
        model_id = outcomes[0].model_id  # a join step groups outcomes by model
        if self.only is not None and model_id not in self.only:
            return
        s = self._summary(model_id)
        s.joined += len(outcomes)
        series = s.series
        for o in outcomes:
            te, error = o.event_time_ms, o.error
            counters = series.bins.get(te // series.width_ms) or series.slot(te)
            counters[1] += 1  # JOINED
            counters[2] += error  # ERROR_SUM
            counters[3] += error * error  # ERROR_SQUARES

    def finish(self) -> BacktestResult:
        """Release everything held and sum up (call once, after the last :meth:`feed`)."""
        topology = self.topology
        topology.finish()
        result = self.result
        result.alerts = {
            c.name: topology.alerts(i, self.detected_at) for i, c in enumerate(self.combinations)
        }
        result.late_outcomes = topology.late_outcomes
        result.dead_letters = sum(topology.dead_letters.values())
        result.dead_letter_reasons = dict(topology.dead_letters)
        stats = topology.join_stats()
        result.events += stats.labels + stats.duplicate_labels
        for summary in self.models.values():
            model = summary.model_id
            summary.predictions += stats.predictions[model]
            summary.expired_predictions += stats.expired_predictions[model]
            summary.unscorable += stats.unscorable[model]
        return result
