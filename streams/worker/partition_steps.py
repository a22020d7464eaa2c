"""The engine steps of the partitions a worker holds: loaded from their changelog on first
use, one load at a time, kept across a rebalance that leaves them here, and forgotten
when they move."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any, Generic, TypeVar

from streams.settings import Settings
from streams.worker.batches import RecordBatches
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
        changelog: str,
        batches: RecordBatches,
        dlq_partitions: int,
    ) -> None:
        self.settings = settings
        self.partitions = partitions
        self.changelog = changelog
        self.batches = batches
        self.dlq_partitions = dlq_partitions
        self.steps: dict[int, S] = {}
        self.views: dict[int, PartitionView] = {}
        self._loading: dict[int, asyncio.Lock] = {}  # two loads of one partition would race

    def _make(self, partition: int, view: PartitionView) -> S:
        """A restored step over ``view``."""
        raise NotImplementedError

    def drop(self, partitions: Iterable[int] | None = None) -> None:
        """Forget ``partitions`` (default: all), in memory too: each is reloaded whole from
        its changelog when next used. Changes not checkpointed, such as a new model's
        track, must not outlive the partition's move: the new owner reads their input
        again, and a later return of the partition would count it twice."""
        for p in list(self.steps) if partitions is None else list(partitions):
            self.steps.pop(p, None)
            self.views.pop(p, None)

    async def step(self, partition: int) -> S:
        step = self.steps.get(partition)
        if step is not None:
            return step
        async with self._loading.setdefault(partition, asyncio.Lock()):
            step = self.steps.get(partition)
            if step is None:
                view = await self._load(partition)
                step = self._make(partition, view)
                self.views[partition] = view
                self.steps[partition] = step
            return step

    async def _load(self, partition: int) -> PartitionView:
        """A partition's state, restored from its changelog."""
        data: dict[str, Any] = {}
        restored = await load_changelog(
            self.settings.bootstrap_servers,
            self.changelog,
            partition,
            data,
            PartitionView.commit_key(partition),
            kafka=self.settings.kafka,
        )
        (log.info if restored.applied else log.debug)(  # a new partition: nothing to say
            "%s[%d]: %d changelog records restored",
            self.changelog, partition, restored.applied,
        )  # fmt: skip
        if restored.discarded:
            log.warning(
                "%s[%d]: %d changelog records of an unfinished checkpoint discarded (%d keys "
                "back at their committed state; the input they covered is read again)",
                self.changelog, partition, restored.discarded, len(restored.unfinished),
            )  # fmt: skip
        return PartitionView(
            self.changelog, partition, data, self.batches, rewrite=restored.unfinished
        )

    async def preload(self, partitions: Iterable[int]) -> None:
        """Load ``partitions`` at once, concurrently (each load is mostly waiting for the
        broker), rather than one by one at their first batch."""
        await asyncio.gather(*(self.step(p) for p in partitions))

    def offsets(self, partition: int) -> dict[str, int]:
        """Last offset processed per topic of a loaded partition."""
        return dict(self.views[partition].meta.get("offsets", {}))
