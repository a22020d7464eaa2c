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

from collections import Counter, defaultdict
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from detectors.config import DetectorSettings
from detectors.track import Detection, ModelTrack
from streams.contract.alerts import build_alert
from streams.contract.internal import JoinedOutcomes, JoinMark

__all__ = ["DetectOutput", "DetectStep", "Found", "OutcomesRecord"]


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


@dataclass
class DetectOutput:
    """What one batch (or a flush) of a detect step produced."""

    found: list[Found] = field(default_factory=list)
    touched: set[str] = field(default_factory=set)  # models whose state changed
    per_model: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    counts: Counter[str] = field(default_factory=Counter)

    def alerts(self, detected_at: datetime) -> list[dict[str, Any]]:
        """The alert events, in detection order (``detected_at``: the caller's clock)."""
        return [
            build_alert(
                f.detection.change,
                model_id=f.model_id,
                model_version=f.detection.model_version,
                detected_at=detected_at,
                config_fingerprint=f.config_fingerprint,
            )
            for f in self.found
        ]


class _Unconfirmed:
    """Prediction ids a join partition published in batches not yet known durable."""

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
        self.held: set[str] = set()  # models with outcomes waiting for the watermark
        self._unconfirmed: dict[int, _Unconfirmed] = meta.setdefault("unconfirmed", {})

    def restore(self) -> None:
        """Find the models whose restored tracks still hold outcomes."""
        self.held = {m for m, t in self.tracks.items() if t.pending}

    def bound(self) -> int | None:
        """Outcomes completed before this are final: the oldest join watermark, minus the
        lag. None until every join partition has reported one."""
        marks = [self.meta.get(f"wm:{j}") for j in range(self.join_partitions)]
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
                if body.watermark_ms is not None:
                    name = f"wm:{body.join}"
                    if body.watermark_ms > meta.get(name, -(2**63)):
                        meta[name] = body.watermark_ms
                continue
            self._push(body, out)
        bound = self.bound()
        if bound is not None:
            for model_id in list(self.held):
                track = self.tracks[model_id]
                before = track.pending
                self._run(model_id, before, track.release(bound), out)
        return out

    def flush(self) -> DetectOutput:
        """Release everything held (the end of a replay, or a stream gone idle)."""
        out = DetectOutput()
        for model_id in list(self.held):
            track = self.tracks[model_id]
            before = track.pending
            self._run(model_id, before, track.flush(), out)
        return out

    def _unconfirmed_of(self, join: int) -> _Unconfirmed:
        u = self._unconfirmed.get(join)
        if u is None:
            u = self._unconfirmed[join] = _Unconfirmed()
        return u

    def _push(self, body: JoinedOutcomes, out: DetectOutput) -> None:
        unconfirmed = self._unconfirmed_of(body.join)
        mine = unconfirmed.ids(body.offsets)
        others = [ids for _, ids in unconfirmed.batches if ids is not mine and ids]
        track: ModelTrack | None = None
        pushed = late = 0  # of the current track
        for o in body.outcomes:  # one model as a rule: counted per run of one model
            pid = o.prediction_id
            if pid in mine or (others and any(pid in ids for ids in others)):
                out.counts["duplicate_outcomes"] += 1
                continue
            mine.add(pid)
            if track is None or track.model_id != o.model_id:
                if track is not None:
                    self._count(track, pushed, late, out)
                track = self.track(o.model_id)
                pushed, late = 0, track.sequencer.late
            track.push(o.completed_ms, pid, o.error, o.model_version)
            pushed += 1
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

    def _run(self, model_id: str, before: int, found: list[Detection], out: DetectOutput) -> None:
        track = self.tracks[model_id]
        if track.pending != before:
            out.touched.add(model_id)  # released outcomes: its state changed
        if not track.pending:
            self.held.discard(model_id)
        fingerprint = track.config.fingerprint() if found else ""
        for d in found:
            out.found.append(Found(model_id, d, fingerprint))
