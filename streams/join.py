"""The prediction ⋈ ground-truth join as a pure state machine over a key-value store.

One :class:`Joiner` serves one partition. Its store maps prediction_id to one compact
entry, so a Faust table (through a changelog-writing view) or a plain dict can back it:

    ("P", model_id, model_version, ts_ms, prediction)   prediction waiting for its label
    ("L", label, ts_ms)                                  label waiting for its prediction
    ("D", ts_ms)                                         joined; kept for the TTL so that
                                                         duplicates stay idempotent

Time is event time only. The watermark is the largest prediction timestamp seen; an
entry whose timestamp is more than ``ttl_ms`` behind it expires (a prediction at ``t``
still joins a label that arrives while the watermark is ``t + ttl_ms``). Nothing here
reads a clock, so the same events in the same order always give the same outcomes, and
without expiry any interleaving, duplication or lateness gives the same set.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable, Iterable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from detectors.config import Task
from detectors.task import error_of, infer_task

from .records import GroundTruth, Outcome, Prediction, Scalar

__all__ = ["JoinStats", "Joiner", "Unscorable"]

Entry = tuple[Any, ...]
TaskLookup = Callable[[str], Task | None]


@dataclass(frozen=True, slots=True)
class Unscorable:
    """A joined pair whose error cannot be computed (e.g. a text label for a regression)."""

    prediction_id: str
    model_id: str
    prediction: Scalar
    label: Scalar
    detail: str


@dataclass
class JoinStats:
    """Counters since the last drain; everything the join drops is counted here."""

    predictions: Counter[str] = field(default_factory=Counter)  # per model
    joined: Counter[str] = field(default_factory=Counter)  # per model
    expired_predictions: Counter[str] = field(default_factory=Counter)  # per model, unlabelled
    unscorable: Counter[str] = field(default_factory=Counter)  # per model
    labels: int = 0
    duplicate_predictions: int = 0
    duplicate_labels: int = 0
    expired_labels: int = 0  # labels whose prediction never came within the TTL

    def totals(self) -> dict[str, int]:
        return {
            "predictions": sum(self.predictions.values()),
            "labels": self.labels,
            "joined": sum(self.joined.values()),
            "duplicate_predictions": self.duplicate_predictions,
            "duplicate_labels": self.duplicate_labels,
            "expired_predictions": sum(self.expired_predictions.values()),
            "expired_labels": self.expired_labels,
            "unscorable": sum(self.unscorable.values()),
        }


def _entry_ts(entry: Entry) -> int:
    return int(entry[3] if entry[0] == "P" else entry[-1])


def _no_task(_model_id: str) -> Task | None:
    return None


class Joiner:
    """Joins predictions and labels of one partition; see the module docstring."""

    def __init__(
        self,
        store: MutableMapping[str, Entry],
        *,
        ttl_ms: int,
        task_for: TaskLookup = _no_task,
    ) -> None:
        if ttl_ms <= 0:
            raise ValueError(f"ttl_ms must be positive, got {ttl_ms}")
        self.store = store
        self.ttl_ms = ttl_ms
        self.task_for = task_for
        self.watermark_ms: int | None = None
        self.stats = JoinStats()
        self.unscorable: list[Unscorable] = []
        self._expiry: list[tuple[int, str]] = []

    def rebuild_index(self, items: Iterable[tuple[str, Entry]] | None = None) -> None:
        """Recreate the expiry index and watermark after the store was restored."""
        self._expiry = []
        watermark = None
        for pid, entry in items if items is not None else self.store.items():
            ts = _entry_ts(entry)
            self._expiry.append((ts + self.ttl_ms, pid))
            if entry[0] in ("P", "D") and (watermark is None or ts > watermark):
                watermark = ts
        heapq.heapify(self._expiry)
        self.watermark_ms = watermark

    def add_prediction(self, p: Prediction) -> Outcome | None:
        """Take a prediction; return the outcome when its label was already waiting."""
        store = self.store
        pid = p.prediction_id
        entry = store.get(pid)
        outcome = None
        if entry is None:
            store[pid] = ("P", p.model_id, p.model_version, p.timestamp_ms, p.prediction)
            heapq.heappush(self._expiry, (p.timestamp_ms + self.ttl_ms, pid))
            self.stats.predictions[p.model_id] += 1
        elif entry[0] == "L":
            self.stats.predictions[p.model_id] += 1
            outcome = self._complete(
                pid, p.model_id, p.model_version, p.timestamp_ms, p.prediction, entry[1], entry[2]
            )
        else:
            self.stats.duplicate_predictions += 1
        self._advance(p.timestamp_ms)
        return outcome

    def add_label(self, g: GroundTruth) -> Outcome | None:
        """Take a label; return the outcome when its prediction was already waiting."""
        store = self.store
        pid = g.prediction_id
        entry = store.get(pid)
        if entry is None:
            store[pid] = ("L", g.label, g.timestamp_ms)
            heapq.heappush(self._expiry, (g.timestamp_ms + self.ttl_ms, pid))
            self.stats.labels += 1
            return None
        if entry[0] == "P":
            self.stats.labels += 1
            _, model_id, version, ts, prediction = entry
            return self._complete(pid, model_id, version, ts, prediction, g.label, g.timestamp_ms)
        self.stats.duplicate_labels += 1
        return None

    def _complete(
        self,
        pid: str,
        model_id: str,
        version: str | None,
        ts_ms: int,
        prediction: Scalar,
        label: Scalar,
        label_ms: int,
    ) -> Outcome | None:
        self.store[pid] = ("D", ts_ms)
        heapq.heappush(self._expiry, (ts_ms + self.ttl_ms, pid))
        task = self.task_for(model_id) or infer_task(prediction, label)
        try:
            error = error_of(task, prediction, label)
        except ValueError as exc:
            self.stats.unscorable[model_id] += 1
            self.unscorable.append(Unscorable(pid, model_id, prediction, label, str(exc)))
            return None
        self.stats.joined[model_id] += 1
        return Outcome(pid, model_id, version, ts_ms, label_ms, prediction, label, error)

    def _advance(self, ts_ms: int) -> None:
        if self.watermark_ms is not None and ts_ms <= self.watermark_ms:
            return
        self.watermark_ms = ts_ms
        limit = ts_ms - self.ttl_ms  # entries with ts < limit are more than ttl behind
        expiry = self._expiry
        store = self.store
        stats = self.stats
        while expiry and expiry[0][0] - self.ttl_ms < limit:
            expire_at, pid = heapq.heappop(expiry)
            entry = store.get(pid)
            if entry is None:
                continue
            kind = entry[0]
            if _entry_ts(entry) + self.ttl_ms != expire_at:
                continue  # stale index entry: the key was re-written since
            del store[pid]
            if kind == "P":
                stats.expired_predictions[entry[1]] += 1
            elif kind == "L":
                stats.expired_labels += 1

    def drain_stats(self) -> JoinStats:
        """Hand over the counters since the last drain and start new ones."""
        stats, self.stats = self.stats, JoinStats()
        return stats

    def drain_unscorable(self) -> list[Unscorable]:
        items, self.unscorable = self.unscorable, []
        return items

    def __len__(self) -> int:
        return len(self.store)

    def __bool__(self) -> bool:
        return True  # a Joiner is never "empty"; len() of a changelogged store is O(n)
