"""When a live worker may take a quiet stream for ended, and release what it holds.

Released early, outcomes and predictions still to come are *late* (processed out of
canonical order, so live and replay disagree). Two ways that happened:

- in a group, a worker whose own partitions were quiet released while another worker
  was still restoring or catching up on its join partitions (a rolling restart);
- a live stream's lull of a few seconds was taken for its end, and the stragglers of
  the lull came late.

So the end needs every join partition, whichever worker holds it, to have marked the end
of its inputs (each detect step reads every join partition's marks, with the input
offsets of the batch that made them), and what is held must be older than the reorder
lag by the wall clock (a replayed or backfilled stream always is).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from aiokafka import TopicPartition

__all__ = ["caught_up", "old_enough", "positions"]


def positions(
    own: Mapping[TopicPartition, int],
    marked: Iterable[Mapping[int, Mapping[str, int]] | None],
    join_topics: Iterable[str],
) -> dict[TopicPartition, int] | None:
    """The last offset processed of every partition the end depends on: this worker's own
    (``own``), and each join partition's inputs as its latest mark says (``marked``: per
    quiet detect step, join partition -> topic -> offset; None while a join partition has
    sent no mark). The oldest view of a partition wins."""
    done = dict(own)
    topics = tuple(join_topics)
    for marks in marked:
        if marks is None:
            return None
        for j, offsets in marks.items():
            for topic in topics:
                tp = TopicPartition(topic, j)
                last = offsets.get(topic, -1)
                done[tp] = min(done.get(tp, last), last)
    return done


def caught_up(done: Mapping[TopicPartition, int], ends: Mapping[TopicPartition, int]) -> bool:
    """Is every partition processed to the end the broker reports?"""
    return bool(done) and all(last + 1 >= ends[tp] for tp, last in done.items())


def old_enough(newest_held_ms: int | None, now_ms: float, lag_ms: int) -> bool:
    """May what is held be released at the end of the stream? Not while its newest event
    is within the reorder lag of the wall clock: a live stream's next events release it
    in order."""
    return newest_held_ms is None or newest_held_ms <= now_ms - lag_ms
