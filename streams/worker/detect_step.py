"""The worker's detectors: ``outcomes`` records in, the engine's :class:`DetectStep` per
partition, alerts published, detector state checkpointed every ``checkpoint_interval_s``.

Outcomes are acked only after the checkpoint that includes them, so committed offsets
never pass the checkpointed state. A crash re-reads them and raises the alerts since the
checkpoint again, with the same ids.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

from detectors.config import DetectorSettings
from detectors.track import ModelTrack
from streams.contract.internal import decode_outcomes_message
from streams.engine.dead_letters import DeadLetter, Source
from streams.engine.detect_step import DetectOutput, DetectStep, OutcomesRecord
from streams.metrics import OUTCOMES
from streams.settings import Settings
from streams.worker.batches import RecordBatches
from streams.worker.output import add_dead_letters, deliver
from streams.worker.partition_steps import PartitionSteps
from streams.worker.state import PartitionView

__all__ = ["WorkerDetect"]

log = logging.getLogger(__name__)


class WorkerDetect(PartitionSteps[DetectStep]):
    """Detect steps of the outcomes partitions this worker holds."""

    def __init__(
        self,
        settings: Settings,
        detectors: DetectorSettings,
        *,
        partitions: int,
        changelog: str,
        batches: RecordBatches,
        dlq_partitions: int,
    ) -> None:
        super().__init__(
            settings,
            partitions=partitions,
            changelog=changelog,
            batches=batches,
            dlq_partitions=dlq_partitions,
        )
        self.detectors = detectors
        self.unsaved: set[int] = set()  # partitions changed since the last checkpoint
        self.last_input: dict[int, float] = {}  # partition -> last batch (monotonic)

    def _make(self, partition: int, view: PartitionView) -> DetectStep:
        step = DetectStep(
            partition,
            self.partitions,
            tracks=view,
            meta=view.meta,
            detectors=self.detectors,
            lag_ms=self.settings.reorder_lag_ms,
        )
        step.restore()
        self.last_input.setdefault(partition, time.monotonic())
        return step

    def drop(self, partitions: Iterable[int] | None = None) -> None:
        gone = set(self.steps) if partitions is None else set(partitions)
        super().drop(gone)
        self.unsaved -= gone
        for p in gone:
            self.last_input.pop(p, None)

    async def process(
        self, records: list[Any]
    ) -> tuple[list[tuple[int, DetectOutput]], Counter[str]]:
        """Apply one batch; returns each touched partition's output and dead letters by
        reason (undecodable outcomes messages)."""
        by_partition: dict[int, list[OutcomesRecord]] = {}
        undecodable: list[DeadLetter] = []
        for msg in records:
            try:
                body = decode_outcomes_message(msg.value)
            except ValueError as exc:
                source = Source(msg.topic, msg.partition, msg.offset, msg.key)
                undecodable.append(
                    DeadLetter("invalid_internal", str(exc), source, original=msg.value)
                )
                continue
            by_partition.setdefault(msg.partition, []).append(
                OutcomesRecord(msg.topic, msg.offset, body)
            )
        if undecodable:
            s = self.settings
            await deliver(
                lambda b: add_dead_letters(b, undecodable, s.topics.dlq, self.dlq_partitions),
                self.batches,
                what="dead letters",
                give_up_s=s.output_retry_s,
            )
        now = time.monotonic()
        outputs = []
        for partition, items in by_partition.items():
            step = self.steps.get(partition) or await self.step(partition)
            outputs.append((partition, step.process(items)))
            self.last_input[partition] = now
            self.unsaved.add(partition)
        return outputs, Counter(d.reason for d in undecodable)

    def touch(self, partition: int, models: set[str]) -> None:
        view = self.views[partition]
        for model_id in models:
            view.touch(model_id)
        self.unsaved.add(partition)

    def count(self, partition: int, out: DetectOutput) -> dict[str, Counter[str]]:
        """Add a batch's counts to the partition's counters (kept next to its state);
        returns the partition's totals and the outcome counts of the models it touched,
        which the tracks hold exactly (released plus held, duplicates left out)."""
        view = self.views[partition]
        totals: Counter[str] = view.reserved("counts") or Counter()
        outcomes = sum(c["outcomes"] for c in out.per_model.values())
        totals["outcomes"] += outcomes
        OUTCOMES.inc(outcomes)  # the outcomes the detectors took, as counted in Redis
        totals.update(out.counts)
        view.put_reserved("counts", totals)
        counts = {"stats": totals}
        for model_id in out.touched:
            track = self.steps[partition].tracks[model_id]
            counts[f"model:{model_id}"] = Counter(outcomes=track.monitor.n + track.pending)
        return counts

    def stage(self) -> None:
        """Add the changed state of every partition to the batches (delivered by the caller)."""
        for partition in self.unsaved:
            if (view := self.views.get(partition)) is not None:
                view.stage()
        self.unsaved.clear()

    def track(self, partition: int, model_id: str) -> ModelTrack:
        return self.steps[partition].tracks[model_id]
