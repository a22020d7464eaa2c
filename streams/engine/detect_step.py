"""One outcomes partition as a step: joined outcomes and join marks in, detections out.

Each model's outcomes are held by its :class:`~detectors.track.ModelTrack` until every
join partition has reported a watermark past them (minus ``lag_ms``); below that bound
no outcome can still arrive, so they reach the detectors in canonical order (completion
time, then prediction_id) whatever the order of fetches, routes and restarts. That is
what makes a detection, and its alert id, a property of the events.

Exactly once. A join batch that crashed after publishing its outcomes but before its
state was checkpointed is processed again, and publishes them again, perhaps in batches
cut differently. Each outcomes message carries the join's input offsets at the end of
the batch that made it; the step keeps the prediction ids of the batches not yet known
to be durable, under those offsets, and drops an outcome seen before. A join mark of
batch ``s`` following one of batch ``s - 1`` proves batch ``s - 1`` durable, so the ids of
every batch at or below its offsets are forgotten. (The offsets travel with the outcomes,
not only on the mark: a crash may publish a batch's outcomes and lose its mark.)

Pure: no Kafka, asyncio, Redis or clock.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from detectors.config import DetectorSettings
from detectors.signal import Signal
from detectors.track import Detection, ModelTrack
from streams.contract.alerts import build_alert, build_signal_alert
from streams.contract.internal import JoinedOutcomes, JoinMark
from streams.engine.series import SERIES_BUCKET_MS

__all__ = ["DetectOutput", "DetectStep", "Found", "FoundSignal", "OutcomesRecord"]


@dataclass(frozen=True, slots=True)
class OutcomesRecord:
    """An ``outcomes`` message, decoded, with where it was read."""

    topic: str
    offset: int
    body: JoinedOutcomes | JoinMark


@dataclass(frozen=True, slots=True)
class Found:
    """A detection of one model, with what its alert needs."""

    model_id: str
    detection: Detection
    config_fingerprint: str


@dataclass(frozen=True, slots=True)
class FoundSignal:
    """A label-free or liveness signal of one model (:mod:`detectors.signals`)."""

    model_id: str
    signal: Signal
    model_version: str | None
    config_fingerprint: str


@dataclass
class DetectOutput:
    """What one batch (or a flush) of a detect step produced."""

    found: list[Found] = field(default_factory=list)
    signals: list[FoundSignal] = field(default_factory=list)
    touched: set[str] = field(default_factory=set)  # models whose state changed
    per_model: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    counts: Counter[str] = field(default_factory=Counter)
    # model -> bucket start (prediction event time, :mod:`streams.engine.series`) ->
    # [predictions, outcomes, error_sum] of the fresh events of this batch: exact history
    series: dict[str, dict[int, list[float]]] = field(default_factory=dict)

    def alerts(self, detected_at: datetime) -> list[dict[str, Any]]:
        """The alert events, in detection order (``detected_at``: the caller's clock):
        the error detectors' first, then the signals'."""
        return [
            build_alert(
                f.detection.change,
                model_id=f.model_id,
                model_version=f.detection.model_version,
                detected_at=detected_at,
                config_fingerprint=f.config_fingerprint,
                versions=f.detection.versions,
            )
            for f in self.found
        ] + [
            build_signal_alert(
                f.signal,
                model_id=f.model_id,
                model_version=f.model_version,
                detected_at=detected_at,
                config_fingerprint=f.config_fingerprint,
            )
            for f in self.signals
        ]


class _Agenda:
    """Models by the watermark at which they next have something due: one entry per
    model at most (its earliest), so a model served every batch does not leave one stale
    entry per batch behind. A visit re-schedules what is still due later."""

    __slots__ = ("heap", "queued")

    def __init__(self) -> None:
        self.heap: list[tuple[int, str]] = []
        self.queued: dict[str, int] = {}  # model -> the time of its entry in the heap

    def add(self, at: int, model_id: str) -> None:
        queued = self.queued.get(model_id)
        if queued is not None and queued <= at:
            return  # its earlier entry comes first; the visit then schedules this one
        self.queued[model_id] = at
        heapq.heappush(self.heap, (at, model_id))

    def due(self, bar: int) -> set[str]:
        """The models due at watermark ``bar``, taken off the agenda."""
        heap, queued = self.heap, self.queued
        out: set[str] = set()
        while heap and heap[0][0] <= bar:
            at, model_id = heapq.heappop(heap)
            if queued.get(model_id) == at:
                del queued[model_id]
                out.add(model_id)
        return out


class _Unconfirmed:
    """Prediction ids (outcomes, or seen predictions: two instances) a join partition
    published in batches not yet known durable."""

    __slots__ = ("batches", "last_offsets", "last_seq")

    def __init__(self) -> None:
        self.batches: list[tuple[dict[str, int], set[str]]] = []  # (offsets at end, ids)
        self.last_seq: int | None = None
        self.last_offsets: dict[str, int] = {}

    def ids(self, offsets: dict[str, int]) -> set[str]:
        """The ids of the batch that ended at ``offsets`` (usually the newest)."""
        for at, ids in reversed(self.batches):
            if at is offsets or at == offsets:
                return ids
        ids = set()
        self.batches.append((offsets, ids))
        return ids

    def fresh(self, offsets: dict[str, int]) -> Callable[[str], bool]:
        """The test for the ids of the batch that ended at ``offsets``: true the first
        time an id is met (it is recorded), false for one a batch not yet known durable
        published before."""
        mine = self.ids(offsets)
        others = [ids for _, ids in self.batches if ids is not mine and ids]
        add = mine.add
        # one test per outcome: the usual cases (no batch or one batch unconfirmed, the
        # one before this) without a generator each
        if not others:

            def fresh(key: str) -> bool:
                if key in mine:
                    return False
                add(key)
                return True

        elif len(others) == 1:
            (other,) = others

            def fresh(key: str) -> bool:
                if key in mine or key in other:
                    return False
                add(key)
                return True

        else:

            def fresh(key: str) -> bool:
                if key in mine or any(key in ids for ids in others):
                    return False
                add(key)
                return True

        return fresh

    def mark(self, m: JoinMark) -> None:
        if self.last_seq is not None and m.seq == self.last_seq + 1:
            durable = self.last_offsets
            self.batches = [
                (at, ids)
                for at, ids in self.batches
                if any(off > durable.get(topic, -1) for topic, off in at.items())
            ]
        self.last_seq = m.seq
        self.last_offsets = m.offsets


class DetectStep:
    """Detection of the models of outcomes partition ``partition``."""

    def __init__(
        self,
        partition: int,
        join_partitions: int,
        *,
        tracks: MutableMapping[str, ModelTrack],
        meta: MutableMapping[str, Any],
        detectors: DetectorSettings,
        lag_ms: int,
    ) -> None:
        self.partition = partition
        self.join_partitions = join_partitions
        self.tracks = tracks
        self.meta = meta
        self.detectors = detectors
        self.lag_ms = lag_ms
        self.held: set[str] = set()  # models with outcomes or predictions waiting
        self._unconfirmed: dict[int, _Unconfirmed] = meta.setdefault("unconfirmed", {})
        self._unconfirmed_seen: dict[int, _Unconfirmed] = meta.setdefault("unconfirmed_seen", {})
        # (watermark, model): when a model has something to decide without new input
        self._due = _Agenda()  # by the outcome watermark: label windows
        self._due_p = _Agenda()  # by the prediction watermark: silences

    def restore(self) -> None:
        """Find the models whose restored tracks still hold outcomes or predictions, or
        have something due."""
        self.held = {m for m, t in self.tracks.items() if t.pending or t.watch.pending}
        self._due, self._due_p = _Agenda(), _Agenda()
        for model_id, track in self.tracks.items():
            self._schedule(model_id, track)

    def bound(self) -> int | None:
        """Outcomes completed before this are final: the oldest join watermark, minus the
        lag. None until every join partition has reported one."""
        marks = [self.meta.get(f"wm:{j}") for j in range(self.join_partitions)]
        if any(m is None for m in marks):
            return None
        return min(marks) - self.lag_ms  # type: ignore[type-var, operator]

    def pbound(self) -> int | None:
        """The same bound over predictions alone: the label-free signals must go on when
        labels stop. Never behind :meth:`bound`."""
        marks = [self.meta.get(f"pwm:{j}") for j in range(self.join_partitions)]
        if any(m is None for m in marks):
            return None
        return min(marks) - self.lag_ms  # type: ignore[type-var, operator]

    def track(self, model_id: str) -> ModelTrack:
        track = self.tracks.get(model_id)
        if track is None:
            config = self.detectors.for_model(model_id)
            track = self.tracks[model_id] = ModelTrack(model_id, config, lag_ms=self.lag_ms)
        return track

    def process(self, records: Sequence[OutcomesRecord]) -> DetectOutput:
        """Apply one batch, then release what the watermark allows."""
        out = DetectOutput()
        meta = self.meta
        offsets: dict[str, int] = meta.setdefault("offsets", {})
        for rec in records:
            if rec.offset <= offsets.get(rec.topic, -1):
                out.counts["redelivered"] += 1
                continue
            offsets[rec.topic] = rec.offset
            body = rec.body
            if isinstance(body, JoinMark):
                self._unconfirmed_of(body.join).mark(body)
                self._unconfirmed_of(body.join, self._unconfirmed_seen).mark(body)
                for name, mark in (
                    (f"wm:{body.join}", body.watermark_ms),
                    (f"pwm:{body.join}", body.pred_watermark_ms),
                ):
                    if mark is not None and mark > meta.get(name, -(2**63)):
                        meta[name] = mark
                continue
            self._push(body, out)
            if body.seen:
                self._see(body, out)
        bound, pbound = self.bound(), self.pbound()
        if bound is None and pbound is None:
            return out
        visit = set(self.held)
        for agenda, bar in ((self._due, bound), (self._due_p, pbound)):
            if bar is not None:
                visit.update(agenda.due(bar))
        for model_id in sorted(visit):
            track = self.tracks.get(model_id)
            if track is None:
                continue
            before = track.pending
            signals = track.signals(pbound)
            found = track.release(bound) if bound is not None else []
            signals += track.finish(bound)
            out.touched.add(model_id)  # its predictions, windows or silence moved on
            self._run(model_id, before, found, out, signals)
            self._schedule(model_id, track)
        return out

    def join_offsets(self) -> dict[int, dict[str, int]] | None:
        """The input offsets (by topic) each join partition had processed at the latest
        of its marks read here; None until every join partition sent one. The end of the
        stream is when each of these is at the end of its partitions."""
        out: dict[int, dict[str, int]] = {}
        for j in range(self.join_partitions):
            u = self._unconfirmed.get(j)
            if u is None or u.last_seq is None:
                return None
            out[j] = u.last_offsets
        return out

    def newest_held_ms(self) -> int | None:
        """The newest event time among the outcomes and predictions held."""
        newest = None
        for model_id in self.held:
            track = self.tracks[model_id]
            for seq in (track.sequencer, track.watch.sequencer):
                if len(seq) and (t := seq.max_seen_ms) is not None:
                    newest = t if newest is None else max(newest, t)
        return newest

    def flush(self) -> DetectOutput:
        """Release everything held (the end of a replay, or a stream gone idle)."""
        out = DetectOutput()
        for model_id in sorted(self.held):
            track = self.tracks[model_id]
            before = track.pending
            signals = track.flush_signals()
            found = track.flush()
            signals += track.finish(None)
            self._run(model_id, before, found, out, signals)
            self._schedule(model_id, track)  # a live stream may go on after an idle flush
        return out

    def _schedule(self, model_id: str, track: ModelTrack) -> None:
        """Remember when ``model_id`` next has something due (a visit re-checks)."""
        due, due_p = track.due()
        if due is not None:
            self._due.add(due, model_id)
        if due_p is not None:
            self._due_p.add(due_p, model_id)

    def _unconfirmed_of(
        self, join: int, table: dict[int, _Unconfirmed] | None = None
    ) -> _Unconfirmed:
        table = self._unconfirmed if table is None else table
        u = table.get(join)
        if u is None:
            u = table[join] = _Unconfirmed()
        return u

    def _see(self, body: JoinedOutcomes, out: DetectOutput) -> None:
        """Hold the prediction events of ``body`` for the label-free signals, dropping
        those a re-processed join batch published before (as for outcomes)."""
        seen = body.seen
        if not seen:
            return
        fresh = self._unconfirmed_of(body.join, self._unconfirmed_seen).fresh(body.offsets)
        model_id = body.model_id  # one model per message
        track = self.track(model_id)
        self.held.add(model_id)
        out.touched.add(model_id)
        push = track.watch.sequencer.push
        buckets = out.series.get(model_id)
        if buckets is None:
            buckets = out.series[model_id] = {}
        width = SERIES_BUCKET_MS
        lo = hi = 0  # the current bucket (events come mostly in time order): its counts
        counts: list[float] = []
        duplicates = 0
        for s in seen:
            key = s.key
            if not fresh(key):
                duplicates += 1
                continue
            at = s.event_time_ms
            if s.valid:
                if not lo <= at < hi:
                    lo = at - at % width
                    hi = lo + width
                    counts = buckets.get(lo) or buckets.setdefault(lo, [0, 0, 0.0])
                counts[0] += 1
                if s.features is None:
                    push(at, key, 0.0, (s.prediction, s.score, s.model_version))
                else:  # the input signals' too (detectors.features)
                    push(at, key, 0.0, (s.prediction, s.score, s.model_version, s.features))
            else:
                push(at, key, 0.0, None)
        if duplicates:
            out.counts["duplicate_seen"] += duplicates

    def _push(self, body: JoinedOutcomes, out: DetectOutput) -> None:
        fresh = self._unconfirmed_of(body.join).fresh(body.offsets)
        track: ModelTrack | None = None
        pushed = late = 0  # of the current track
        series = out.series
        buckets: dict[int, list[float]] = {}
        width = SERIES_BUCKET_MS
        lo = hi = 0  # the current bucket, as in _see
        counts: list[float] = []
        for o in body.outcomes:  # one model as a rule: counted per run of one model
            pid = o.prediction_id
            if not fresh(pid):
                out.counts["duplicate_outcomes"] += 1
                continue
            if track is None or track.model_id != o.model_id:
                if track is not None:
                    self._count(track, pushed, late, out)
                track = self.track(o.model_id)
                pushed, late = 0, track.sequencer.late
                buckets = series.setdefault(o.model_id, {})
                lo = hi = 0
            at, error, label_at = o.event_time_ms, o.error, o.label_time_ms
            # o.completed_ms, inline: one property call less per outcome
            track.push(label_at if label_at > at else at, pid, error, (o.model_version, at))
            pushed += 1
            if not lo <= at < hi:
                lo = at - at % width
                hi = lo + width
                counts = buckets.get(lo) or buckets.setdefault(lo, [0, 0, 0.0])
            counts[1] += 1
            counts[2] += error
        if track is not None:
            self._count(track, pushed, late, out)

    def _count(self, track: ModelTrack, pushed: int, late_before: int, out: DetectOutput) -> None:
        model_id = track.model_id
        counters = out.per_model[model_id]
        counters["outcomes"] += pushed
        late = track.sequencer.late - late_before
        if late:
            counters["late_outcomes"] += late
            out.counts["late_outcomes"] += late
        out.touched.add(model_id)
        self.held.add(model_id)

    def _run(
        self,
        model_id: str,
        before: int,
        found: list[Detection],
        out: DetectOutput,
        signals: list[Signal],
    ) -> None:
        track = self.tracks[model_id]
        if track.pending != before or signals:
            out.touched.add(model_id)  # released outcomes: its state changed
        if not track.pending and not track.watch.pending:
            self.held.discard(model_id)
        fingerprint = track.config.fingerprint() if found or signals else ""
        for d in found:
            out.found.append(Found(model_id, d, fingerprint))
        version = track.model_version or track.watch.version
        for signal in signals:
            # a lifecycle signal is about the version it names (detectors.versions)
            named = signal.after.get("model_version", version)
            out.signals.append(FoundSignal(model_id, signal, named, fingerprint))
        if signals:
            counters = out.per_model[model_id]
            for signal in signals:
                counters[signal.kind] += 1
