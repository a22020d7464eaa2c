"""Which offsets a consumer may commit when messages finish out of order.

The notifier holds alerts for a grouping window and retries deliveries, so a later message
can be done before an earlier one. Committing past an unfinished message would lose it on
a restart; this tracker only lets the commit point move up to the first unfinished one.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

__all__ = ["OffsetTracker"]

P = TypeVar("P", bound=Hashable)


class OffsetTracker(Generic[P]):
    """Per partition: offsets started but not done, and the highest offset seen."""

    def __init__(self) -> None:
        self._open: dict[P, set[int]] = {}
        self._next: dict[P, int] = {}
        self._committed: dict[P, int] = {}

    def start(self, partition: P, offset: int) -> None:
        self._open.setdefault(partition, set()).add(offset)
        self._next[partition] = max(self._next.get(partition, 0), offset + 1)

    def done(self, partition: P, offset: int) -> None:
        self._open.get(partition, set()).discard(offset)

    def forget(self, partition: P) -> None:
        """The partition was revoked: another consumer resumes from its committed offset."""
        self._open.pop(partition, None)
        self._next.pop(partition, None)
        self._committed.pop(partition, None)

    @property
    def pending(self) -> int:
        return sum(len(offsets) for offsets in self._open.values())

    def committable(self) -> dict[P, int]:
        """Offsets to commit now (Kafka's "next offset to read"), only those that moved."""
        moves: dict[P, int] = {}
        for partition, nxt in self._next.items():
            offsets = self._open.get(partition)
            point = min(offsets) if offsets else nxt
            if point > self._committed.get(partition, -1):
                moves[partition] = point
        return moves

    def committed(self, moves: dict[P, int]) -> None:
        self._committed.update(moves)
