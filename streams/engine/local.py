"""The whole topology in one process: join steps, re-key hops and detect steps, no broker.

:class:`LocalTopology` runs ``n`` :class:`~streams.engine.join_step.JoinStep` and, per
detector configuration, ``n`` :class:`~streams.engine.detect_step.DetectStep`, and carries
what one step publishes to the next through in-memory partition logs, first in first out
per (topic, partition) as Kafka does: forwarded events to their home join step
(topics :data:`REKEY_TOPICS`), outcomes and join marks to the detect steps
(:data:`OUTCOMES_TOPIC`), each with increasing offsets per (topic, partition). Replay
feeds it the records it reads; tests feed it under chosen interleavings.

By default every hop is delivered before :meth:`LocalTopology.feed` returns, one batch
per partition and topic. Given a :data:`Scheduler`, hops are held instead and delivered
in an order, and in batch sizes, the scheduler picks, possibly after later feeds, which
is how a property test stands in for a broker's timing.

Pure: no Kafka, asyncio, Redis or clock.
"""

from __future__ import annotations

from collections import Counter, defaultdict, deque
from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from typing import Any

from detectors.config import DetectorSettings, Task
from streams.contract.events import Outcome, Prediction
from streams.engine.detect_step import DetectOutput, DetectStep, Found, FoundSignal, OutcomesRecord
from streams.engine.join import JoinStats
from streams.engine.join_step import ForwardedRecord, InputRecord, JoinOutput, JoinStep
from streams.engine.rules import InputRules

__all__ = ["OUTCOMES_TOPIC", "REKEY_TOPICS", "LocalTopology", "Scheduler"]

REKEY_TOPICS = {"p": "rekey-p", "g": "rekey-g"}
"""Names of the in-memory re-key topics, by the kind of event they carry."""

OUTCOMES_TOPIC = "outcomes"
"""Name of the in-memory outcomes topic."""

Scheduler = Callable[[int], int]
"""Given ``n >= 1`` choices, returns one of ``range(n)``: ``random.Random(seed).randrange``,
or ``lambda n: data.draw(st.integers(0, n - 1))`` in a hypothesis test."""

_Hop = ForwardedRecord | OutcomesRecord


def _no_task(_model_id: str) -> Task | None:
    return None


class LocalTopology:
    """Join and detect steps of ``partitions`` partitions, wired in memory.

    ``detectors`` has one entry per configuration (a replay sweep has several); each gets
    its own detect steps, fed the same outcomes. Outcomes of models not in ``models``
    (when given) never reach a detect step, though their events still move the
    watermarks. ``on_predictions`` receives every accepted prediction once (each is
    observed by the join step that joins it), ``on_outcomes`` every group of outcomes
    (of one model) a join step publishes.
    """

    def __init__(
        self,
        partitions: int,
        *,
        detectors: Sequence[DetectorSettings],
        ttl_ms: int,
        rules: InputRules,
        task_for: Callable[[str], Task | None] = _no_task,
        models: Collection[str] | None = None,
        on_predictions: Callable[[list[Prediction]], None] | None = None,
        on_outcomes: Callable[[Sequence[Outcome]], None] | None = None,
        scheduler: Scheduler | None = None,
    ) -> None:
        if partitions < 1:
            raise ValueError(f"partitions must be >= 1, got {partitions}")
        self.partitions = partitions
        self.rules = rules
        self.models = None if models is None else frozenset(models)
        self.on_predictions = on_predictions
        self.on_outcomes = on_outcomes
        self.scheduler = scheduler
        self.joins = [
            JoinStep(
                p,
                partitions,
                store={},
                meta={},
                ttl_ms=ttl_ms,
                rules=rules,
                task_for=task_for,
                observe_predictions=on_predictions is not None,
            )
            for p in range(partitions)
        ]
        self.detects = [
            [
                DetectStep(d, partitions, tracks={}, meta={}, detectors=config, lag_ms=rules.lag_ms)
                for d in range(partitions)
            ]
            for config in detectors
        ]
        self.found: list[list[Found]] = [[] for _ in detectors]  # per configuration
        self.signals: list[list[FoundSignal]] = [[] for _ in detectors]
        self.per_model: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.join_counts: Counter[str] = Counter()  # skipped and suspicious input
        self.detect_counts: Counter[str] = Counter()  # duplicate and late outcomes
        self.dead_letters: Counter[str] = Counter()  # by reason
        self._logs: dict[tuple[str, int], deque[_Hop]] = {}  # (topic, partition) -> held
        self._next_offset: dict[tuple[str, int], int] = {}
        self._held = 0

    # --- input ------------------------------------------------------------------------------

    def feed(self, records: Sequence[InputRecord]) -> None:
        """Run the join steps of the records' partitions, one batch each (records of one
        partition and topic in offset order), then deliver what is in flight: all of it,
        or what the scheduler picks."""
        by_partition: dict[int, list[InputRecord | ForwardedRecord]] = {}
        for rec in records:
            batch = by_partition.get(rec.partition)
            if batch is None:
                if not 0 <= rec.partition < self.partitions:
                    raise ValueError(
                        f"record of {rec.topic} partition {rec.partition}: the topology has "
                        f"partitions 0..{self.partitions - 1}"
                    )
                batch = by_partition[rec.partition] = []
            batch.append(rec)
        for partition, batch in by_partition.items():
            self.publish(partition, self.joins[partition].process(batch))
        if self.scheduler is None:
            self.settle()
        else:
            while self._held and self.scheduler(2):
                self._deliver_chosen(self.scheduler)

    def publish(self, partition: int, out: JoinOutput) -> None:
        """Put what join step ``partition`` produced on the in-memory topics (tests call it
        with altered output to stand in for a crash)."""
        if self.on_predictions is not None and out.predictions:
            self.on_predictions(out.predictions)
        for home, forwards in out.forwards.items():
            for f in forwards:
                topic = REKEY_TOPICS[f.kind]
                self._send(topic, home, ForwardedRecord(topic, self._offset(topic, home), f))
        keep = self.models
        to_detect = bool(self.detects)
        for target, groups in out.outcomes.items():
            for joined in groups:
                if self.on_outcomes is not None and joined.outcomes:
                    self.on_outcomes(joined.outcomes)
                model_id = joined.model_id
                if to_detect and (keep is None or model_id in keep):
                    self._send_outcomes(target, joined)
        if to_detect and out.mark is not None:
            for target in range(self.partitions):
                self._send_outcomes(target, out.mark)
        self.join_counts.update(out.counts)
        if out.dead_letters:
            self.dead_letters.update(d.reason for d in out.dead_letters)

    # --- delivery ---------------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        """Hop records published and not yet delivered."""
        return self._held

    def settle(self, scheduler: Scheduler | None = None) -> None:
        """Deliver everything in flight, in the order ``scheduler`` (else the topology's
        scheduler) picks; without one, a batch per partition and topic at a time."""
        scheduler = scheduler or self.scheduler
        if scheduler is not None:
            while self._held:
                self._deliver_chosen(scheduler)
            return
        while self._held:
            for home in range(self.partitions):
                batch: list[_Hop] = []
                for topic in REKEY_TOPICS.values():
                    batch += self._take(topic, home, None)
                if batch:
                    self._deliver(home, batch)
            for target in range(self.partitions):
                batch = self._take(OUTCOMES_TOPIC, target, None)
                if batch:
                    self._deliver(target, batch)

    def finish(self) -> None:
        """Deliver what is in flight, then release everything the detect steps hold (the
        end of a replay)."""
        self.settle()
        for c, steps in enumerate(self.detects):
            for step in steps:
                self._collect(c, step.flush())

    def _deliver_chosen(self, scheduler: Scheduler) -> None:
        """One delivery: a prefix, of a size the scheduler picks, of one held log."""
        logs = [key for key, log in self._logs.items() if log]
        topic, partition = logs[scheduler(len(logs))]
        held = len(self._logs[(topic, partition)])
        self._deliver(partition, self._take(topic, partition, 1 + scheduler(held)))

    def _deliver(self, partition: int, batch: list[_Hop]) -> None:
        if isinstance(batch[0], OutcomesRecord):
            for c, steps in enumerate(self.detects):
                self._collect(c, steps[partition].process(batch))  # type: ignore[arg-type]
        else:
            self.publish(partition, self.joins[partition].process(batch))  # type: ignore[arg-type]

    def _collect(self, configuration: int, out: DetectOutput) -> None:
        if out.found:
            self.found[configuration] += out.found
        if out.signals:
            self.signals[configuration] += out.signals
        if configuration == 0:  # every configuration gets the same outcomes: count once
            for model_id, counters in out.per_model.items():
                self.per_model[model_id].update(counters)
            self.detect_counts.update(out.counts)

    def _offset(self, topic: str, partition: int) -> int:
        key = (topic, partition)
        offset = self._next_offset.get(key, 0)
        self._next_offset[key] = offset + 1
        return offset

    def _send(self, topic: str, partition: int, record: _Hop) -> None:
        log = self._logs.get((topic, partition))
        if log is None:
            log = self._logs[(topic, partition)] = deque()
        log.append(record)
        self._held += 1

    def _send_outcomes(self, partition: int, body: Any) -> None:
        offset = self._offset(OUTCOMES_TOPIC, partition)
        self._send(OUTCOMES_TOPIC, partition, OutcomesRecord(OUTCOMES_TOPIC, offset, body))

    def _take(self, topic: str, partition: int, count: int | None) -> list[_Hop]:
        log = self._logs.get((topic, partition))
        if not log:
            return []
        if count is None or count >= len(log):
            taken = list(log)
            log.clear()
        else:
            taken = [log.popleft() for _ in range(count)]
        self._held -= len(taken)
        return taken

    # --- results ----------------------------------------------------------------------------

    def detections(self, configuration: int = 0) -> list[Found]:
        """What configuration ``configuration`` found so far, by model, then outcome index
        and detector (the order detections of different models are found in depends on
        how partitions interleave; their content does not)."""
        return sorted(
            self.found[configuration],
            key=lambda f: (f.model_id, f.detection.change.index, f.detection.change.detector),
        )

    def found_signals(self, configuration: int = 0) -> list[FoundSignal]:
        """The label-free and liveness signals found so far, by model, then event time."""
        return sorted(
            self.signals[configuration],
            key=lambda f: (f.model_id, f.signal.event_time_ms, f.signal.kind, f.signal.index),
        )

    def alerts(self, configuration: int, detected_at: datetime) -> list[dict[str, Any]]:
        """The alert events of :meth:`detections` and :meth:`found_signals`
        (``detected_at``: the caller's clock)."""
        out = DetectOutput(
            found=self.detections(configuration), signals=self.found_signals(configuration)
        )
        return out.alerts(detected_at)

    @property
    def late_outcomes(self) -> int:
        return self.detect_counts["late_outcomes"]

    def join_stats(self) -> JoinStats:
        """The join counters of every partition since the last call."""
        stats = JoinStats()
        for step in self.joins:
            stats.add(step.drain_stats())
        return stats
