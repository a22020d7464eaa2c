"""The engine steps of the partitions a worker holds: loaded from the changelog on first
use, one load at a time, and forgotten whole on revocation."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Generic, TypeVar

from streams.engine.partitioning import partition_for
from streams.settings import Settings
from streams.worker.batches import RecordBatches
from streams.worker.faust_internals import table_changelog, table_store
from streams.worker.state import PartitionView, load_changelog

__all__ = ["PartitionSteps"]

log = logging.getLogger(__name__)

S = TypeVar("S")


class PartitionSteps(Generic[S]):
    """One step of type ``S`` per loaded partition; subclasses say how to make one."""

    def __init__(
        self,
        settings: Settings,
        *,
        partitions: int,
        table: Any,
        batches: RecordBatches,
        loading: asyncio.Lock,
        dlq_partitions: int,
    ) -> None:
        self.settings = settings
        self.partitions = partitions
        self.table = table
        self.batches = batches
        self.dlq_partitions = dlq_partitions
        self.steps: dict[int, S] = {}
        self.views: dict[int, PartitionView] = {}
        self._loading = loading

    def _make(self, partition: int, view: PartitionView) -> S:
        """A restored step over ``view``."""
        raise NotImplementedError

    def drop(self) -> None:
        """Forget every partition's state, in memory too: each is reloaded whole from its
        changelog when next used (changes not checkpointed, such as a new model's track,
        would otherwise outlive the drop and count their re-read input twice)."""
        table_store(self.table).clear()
        self.steps.clear()
        self.views.clear()

    async def step(self, partition: int) -> S:
        step = self.steps.get(partition)
        if step is not None:
            return step
        async with self._loading:  # two loads of one partition would race on its dict
            step = self.steps.get(partition)
            if step is None:
                view = await load_view(
                    self.settings, self.table, partition, self.partitions, self.batches
                )
                step = self._make(partition, view)
                self.views[partition] = view
                self.steps[partition] = step
            return step

    def offsets(self, partition: int) -> dict[str, int]:
        """Last offset processed per topic of a loaded partition."""
        return dict(self.views[partition].meta.get("offsets", {}))


async def load_view(
    settings: Settings, table: Any, partition: int, partitions: int, batches: RecordBatches
) -> PartitionView:
    """A partition's state, reloaded from its changelog."""

    def owns(key: str) -> bool:
        return partition_for(key, partitions) == partition

    restored = await load_changelog(
        settings.bootstrap_servers,
        table_changelog(table),
        partition,
        table_store(table),
        PartitionView.commit_key(partition),
    )
    log.info(
        "%s partition %d: %d changelog records restored",
        table.name, partition, restored.applied,
    )  # fmt: skip
    if restored.discarded:
        log.warning(
            "%s partition %d: %d changelog records of an unfinished checkpoint discarded "
            "(%d keys back at their committed state; the input they covered is read again)",
            table.name, partition, restored.discarded, len(restored.unfinished),
        )  # fmt: skip
    return PartitionView(table, partition, owns, batches, rewrite=restored.unfinished)
