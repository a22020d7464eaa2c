"""The worker's join: Kafka records in, the engine's :class:`JoinStep` per partition, output
published, state checkpointed, and only then the input acked.

Reads ``predictions``, ``ground-truth`` and the two re-key topics (all co-partitioned);
writes ``outcomes``, the re-key topics, the DLQ and the join state's changelog.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from streams.contract.internal import Kind, decode_forwarded
from streams.engine.dead_letters import DeadLetter, Source
from streams.engine.join import JoinStats
from streams.engine.join_step import ForwardedRecord, InputRecord, JoinOutput, JoinStep
from streams.engine.rules import InputRules
from streams.settings import Settings
from streams.worker.batches import RecordBatches
from streams.worker.output import add_dead_letters, add_join_output, deliver
from streams.worker.partition_steps import PartitionSteps
from streams.worker.state import PartitionView, ReservedDict

__all__ = ["JoinBatch", "WorkerJoin"]

log = logging.getLogger(__name__)


@dataclass
class JoinBatch:
    """What a join batch did: its stats, its counts of skipped or suspicious input and of
    dead letters by reason, and the models each partition saw (whose counters changed)."""

    stats: JoinStats = field(default_factory=JoinStats)
    counts: Counter[str] = field(default_factory=Counter)
    dead_letters: Counter[str] = field(default_factory=Counter)
    partitions: dict[int, set[str]] = field(default_factory=dict)
    refused_models: set[str] = field(default_factory=set)  # beyond max_models


class WorkerJoin(PartitionSteps[JoinStep]):
    """Join steps of the partitions this worker holds."""

    def __init__(
        self,
        settings: Settings,
        *,
        partitions: int,
        changelog: str,
        batches: RecordBatches,
        kinds: dict[str, Kind],
        rekey_topics: dict[str, str],
        task_for: Callable[[str], Any],
        dlq_partitions: int,
    ) -> None:
        super().__init__(
            settings,
            partitions=partitions,
            changelog=changelog,
            batches=batches,
            dlq_partitions=dlq_partitions,
        )
        self.kinds = kinds  # topic -> kind
        self.rekey = set(rekey_topics.values())
        self.rekey_topics = rekey_topics  # kind -> topic
        self.task_for = task_for
        self.rules = InputRules.from_settings(settings)

    def _make(self, partition: int, view: PartitionView) -> JoinStep:
        step = JoinStep(
            partition,
            self.partitions,
            store=view,
            meta=view.meta,
            ttl_ms=self.settings.join_ttl_ms,
            rules=self.rules,
            task_for=self.task_for,
            models=ReservedDict(view, "seen:"),  # the cap on models (engine.admission)
        )
        step.restore()
        return step

    async def process(self, records: list[Any]) -> JoinBatch:
        """One batch of Kafka records, to the end: output and state delivered."""
        by_partition: dict[int, list[InputRecord | ForwardedRecord]] = {}
        undecodable: list[DeadLetter] = []
        kinds = self.kinds
        for msg in records:
            kind = kinds[msg.topic]
            if msg.topic in self.rekey:
                try:
                    fwd = decode_forwarded(kind, msg.value)
                except ValueError as exc:
                    source = Source(msg.topic, msg.partition, msg.offset, msg.key)
                    undecodable.append(
                        DeadLetter("invalid_internal", str(exc), source, original=msg.value)
                    )
                    continue
                item: InputRecord | ForwardedRecord = ForwardedRecord(msg.topic, msg.offset, fwd)
            else:
                ts = msg.timestamp if msg.timestamp and msg.timestamp > 0 else 0
                item = InputRecord(
                    kind, msg.topic, msg.partition, msg.offset, msg.key, msg.value, ts
                )
            by_partition.setdefault(msg.partition, []).append(item)
        batch = JoinBatch()
        batch.dead_letters.update(d.reason for d in undecodable)
        outputs: list[JoinOutput] = []
        for partition, items in by_partition.items():
            step = self.steps.get(partition) or await self.step(partition)
            out = step.process(items)
            outputs.append(out)
            stats = step.drain_stats()
            dead = Counter(d.reason for d in out.dead_letters)
            self.count(partition, stats, out.counts, dead)
            batch.stats.add(stats)
            batch.counts.update(out.counts)
            batch.dead_letters.update(dead)
            batch.partitions[partition] = set(stats.predictions) | set(stats.joined)
            batch.refused_models |= out.refused_models
        s = self.settings
        n = self.partitions

        def build(batches: RecordBatches) -> None:
            for out in outputs:
                add_join_output(
                    batches,
                    out,
                    outcomes_topic=s.topics.outcomes,
                    outcomes_partitions=n,
                    rekey_topics=self.rekey_topics,
                    dlq_topic=s.topics.dlq,
                    dlq_partitions=self.dlq_partitions,
                )
            add_dead_letters(batches, undecodable, s.topics.dlq, self.dlq_partitions)

        await deliver(build, self.batches, what="join output", give_up_s=s.output_retry_s)
        # the state, after the output it led to is with the broker (see worker.state)
        for partition in by_partition:
            self.views[partition].stage()
        staged = self.batches.take()
        await deliver(
            lambda b: b.extend(staged), self.batches, what="join state", give_up_s=s.output_retry_s
        )
        if undecodable:  # read off the re-key topics: not in any partition's state
            log.error("%d undecodable re-key messages dead-lettered", len(undecodable))
        return batch

    def count(
        self, partition: int, stats: JoinStats, counts: Counter[str], dead: Counter[str]
    ) -> None:
        """Add one batch of a partition to its counters, kept next to its state."""
        view = self.views[partition]
        totals: Counter[str] = view.reserved("counts") or Counter()
        totals.update(stats.totals())
        totals.update(counts)
        totals["dlq"] += sum(dead.values())
        view.put_reserved("counts", totals)
        reasons: Counter[str] = view.reserved("dlq") or Counter()
        reasons.update(dead)
        view.put_reserved("dlq", reasons)
        for name_, per_model in (
            ("predictions", stats.predictions),
            ("joined", stats.joined),
            ("expired_predictions", stats.expired_predictions),
            ("unscorable", stats.unscorable),
        ):
            for model_id, n in per_model.items():
                name = f"model:{model_id}"
                mine: Counter[str] = view.reserved(name) or Counter()
                mine[name_] += n
                view.put_reserved(name, mine)

    def counters(self, partition: int, models: set[str]) -> dict[str, Counter[str]]:
        """The partition's counters: totals, dead letters by reason, and ``models``'."""
        view = self.views[partition]
        out = {
            "stats": view.reserved("counts") or Counter(),
            "dlq": view.reserved("dlq") or Counter(),
        }
        for model_id in models:
            out[f"model:{model_id}"] = view.reserved(f"model:{model_id}") or Counter()
        return out
