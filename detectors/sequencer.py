"""Event-time ordering of one model's outcomes before they reach its detectors.

Detectors are order-sensitive, but the order in which outcomes reach a worker depends on
how it happened to fetch partitions, on re-keying and on restarts. To make a detection a
property of the *events* (so that the stream and a replay agree to the alert_id), each
model's outcomes are processed in a canonical order: by completion time (the later of the
prediction's and the label's timestamps), ties broken by prediction_id.

A :class:`Sequencer` holds outcomes until the model's watermark (the largest completion
time seen minus ``lag_ms``) has passed them. An outcome that arrives after later ones
were already released is *late*: it is released at once, out of canonical order, and
counted, never dropped. :meth:`Sequencer.drain` releases everything (end of a replay, or
a live stream that went idle).
"""

from __future__ import annotations

import heapq

__all__ = ["Pending", "Sequencer"]

Pending = tuple[int, str, float, str | None]
"""(completion_ms, prediction_id, error, model_version)."""


class Sequencer:
    """Re-orders one model's outcomes by (completion time, prediction_id)."""

    def __init__(self, lag_ms: int) -> None:
        if lag_ms < 0:
            raise ValueError(f"lag_ms must be >= 0, got {lag_ms}")
        self.lag_ms = lag_ms
        self.max_seen_ms: int | None = None
        self.released: tuple[int, str] | None = None  # last released (time, id)
        self.late = 0
        self._heap: list[Pending] = []
        self._late: list[Pending] = []

    def __len__(self) -> int:
        return len(self._heap) + len(self._late)

    def push(
        self, completion_ms: int, prediction_id: str, error: float, model_version: str | None
    ) -> None:
        item = (completion_ms, prediction_id, error, model_version)
        if self.released is not None and (completion_ms, prediction_id) < self.released:
            self.late += 1
            self._late.append(item)
        else:
            heapq.heappush(self._heap, item)
        if self.max_seen_ms is None or completion_ms > self.max_seen_ms:
            self.max_seen_ms = completion_ms

    def ready(self, upto: int | None = None) -> list[Pending]:
        """Outcomes strictly older than the watermark, in canonical order (late ones first).

        The watermark is ``upto`` when the caller knows better (the live worker's minimum
        over all join partitions), else the largest completion time seen minus the lag."""
        out, self._late = self._late, []
        if upto is not None:
            watermark = upto
        elif self.max_seen_ms is None:
            return out
        else:
            watermark = self.max_seen_ms - self.lag_ms
        heap = self._heap
        while heap and heap[0][0] < watermark:
            out.append(heapq.heappop(heap))
        self._mark(out)
        return out

    def drain(self) -> list[Pending]:
        """Everything still held, in canonical order."""
        out, self._late = self._late, []
        heap = self._heap
        while heap:
            out.append(heapq.heappop(heap))
        self._mark(out)
        return out

    def _mark(self, out: list[Pending]) -> None:
        if out:
            last = max((item[0], item[1]) for item in out)
            if self.released is None or last > self.released:
                self.released = last
