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

:meth:`Sequencer.push` runs once per outcome, so it only decides "late or not" and
appends to an inbox; the ordering is done per batch, in C, by :meth:`Sequencer.ready`:
the inbox is sorted and merged into the tail of a sorted run of held outcomes (arrivals
are nearly in order, so that tail is short); the rare straggler that reaches further back
than a few inboxes goes to a heap instead. A watermark then releases a prefix of the run
(one bisection, one slice) merged with the heap's old items. The order released is
exactly the one a single heap gives (``tests/unit/test_detectors_sequencer.py``).
"""

from __future__ import annotations

import heapq
import math
from bisect import bisect_left
from operator import itemgetter
from typing import Any

from detectors.exceptions import InvalidOutcome

__all__ = ["Pending", "Sequencer"]

Pending = tuple[int, str, float, Any]
"""(completion_ms, prediction_id, error, payload): the payload is the caller's, carried
along unread (the model version and event time of an outcome, say)."""

_completion = itemgetter(0)


def _canonical_sort(items: list[Pending]) -> None:
    """Sort by (completion_ms, prediction_id): first by time alone, where comparisons are
    of plain ints, then by the whole tuple to order equal times by id, which on a list
    already sorted by time is one linear pass."""
    items.sort(key=_completion)
    items.sort()


_COMPACT_AT = 4096  # released items kept at the head of the run before it is compacted
_MERGE_SPAN = 4  # an inbox merges into at most this many times its length of the run


class Sequencer:
    """Re-orders one model's outcomes by (completion time, prediction_id)."""

    def __init__(self, lag_ms: int) -> None:
        if lag_ms < 0:
            raise ValueError(f"lag_ms must be >= 0, got {lag_ms}")
        self.lag_ms = lag_ms
        self.released: tuple[int, str] | None = None  # last released (time, id)
        self.late = 0
        self._max_seen: int | None = None  # over everything but the inbox
        self._released_ms: float = -math.inf  # released[0], for push's one-comparison check
        self._inbox: list[Pending] = []  # pushed since the last ready/drain, arrival order
        self._run: list[Pending] = []  # sorted; _run[_start:] is held
        self._start = 0
        self._heap: list[Pending] = []  # held outcomes that arrived behind the run
        self._late: list[Pending] = []

    def __len__(self) -> int:
        return len(self._inbox) + len(self._run) - self._start + len(self._heap) + len(self._late)

    @property
    def max_seen_ms(self) -> int | None:
        """Largest completion time pushed so far (None before the first)."""
        seen = self._max_seen
        if self._inbox:
            newest = max(item[0] for item in self._inbox)
            if seen is None or newest > seen:
                return newest
        return seen

    def push(
        self, completion_ms: int, prediction_id: str, error: float, model_version: Any
    ) -> None:
        """Hold one outcome (or count it late); :meth:`ready` releases it in order.

        Raises :class:`~detectors.exceptions.InvalidOutcome` (a ``ValueError``) for a
        non-finite error before holding it: the detectors could not take it, and refusing
        it here lets the caller dead-letter that one outcome.
        """
        if error - error:  # nan for inf and nan, 0.0 for any finite number: the cheapest test
            raise InvalidOutcome(
                f"error must be finite, got {error!r} for outcome {prediction_id!r}"
            )
        item = (completion_ms, prediction_id, error, model_version)
        if completion_ms <= self._released_ms:
            released = self.released
            if released is not None and (completion_ms, prediction_id) < released:
                self.late += 1
                self._late.append(item)
                return
        self._inbox.append(item)

    def ready(self, upto: int | None = None) -> list[Pending]:
        """Outcomes strictly older than the watermark, in canonical order (late ones first).

        The watermark is ``upto`` when the caller knows better (the live worker's minimum
        over all join partitions), else the largest completion time seen minus the lag."""
        self._absorb()
        out, self._late = self._late, []
        if upto is not None:
            watermark = upto
        elif self._max_seen is None:
            return out
        else:
            watermark = self._max_seen - self.lag_ms
        out += self._mark(self._older_than(watermark))
        return out

    def drain(self) -> list[Pending]:
        """Everything still held, in canonical order."""
        self._absorb()
        out, self._late = self._late, []
        held = self._run[self._start :]
        self._run, self._start = [], 0
        if self._heap:
            held += self._heap
            held.sort()
            self._heap = []
        out += self._mark(held)
        return out

    def _absorb(self) -> None:
        """Sort the inbox into the held run; what reaches far behind it goes to the heap."""
        inbox = self._inbox
        if not inbox:
            return
        self._inbox = []
        run = self._run
        if self._start == len(run):
            run.clear()
            self._start = 0
        oldest_ms = min(map(_completion, inbox))
        if not run or oldest_ms > run[-1][0]:
            _canonical_sort(inbox)
            run += inbox
        else:
            self._merge(inbox, oldest_ms)
        newest = run[-1][0]
        if self._max_seen is None or newest > self._max_seen:
            self._max_seen = newest

    def _merge(self, inbox: list[Pending], oldest_ms: int) -> None:
        """Sort ``inbox`` into the run's tail, which costs the length of that tail: up to a
        few times the inbox; older stragglers are heaped one by one instead."""
        run = self._run
        floor = max(self._start, len(run) - _MERGE_SPAN * len(inbox) - 16)
        if floor > self._start and oldest_ms < run[floor][0]:
            oldest_ms = run[floor][0]
            heap = self._heap
            for item in inbox:
                if item[0] < oldest_ms:
                    heapq.heappush(heap, item)
            inbox = [item for item in inbox if item[0] >= oldest_ms]
            if not inbox:
                return
        cut = bisect_left(run, oldest_ms, lo=floor, key=_completion)
        tail = run[cut:]
        del run[cut:]
        tail += inbox
        _canonical_sort(tail)
        run += tail

    def _older_than(self, watermark: int) -> list[Pending]:
        run, start = self._run, self._start
        out: list[Pending] = []
        if start < len(run) and run[start][0] < watermark:
            cut = bisect_left(run, watermark, lo=start, key=_completion)
            out = run[start:cut]
            if cut == len(run):
                run.clear()
                cut = 0
            elif cut >= _COMPACT_AT and 2 * cut >= len(run):
                del run[:cut]
                cut = 0
            self._start = cut
        heap = self._heap
        if heap and heap[0][0] < watermark:
            behind = []
            while heap and heap[0][0] < watermark:
                behind.append(heapq.heappop(heap))
            out += behind
            out.sort()  # two sorted runs: one merge
        return out

    def _mark(self, out: list[Pending]) -> list[Pending]:
        if out:
            last = (out[-1][0], out[-1][1])
            if self.released is None or last > self.released:
                self.released = last
                self._released_ms = last[0]
        return out

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_run"] = self._run[self._start :]  # released items are not state
        state["_start"] = 0
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        if "_run" not in state:  # pickled before the run and inbox existed: all in the heap
            state = dict(state)
            state["_max_seen"] = state.pop("max_seen_ms", None)
            released = state.get("released")
            state["_released_ms"] = released[0] if released is not None else -math.inf
            state.update(_inbox=[], _run=[], _start=0)
        self.__dict__.update(state)
