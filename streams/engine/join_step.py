"""One join partition as a step: input records in, outcomes, forwards, marks and dead letters out.

Routing. A pair meets on its *home* partition, ``murmur2(prediction_id) % n``, whatever
partition the producer's client chose (murmur2 in Java and aiokafka, CRC32 by default in
librdkafka clients, round robin when unkeyed). An event read elsewhere is forwarded to
its home through a re-key topic (:class:`~streams.contract.internal.Forwarded`).

Watermarks. Each step remembers the newest event time it read of each input (its *read
marks*). Every batch that read an input sends that mark to every other home, after the
events it forwarded there, so a home also knows how far each other partition has read
(*forwarded marks*). A step's watermark is the oldest of its read marks and all forwarded
marks: no outcome it makes later can complete much before it (inputs are in event-time
order within ``lag_ms``), whichever route its events take. The detect step releases
outcomes by the oldest watermark over all join partitions, minus the lag.

Idempotence. ``meta`` is checkpointed with the store by the caller. ``meta["offsets"]``
holds the last offset processed of each topic; a record at or below it is counted
``redelivered`` and skipped. ``meta["seq"]`` numbers the batches, which lets the detect
step drop outcomes a batch re-emits after a crash (see :mod:`streams.engine.detect_step`).

Pure: no Kafka, asyncio, Redis or clock. The live worker and replay drive this class.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

from streams.contract.events import (
    Prediction,
    parse_ground_truth,
    parse_predictions,
)
from streams.contract.internal import Forwarded, JoinedOutcomes, JoinMark, Kind, Seen
from streams.engine.admission import ModelAdmission
from streams.engine.dead_letters import DeadLetter, Source
from streams.engine.join import Joiner, JoinStats, TaskLookup
from streams.engine.partitioning import partition_for, partitions_for
from streams.engine.rules import InputRules

__all__ = ["ForwardedRecord", "InputRecord", "JoinOutput", "JoinStep"]


@dataclass(frozen=True, slots=True)
class InputRecord:
    """One Kafka record of ``predictions`` (``kind`` p) or ``ground-truth`` (g)."""

    kind: Kind
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int  # the Kafka record timestamp; <= 0 when unknown


@dataclass(frozen=True, slots=True)
class ForwardedRecord:
    """A re-key message, decoded, with where it was read."""

    topic: str
    offset: int
    forwarded: Forwarded


@dataclass
class JoinOutput:
    """What one batch of a join step produced, in the order it must be published."""

    outcomes: dict[int, list[JoinedOutcomes]] = field(default_factory=dict)  # by partition
    forwards: dict[int, list[Forwarded]] = field(default_factory=dict)  # by home partition
    mark: JoinMark | None = None  # to every outcomes partition, after the outcomes
    dead_letters: list[DeadLetter] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)  # skipped and suspicious input
    predictions: list[Prediction] = field(default_factory=list)  # accepted, when observed
    refused_models: set[str] = field(default_factory=set)  # beyond the cap (model_limit)


_ReadMark = {"p": "mark:p", "g": "mark:g"}
_NO_MARK = -(2**63)


class JoinStep:
    """The join of partition ``partition`` of ``partitions``; see the module docstring."""

    def __init__(
        self,
        partition: int,
        partitions: int,
        *,
        store: MutableMapping[str, Any],
        meta: MutableMapping[str, Any],
        ttl_ms: int,
        rules: InputRules,
        task_for: TaskLookup,
        observe_predictions: bool = False,
        models: MutableMapping[str, int] | None = None,
    ) -> None:
        if not 0 <= partition < partitions:
            raise ValueError(f"partition {partition} is not in 0..{partitions - 1}")
        self.partition = partition
        self.partitions = partitions
        self.meta = meta
        self.rules = rules
        self._parse_kwargs = rules.parse_kwargs
        self.joiner = Joiner(store, ttl_ms=ttl_ms, task_for=task_for)
        self.observe_predictions = observe_predictions
        self._bad: list[Seen] = []  # dead-lettered prediction events, for the signals
        self._newest_p: int | None = None  # newest prediction time read, in offset order
        self._model_homes: dict[str, int] = {}  # model -> its detect partition
        self.admission = ModelAdmission(
            {} if models is None else models,
            meta,
            limit=rules.max_models,
            retention_ms=rules.model_retention_ms,
        )

    def restore(self) -> None:
        """Rebuild the join's index after its store was restored."""
        self.joiner.rebuild_index()

    def drain_stats(self) -> JoinStats:
        return self.joiner.drain_stats()

    def watermark(self, kinds: tuple[Kind, ...] = ("p", "g")) -> int | None:
        """The oldest of the read marks and the forwarded marks (None until all known);
        over predictions alone with ``kinds=("p",)`` (what the label-free signals wait
        for: they must not stall when labels stop)."""
        meta = self.meta
        marks = [meta.get(_ReadMark[k]) for k in kinds]
        for q in range(self.partitions):
            if q != self.partition:
                marks += [meta.get(f"via:{k}:{q}") for k in kinds]
        if any(m is None for m in marks):
            return None
        return min(marks)  # type: ignore[type-var]

    def process(self, records: Sequence[InputRecord | ForwardedRecord]) -> JoinOutput:
        """Apply one batch; records of one topic must come in offset order."""
        out = JoinOutput()
        meta = self.meta
        here = self.partition
        read: dict[Kind, list[int]] = {"p": [], "g": []}  # event times read, per input
        steps: list[tuple[InputRecord | ForwardedRecord, list[Any]]] = []
        ids: list[str] = []
        offsets: dict[str, int] = meta.setdefault("offsets", {})
        self._newest_p = meta.get("mark:p")
        for rec in records:
            if rec.offset <= offsets.get(rec.topic, -1):
                out.counts["redelivered"] += 1
                continue
            offsets[rec.topic] = rec.offset
            if isinstance(rec, ForwardedRecord):
                steps.append((rec, []))
                continue
            try:
                events = self._parse(rec, out)
            except Exception as exc:  # noqa: BLE001 - a bug must not stop the stream
                out.dead_letters.append(DeadLetter.processing_error(exc, _source(rec), rec.value))
                continue
            if events:
                if len(events) == 1:  # one event per message: no list built per record
                    (e,) = events
                    read[rec.kind].append(e.timestamp_ms)
                    if rec.kind == "p" and not self._admit_one(rec, e, out):
                        events = []
                    else:
                        ids.append(e.prediction_id)
                    steps.append((rec, events))
                    continue
                read[rec.kind] += [e.timestamp_ms for e in events]
                if rec.kind == "p":
                    events = self._admitted(rec, events, out)
                steps.append((rec, events))
                ids += [e.prediction_id for e in events]
        for kind, times in read.items():
            if times:
                self._count_disorder(kind, times, out.counts)
        homes = iter(partitions_for(ids, self.partitions))
        forwards: dict[tuple[Kind, int], list[Any]] = {}
        joined: dict[str, list[Any]] = {}
        joiner = self.joiner
        if self.rules.label_free:
            joiner.accepted = []
        for rec, events in steps:
            if isinstance(rec, ForwardedRecord):
                self._apply_forwarded(rec, joined, out)
                continue
            kind = rec.kind
            add = joiner.add_prediction if kind == "p" else joiner.add_label
            if len(events) == 1:
                mine = [(events[0], next(homes))]
            else:
                mine = list(zip(events, islice(homes, len(events)), strict=True))
            try:
                for e, home in mine:
                    if home != here:
                        forwards.setdefault((kind, home), []).append(e)
                    elif (o := add(e)) is not None:
                        joined.setdefault(o.model_id, []).append(o)
            except Exception as exc:  # noqa: BLE001
                out.dead_letters.append(DeadLetter.processing_error(exc, _source(rec), rec.value))
            if kind == "p" and self.observe_predictions:
                # once, where it is joined: a forwarded one is observed at its home
                out.predictions += [e for e, home in mine if home == here]
        for kind, times in read.items():
            if times:
                newest = max(times)
                if newest > meta.get(_ReadMark[kind], _NO_MARK):
                    meta[_ReadMark[kind]] = newest
        self._forward(read, forwards, out)
        n = self.partitions
        at = dict(offsets)
        seen = self._seen(joiner)
        homes_of = self._model_homes
        for model_id in joined.keys() | seen.keys():
            if (model_home := homes_of.get(model_id)) is None:
                model_home = homes_of[model_id] = partition_for(model_id, n)
            out.outcomes.setdefault(model_home, []).append(
                JoinedOutcomes(here, joined.get(model_id, []), at, seen.get(model_id, ()))
            )
        for u in joiner.drain_unscorable():
            out.dead_letters.append(DeadLetter.unscorable(u))
        seq = meta.get("seq", 0) + 1
        meta["seq"] = seq
        out.mark = JoinMark(here, seq, self.watermark(), at, self.watermark(("p",)))
        return out

    def _seen(self, joiner: Joiner) -> dict[str, list[Seen]]:
        """The prediction events of this batch for the label-free signals, by model: the
        predictions joined here for the first time, and the dead-lettered prediction
        events that name an admitted model."""
        accepted, joiner.accepted = joiner.accepted, None
        if accepted is None:
            return {}
        by_model: dict[str, list[Seen]] = {}
        make = tuple.__new__  # == Seen(...), without the named tuple's Python-level __new__
        for p in accepted:
            by_model.setdefault(p.model_id, []).append(
                make(Seen, (p.prediction_id, p.model_id, p.timestamp_ms, p.prediction, p.score,
                            p.model_version, True, p.features))
            )  # fmt: skip
        for bad in self._bad:
            by_model.setdefault(bad.model_id, []).append(bad)
        self._bad = []
        return by_model

    def _parse(self, rec: InputRecord, out: JoinOutput) -> list[Any]:
        parse: Callable[..., tuple[list[Any], list[Any]]] = (
            parse_predictions if rec.kind == "p" else parse_ground_truth
        )
        events, rejected = parse(
            rec.value,
            record_timestamp_ms=rec.timestamp_ms if rec.timestamp_ms > 0 else 0,
            **self._parse_kwargs,
        )
        if rejected:
            source = _source(rec)
            for r in rejected:
                out.dead_letters.append(DeadLetter.rejected(r, source))
            if rec.kind == "p" and self.rules.label_free:
                self._note_bad(rec, rejected)
        if events and rec.kind == "p":
            if len(events) == 1:
                newest, cut = events[0].timestamp_ms, events[0].features_cut
            else:
                newest = max(e.timestamp_ms for e in events)
                cut = sum(e.features_cut for e in events)
            if self._newest_p is None or newest > self._newest_p:
                self._newest_p = newest
            if cut:  # keys or values not kept
                out.counts["features_cut"] += cut
        return events

    def _note_bad(self, rec: InputRecord, rejected: list[Any]) -> None:
        """Dead-lettered prediction events of admitted models, for ``input_quality``. Their
        own time may be unusable, so they take the newest prediction time read before
        them on this partition: in offset order, so the same wherever it is processed."""
        at_ms = self._newest_p
        known = self.admission.seen
        for r in rejected:
            if r.model_id is None or at_ms is None or r.model_id not in known:
                continue
            key = f"!{rec.partition}:{rec.offset}:{r.index or 0}"
            self._bad.append(Seen(key, r.model_id, at_ms, valid=False))

    def _admit_one(self, rec: InputRecord, e: Any, out: JoinOutput) -> bool:
        """Whether prediction ``e`` is within the cap; if not, it is dead-lettered."""
        admission = self.admission
        if admission.admit(e.model_id, e.timestamp_ms):
            return True
        out.dead_letters.append(DeadLetter.model_limit(e, _source(rec), admission.limit))
        out.refused_models.add(e.model_id)
        return False

    def _admitted(self, rec: InputRecord, events: list[Any], out: JoinOutput) -> list[Any]:
        """The predictions of models within the cap; the others dead-lettered. Decided
        where they are read, in offset order, before any forwarding."""
        admit = self._admit_one
        return [e for e in events if admit(rec, e, out)]

    def _count_disorder(self, kind: Kind, times: list[int], counts: Counter[str]) -> None:
        """Events more than ``lag_ms`` behind the newest read in earlier batches break the
        ordering the watermarks assume: their outcomes may reach the detectors late.
        Counted (once per batch and input: the mark moves only at the end of a batch)."""
        mark = self.meta.get(_ReadMark[kind])
        if mark is not None and min(times) < mark - self.rules.lag_ms:
            floor = mark - self.rules.lag_ms
            counts["disordered_input"] += sum(t < floor for t in times)

    def _apply_forwarded(
        self, rec: ForwardedRecord, joined: dict[str, list[Any]], out: JoinOutput
    ) -> None:
        f = rec.forwarded
        add: Callable[[Any], Any] = (
            self.joiner.add_prediction if f.kind == "p" else self.joiner.add_label
        )
        try:
            for e in f.events:
                if (o := add(e)) is not None:
                    joined.setdefault(o.model_id, []).append(o)
        except Exception as exc:  # noqa: BLE001
            out.dead_letters.append(
                DeadLetter.processing_error(
                    exc, Source(rec.topic, self.partition, rec.offset, None), None
                )
            )
        if f.kind == "p" and self.observe_predictions:
            out.predictions += f.events  # type: ignore[arg-type]
        if f.mark is not None:
            name = f"via:{f.kind}:{f.source}"
            if f.mark > self.meta.get(name, _NO_MARK):
                self.meta[name] = f.mark

    def _forward(
        self,
        read: dict[Kind, list[int]],
        forwards: dict[tuple[Kind, int], list[Any]],
        out: JoinOutput,
    ) -> None:
        """Events to their homes, each input's read mark after them, to every home."""
        here = self.partition
        for kind in ("p", "g"):
            mark = self.meta.get(_ReadMark[kind]) if read[kind] else None
            for home in range(self.partitions):
                if home == here:
                    continue
                events = forwards.get((kind, home))  # type: ignore[call-overload]
                if events or mark is not None:
                    out.forwards.setdefault(home, []).append(
                        Forwarded(kind, here, events or [], mark)  # type: ignore[arg-type]
                    )


def _source(rec: InputRecord) -> Source:
    return Source(rec.topic, rec.partition, rec.offset, rec.key)
