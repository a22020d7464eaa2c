"""What the worker tells Prometheus beyond plain counters: per-model health gauges kept
within the model cap, consumer lag per partition, and whether Redis answers.

The batch path only hands references over (:meth:`ModelGauges.note` is two dict updates);
the gauges are set by a timer every few seconds, so a batch touching 10,000 models does
not pay 30,000 gauge updates.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any

from streams.metrics import (
    CONSUMER_LAG,
    MODEL_ERROR_RATE,
    MODEL_LABEL_COVERAGE,
    MODEL_LAST_EVENT,
    REDIS_UP,
    forget_model,
)
from streams.store.breaker import RedisBreaker

__all__ = ["GaugedBreaker", "LagGauges", "ModelGauges"]


class GaugedBreaker(RedisBreaker):
    """The worker's Redis breaker, which also sets ``watchkeeper_redis_up``: every Redis
    call of the worker reports its success or failure here. ``observed_at`` (monotonic)
    says when one last did."""

    observed_at: float | None = None

    def failed(self, what: str, exc: BaseException) -> None:
        super().failed(what, exc)
        REDIS_UP.set(0)
        self.observed_at = time.monotonic()

    def succeeded(self) -> None:
        super().succeeded()
        REDIS_UP.set(1)
        self.observed_at = time.monotonic()


class _Shown:
    """A model with series: its partition, newest event time, and its gauges' children
    (kept: looking a child up by label costs more than setting it)."""

    __slots__ = ("at_ms", "coverage", "error", "last", "partition")

    def __init__(self, model_id: str) -> None:
        self.partition = -1
        self.at_ms = 0
        self.error = MODEL_ERROR_RATE.labels(model_id)
        self.coverage: Any = None  # created with the first coverage a snapshot has
        self.last: Any = None  # and the first event time


class ModelGauges:
    """Per-model gauges of the models whose detectors this worker holds.

    At most ``cap`` models (the worker's ``max_models``) have series: past it the model
    updated longest ago loses them. A model whose partition moves to another worker, or
    unseen for ``retention_ms`` of event time behind the newest one, loses them too, so
    two workers never export the same model and retired models go away.
    """

    def __init__(self, cap: int, retention_ms: int) -> None:
        self.cap = cap
        self.retention_ms = retention_ms
        self._snapshots: dict[str, Mapping[str, Any]] = {}  # noted since the last publish
        self._partitions: dict[str, int] = {}
        self._shown: OrderedDict[str, _Shown] = OrderedDict()  # least recently updated first

    def note(
        self, snapshots: Mapping[str, Mapping[str, Any]], partitions: Mapping[str, int]
    ) -> None:
        """A batch's newest snapshots and each model's partition (references only)."""
        self._snapshots.update(snapshots)
        self._partitions.update(partitions)

    @property
    def shown(self) -> list[str]:
        return list(self._shown)

    def publish(self) -> None:
        """Set the gauges of the models noted since the last call; keep within the cap."""
        snapshots, self._snapshots = self._snapshots, {}
        partitions, self._partitions = self._partitions, {}
        shown = self._shown
        for model_id, snap in snapshots.items():
            model = shown.get(model_id)
            if model is None:
                model = shown[model_id] = _Shown(model_id)
            else:
                shown.move_to_end(model_id)
            model.partition = partitions.get(model_id, model.partition)
            model.error.set(float(snap.get("recent_error_rate", 0.0)))
            coverage = snap.get("label_coverage")
            if coverage is not None:
                if model.coverage is None:
                    model.coverage = MODEL_LABEL_COVERAGE.labels(model_id)
                model.coverage.set(float(coverage))
            at_ms = int(snap.get("last_prediction_ms") or snap.get("last_event_time_ms") or 0)
            if at_ms > 0:
                if model.last is None:
                    model.last = MODEL_LAST_EVENT.labels(model_id)
                model.last.set(at_ms / 1000)
                model.at_ms = at_ms
        newest = max((m.at_ms for m in shown.values()), default=0)
        floor = newest - self.retention_ms
        stale = [model_id for model_id, m in shown.items() if 0 < m.at_ms < floor]
        excess = len(shown) - len(stale) - self.cap
        if excess > 0:  # the least recently updated first
            leaving = set(stale)
            stale += [m for m in shown if m not in leaving][:excess]
        self._forget(stale)

    def drop_partitions(self, partitions: Iterable[int]) -> None:
        """Forget the models of partitions this worker no longer holds."""
        gone = set(partitions)
        if not gone:
            return
        self._forget([model_id for model_id, m in self._shown.items() if m.partition in gone])
        for model_id in [m for m, p in self._partitions.items() if p in gone]:
            self._partitions.pop(model_id, None)
            self._snapshots.pop(model_id, None)

    def _forget(self, models: list[str]) -> None:
        for model_id in models:
            self._shown.pop(model_id, None)
        forget_model(models)


class LagGauges:
    """``watchkeeper_consumer_lag_messages`` of the partitions assigned now; the series of
    a partition that moved away are removed."""

    def __init__(self) -> None:
        self._shown: set[tuple[str, str]] = set()

    def publish(self, lags: Mapping[tuple[str, int], int]) -> None:
        now = set()
        for (topic, partition), lag in lags.items():
            labels = (topic, str(partition))
            CONSUMER_LAG.labels(*labels).set(max(0, lag))
            now.add(labels)
        for labels in self._shown - now:
            try:
                CONSUMER_LAG.remove(*labels)
            except KeyError:
                pass
        self._shown = now
