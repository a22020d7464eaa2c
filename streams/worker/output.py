"""Publishing a batch's output until the broker has it, and encoding engine output.

A batch's input counts as processed only after its outputs and state are delivered.
A failed delivery is retried with backoff from the same output (never by processing the
input again, which the state already includes). A batch that still cannot deliver after
``give_up_s`` raises :class:`DeliveryFailed`; the worker then stops with a non-zero exit
and whoever restarts it resumes from the last checkpoint. Re-sent records are
idempotent downstream: re-keyed events join once, outcomes are de-duplicated by the
detect step, changelog records are keyed state.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from streams.contract.dead_letters import MAX_KEY_BYTES
from streams.contract.internal import (
    encode_forwarded,
    encode_join_mark,
    encode_joined_outcomes,
)
from streams.engine.dead_letters import DeadLetter
from streams.engine.join_step import JoinOutput
from streams.errors import WatchkeeperError
from streams.worker.batches import RecordBatches

__all__ = ["DeliveryFailed", "add_dead_letters", "add_join_output", "deliver"]

log = logging.getLogger(__name__)


class DeliveryFailed(WatchkeeperError):
    """The broker did not take a batch's output within the retry budget."""


def add_join_output(
    batches: RecordBatches,
    out: JoinOutput,
    *,
    outcomes_topic: str,
    outcomes_partitions: int,
    rekey_topics: dict[str, str],
    dlq_topic: str,
    dlq_partitions: int,
) -> None:
    """Queue one join batch's output: outcomes, then re-keyed events and marks, dead
    letters, and last the join mark to every outcomes partition (after the outcomes)."""
    add = batches.add
    for partition, groups in out.outcomes.items():
        for joined in groups:
            key = joined.model_id.encode()
            for value in encode_joined_outcomes(joined):
                add(outcomes_topic, partition, key, value)
    for home, forwards in out.forwards.items():
        for f in forwards:
            for value in encode_forwarded(f):
                add(rekey_topics[f.kind], home, None, value)
    add_dead_letters(batches, out.dead_letters, dlq_topic, dlq_partitions)
    if out.mark is not None:
        mark = encode_join_mark(out.mark)
        for target in range(outcomes_partitions):
            add(outcomes_topic, target, None, mark)


def add_dead_letters(
    batches: RecordBatches, letters: list[DeadLetter], dlq_topic: str, dlq_partitions: int
) -> None:
    """Dead letters go to the DLQ partition of their source partition (0 when unknown)."""
    for d in letters:
        key = d.source.key if d.source is not None else None
        if key is None and d.fields is not None and "prediction_id" in d.fields:
            key = str(d.fields["prediction_id"]).encode()
        partition = d.source.partition % dlq_partitions if d.source is not None else 0
        # a key may be up to 1 MB; the envelope records its size (source.key_size)
        batches.add(dlq_topic, partition, key[:MAX_KEY_BYTES] if key else key, d.encode())


async def deliver(
    build: Callable[[RecordBatches], None],
    batches: RecordBatches,
    *,
    what: str,
    give_up_s: float,
    first_backoff_s: float = 0.2,
) -> None:
    """Queue what ``build`` adds and wait for the broker; on failure build it again and
    resend, with backoff, for at most ``give_up_s``."""
    deadline = time.monotonic() + give_up_s
    backoff = first_backoff_s
    attempt = 1
    while True:
        build(batches)
        try:  # a broker that stopped answering must not hold the batch past the budget
            await asyncio.wait_for(batches.deliver(), max(deadline - time.monotonic(), 0.5))
            if attempt > 1:
                log.warning("%s delivered after %d attempts", what, attempt)
            return
        except Exception as exc:  # noqa: BLE001 - any producer failure is retried
            batches.discard()
            if time.monotonic() + backoff > deadline:
                raise DeliveryFailed(
                    f"{what}: the broker did not take it for {give_up_s:.0f} s "
                    f"({attempt} attempts; last error {type(exc).__name__}: {exc})"
                ) from exc
            log.warning(
                "%s: delivery failed (%s: %s); retrying in %.1f s",
                what, type(exc).__name__, exc, backoff,
            )  # fmt: skip
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)
            attempt += 1
