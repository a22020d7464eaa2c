"""The prediction ⋈ ground-truth join as a pure state machine over a key-value store.

One :class:`Joiner` serves one partition. Its store maps prediction_id to one compact
entry, so a Faust table (through a changelog-writing view) or a plain dict can back it:

    [model_id, model_version, ts_ms, prediction]   prediction waiting for its label
    (ts_ms, label)                                 label waiting for its prediction
    ts_ms                                          joined; kept for the TTL so that
                                                   duplicates stay idempotent

Entries are untagged lists, tuples and ints, told apart by type, because a worker holds
a million pending predictions: a tag, a wrapper class or a second copy of the timestamp
would cost bytes on every one of them (a class with a custom pickle would also make each
changelog write several times slower). The parser interns model_id and model_version, so
entries share them. Unpickling does not intern, so a pending prediction is a list:
:meth:`Joiner.rebuild_index` swaps the strings of restored entries for shared ones in
place, without writing the store (which would send every entry to the changelog again).
It also upgrades stores written in the tagged format of earlier versions (``("P", ...)``,
``("L", ...)``, ``("D", ts)``).

Time is event time only. The watermark is the largest prediction timestamp seen; an
entry whose timestamp is more than ``ttl_ms`` behind it expires (a prediction at ``t``
still joins a label that arrives while the watermark is ``t + ttl_ms``). Nothing here
reads a clock, so the same events in the same order always give the same outcomes, and
without expiry any interleaving, duplication or lateness gives the same set.

The expiry index costs one list slot per entry (a heap of ``(expire_at, key)`` tuples
cost 96 bytes): keys are filed in buckets of ``ttl_ms / 256`` of event time, referencing
the store's own key strings. Buckets wholly older than the TTL expire at once; the one
bucket the expiry boundary falls in (about 1/256 of a steady stream's keys) is turned into
a heap of exact timestamps, so expiry stays exact to the millisecond. A key whose entry was
re-written keeps its old references; each is checked against the entry's current timestamp
when it comes up, so a stale reference never expires anything early.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable, Iterable, MutableMapping
from dataclasses import dataclass, field, fields
from sys import intern as _intern
from typing import Any

from detectors.config import Task
from detectors.task import error_of, infer_task
from streams.contract.events import GroundTruth, Outcome, Prediction, Scalar, new_outcome

__all__ = ["JoinStats", "Joiner", "Unscorable"]

Entry = list[Any] | tuple[Any, ...] | int
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

    def add(self, other: JoinStats) -> None:
        """Add ``other``'s counts to these (a worker sums batches between writes)."""
        for f in fields(self):
            mine = getattr(self, f.name)
            if isinstance(mine, Counter):
                mine.update(getattr(other, f.name))
            else:
                setattr(self, f.name, mine + getattr(other, f.name))

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


_BUCKETS_PER_TTL = 256
"""Expiry buckets per TTL: more means a smaller exact-timestamp heap at the boundary."""


def _entry_ts(entry: Entry) -> int:
    if isinstance(entry, int):
        return entry  # joined: the entry is its timestamp
    ts: int = entry[2] if type(entry) is list else entry[0]
    return ts


def _shared(text: Any) -> Any:
    return _intern(text) if type(text) is str else text


def _compact(pending: list[Any]) -> None:
    """Make a restored pending prediction as small as a live one, in place: shared model
    strings, and an item array of exactly four (unpickling over-allocates it to eight;
    appends after a clear grow it to four)."""
    model_id, version, ts, prediction = pending
    pending.clear()
    append = pending.append
    append(_shared(model_id))
    append(_shared(version))
    append(ts)
    append(prediction)


def _upgraded(entry: Any) -> Entry | None:
    """The current form of an entry written in the earlier tagged format, else None."""
    if type(entry) is not tuple or len(entry) not in (2, 3, 5) or type(entry[0]) is not str:
        return None  # current entries: a list, an int, or a 2-tuple led by an int
    tag = entry[0]
    if tag == "P" and len(entry) == 5:
        return list(entry[1:])
    if tag == "L" and len(entry) == 3:
        return (entry[2], entry[1])
    if tag == "D" and len(entry) == 2:
        return entry[1]  # type: ignore[no-any-return]
    raise ValueError(f"not a join entry: {entry!r}")


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
        self.accepted: list[Prediction] | None = None  # new predictions, when collected
        self._grain = max(1, ttl_ms // _BUCKETS_PER_TTL)  # event-time width of a bucket
        self._buckets: dict[int, list[str]] = {}  # ts_ms // grain -> keys (store's own str)
        self._bucket_ids: list[int] = []  # heap of the keys of _buckets
        self._edge_id: int | None = None  # the bucket the expiry boundary is in ...
        self._edge: list[tuple[int, str]] = []  # ... as a heap of (ts_ms, key)

    def rebuild_index(self, items: Iterable[tuple[str, Entry]] | None = None) -> None:
        """Recreate the expiry index and watermark after the store was restored.

        Restored pending predictions get the shared model strings back (in place: the
        stored value does not change). Entries in the tagged format of earlier versions
        are rewritten in the current one (a changelogged store records each once more).
        """
        self._buckets, self._bucket_ids, self._edge_id, self._edge = {}, [], None, []
        watermark = None
        upgrades: list[tuple[str, Entry]] = []
        for pid, stored in items if items is not None else self.store.items():
            entry = _upgraded(stored)
            if entry is None:
                entry = stored
            else:
                upgrades.append((pid, entry))
            if type(entry) is list:
                _compact(entry)
            ts = _entry_ts(entry)
            self._index(pid, ts)
            if type(entry) is not tuple and (watermark is None or ts > watermark):
                watermark = ts
        for pid, entry in upgrades:
            self.store[pid] = entry
        self.watermark_ms = watermark

    def add_prediction(self, p: Prediction) -> Outcome | None:
        """Take a prediction; return the outcome when its label was already waiting."""
        store = self.store
        pid = p.prediction_id
        ts = p.timestamp_ms
        entry = store.get(pid)
        outcome = None
        if entry is None:
            store[pid] = [p.model_id, p.model_version, ts, p.prediction]
            self._index(pid, ts)
            self.stats.predictions[p.model_id] += 1
            if self.accepted is not None:
                self.accepted.append(p)
        elif type(entry) is tuple:  # its label is waiting
            self.stats.predictions[p.model_id] += 1
            if self.accepted is not None:
                self.accepted.append(p)
            label_ms, label = entry
            outcome = self._complete(
                pid, p.model_id, p.model_version, ts, p.prediction, label, label_ms, label_ms
            )
        else:
            self.stats.duplicate_predictions += 1
        self._advance(ts)
        return outcome

    def add_label(self, g: GroundTruth) -> Outcome | None:
        """Take a label; return the outcome when its prediction was already waiting."""
        store = self.store
        pid = g.prediction_id
        entry = store.get(pid)
        if entry is None:
            store[pid] = (g.timestamp_ms, g.label)
            self._index(pid, g.timestamp_ms)
            self.stats.labels += 1
            return None
        if type(entry) is list:  # its prediction is waiting
            self.stats.labels += 1
            model_id, version, ts, prediction = entry
            return self._complete(
                pid, model_id, version, ts, prediction, g.label, g.timestamp_ms, ts
            )
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
        indexed_ms: int,
    ) -> Outcome | None:
        """Mark ``pid`` joined and score the pair; ``indexed_ms`` is the timestamp the key
        is indexed under now (a reference that covers the new entry is not added again)."""
        self.store[pid] = ts_ms
        if indexed_ms != ts_ms:
            bucket = ts_ms // self._grain
            if bucket != indexed_ms // self._grain or bucket == self._edge_id:
                self._index(pid, ts_ms)
        task = self.task_for(model_id) or infer_task(prediction, label)
        try:
            error = error_of(task, prediction, label)
        except ValueError as exc:
            self.stats.unscorable[model_id] += 1
            self.unscorable.append(Unscorable(pid, model_id, prediction, label, str(exc)))
            return None
        self.stats.joined[model_id] += 1
        return new_outcome(pid, model_id, version, ts_ms, label_ms, prediction, label, error)

    def _index(self, pid: str, ts_ms: int) -> None:
        bucket = ts_ms // self._grain
        if bucket == self._edge_id:
            heapq.heappush(self._edge, (ts_ms, pid))
            return
        keys = self._buckets.get(bucket)
        if keys is None:
            keys = self._buckets[bucket] = []
            heapq.heappush(self._bucket_ids, bucket)
        keys.append(pid)

    def _advance(self, ts_ms: int) -> None:
        if self.watermark_ms is not None and ts_ms <= self.watermark_ms:
            return
        self.watermark_ms = ts_ms
        limit = ts_ms - self.ttl_ms  # entries with ts < limit are more than ttl behind
        edge_id = limit // self._grain  # buckets below it lie wholly below limit
        if edge_id != self._edge_id:  # it only moves forward, with the watermark
            self._move_edge(edge_id)
        elif self._bucket_ids and self._bucket_ids[0] < edge_id:
            self._expire_buckets(edge_id)  # keys that arrived already expired
        edge = self._edge
        store = self.store
        while edge and edge[0][0] < limit:
            ts, pid = heapq.heappop(edge)
            entry = store.get(pid)
            if entry is not None and _entry_ts(entry) == ts:  # else stale: re-written since
                self._expire(pid, entry)

    def _move_edge(self, edge_id: int) -> None:
        """Expire everything below bucket ``edge_id`` and make it the exact heap."""
        store = self.store
        for ts, pid in self._edge:  # the previous edge bucket is now wholly expired
            entry = store.get(pid)
            if entry is not None and _entry_ts(entry) == ts:
                self._expire(pid, entry)
        self._expire_buckets(edge_id)
        heap: list[tuple[int, str]] = []
        keys = self._buckets.pop(edge_id, None)
        if keys is not None:
            heapq.heappop(self._bucket_ids)  # edge_id: the smallest one left
            grain = self._grain
            for pid in keys:
                entry = store.get(pid)
                if entry is not None and (ts := _entry_ts(entry)) // grain == edge_id:
                    heap.append((ts, pid))
            heapq.heapify(heap)
        self._edge_id = edge_id
        self._edge = heap

    def _expire_buckets(self, below: int) -> None:
        ids = self._bucket_ids
        store = self.store
        grain = self._grain
        while ids and ids[0] < below:
            bucket = heapq.heappop(ids)
            for pid in self._buckets.pop(bucket):
                entry = store.get(pid)
                # a key re-written into another bucket is expired by that bucket's reference
                if entry is not None and _entry_ts(entry) // grain == bucket:
                    self._expire(pid, entry)

    def _expire(self, pid: str, entry: Entry) -> None:
        del self.store[pid]
        if type(entry) is list:
            self.stats.expired_predictions[entry[0]] += 1
        elif type(entry) is tuple:
            self.stats.expired_labels += 1

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
