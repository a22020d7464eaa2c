"""A cap on the models one join partition keeps state for.

model_id comes from event producers: 50,000 made-up ids in a minute gave 50,000 detector
banks, per-model counters and Redis keys that never went away. Each join partition admits
at most ``limit`` models; predictions of a model beyond it are dead-lettered
(``model_limit``) and counted. A model unseen for ``retention_ms`` of event time (behind
the partition's newest prediction) gives its place up, checked only when the partition is
full, so a fleet that retires models and ships new ones never needs a restart.

A real model's predictions spread over all partitions (they are routed by prediction_id),
so for real traffic the cap is in effect one on the fleet's models; made-up ids with one
prediction each can reach ``limit`` × partitions. It is decided in each partition's
offset order, by event time, with no clock: the live worker and replay refuse the same
predictions.

``seen`` maps model_id to the event time it was last seen, rounded down to
``retention_ms / 16`` so that a model seen again in the same slice writes nothing (the
worker changelogs each write). ``meta`` (the step's checkpointed bookkeeping) keeps the
newest event time and the time of the last sweep, so a restarted worker decides as the
uninterrupted one would.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

__all__ = ["ModelAdmission"]

_SLICES = 16
_NEWEST = "admission:newest"  # meta keys
_SWEPT = "admission:swept"
_NEVER = -(2**63)


class ModelAdmission:
    """Which models a partition admits; see the module docstring."""

    def __init__(
        self,
        seen: MutableMapping[str, int],
        meta: MutableMapping[str, Any],
        *,
        limit: int,
        retention_ms: int,
    ) -> None:
        if limit < 1 or retention_ms < 1:
            raise ValueError(f"limit and retention_ms must be positive: {limit}, {retention_ms}")
        self.seen = seen
        self.meta = meta
        self.limit = limit
        self.retention_ms = retention_ms
        self._grain = max(1, retention_ms // _SLICES)
        self._count = len(seen)

    def __len__(self) -> int:
        return self._count

    def admit(self, model_id: str, ts_ms: int) -> bool:
        """Whether a prediction of ``model_id`` at ``ts_ms`` may be joined."""
        stamp = ts_ms - ts_ms % self._grain
        meta = self.meta
        if stamp > meta.get(_NEWEST, _NEVER):
            meta[_NEWEST] = stamp
        seen = self.seen
        last = seen.get(model_id)
        if last is not None:
            if stamp > last:
                seen[model_id] = stamp
            return True
        if self._count >= self.limit and not self._sweep():
            return False
        seen[model_id] = stamp
        self._count += 1
        return True

    def _sweep(self) -> bool:
        """Forget models unseen for the retention; whether that made room. Runs at most
        once per slice of event time (a full partition refusing a flood scans rarely)."""
        newest = self.meta[_NEWEST]
        if newest - self.meta.get(_SWEPT, _NEVER) < self._grain:
            return False
        self.meta[_SWEPT] = newest
        floor = newest - self.retention_ms
        stale = [m for m, last in self.seen.items() if last < floor]
        for m in stale:
            del self.seen[m]
        self._count -= len(stale)
        return self._count < self.limit
