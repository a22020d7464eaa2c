"""A checkpoint cut short by a crash is never restored in part.

A partition's checkpoint (its changed keys, then the meta record with the offsets they
cover) can span several produce batches. A worker killed between two of them left the
first records in the changelog: the restored state then held outcomes whose offsets the
meta did not include, and the re-read input was counted twice (the five-SIGKILL soak saw
10,408 of 200k outcomes consumed twice). Here checkpoints are written through the
worker's own :class:`PartitionView` and :class:`RecordBatches` to a real broker, with
producer batches of 512 bytes, and some are cut after a random number of records; every
restore must give exactly the state of the last whole checkpoint.
"""

from __future__ import annotations

import asyncio
import pickle
from collections.abc import Callable
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.worker.batches import RecordBatches
from streams.worker.state import PartitionView, load_changelog

pytestmark = pytest.mark.integration

PARTITION = 0
KEYS = [f"model-{c}" for c in "abcdef"]

# one checkpoint: values to set (None deletes), then None (whole) or how many of its
# records reach the broker before the crash
changes = st.dictionaries(st.sampled_from(KEYS), st.none() | st.integers(0, 10**6), min_size=1)
checkpoints = st.lists(st.tuples(changes, st.none() | st.integers(0, 12)), min_size=1, max_size=6)


def _state(view: PartitionView) -> dict[str, Any]:
    return {k: view.get(k) for k in KEYS if view.get(k) is not None}


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(plan=checkpoints)
def test_a_restore_gives_the_last_whole_checkpoint(
    kafka_bootstrap: str,
    make_topic: Callable[..., str],
    plan: list[tuple[dict[str, int | None], int | None]],
) -> None:
    topic = make_topic("changelog", partitions=1)
    asyncio.run(_run(kafka_bootstrap, topic, plan))


async def _run(
    bootstrap: str, topic: str, plan: list[tuple[dict[str, int | None], int | None]]
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_batch_size=512, linger_ms=0)
    await producer.start()
    try:
        batches = RecordBatches(lambda: producer)
        committed: dict[str, int] = {}  # the model: the state of the last whole checkpoint
        committed_seq = 0

        async def restore() -> PartitionView:
            data: dict[str, Any] = {}
            restored = await load_changelog(
                bootstrap, topic, PARTITION, data, PartitionView.commit_key(PARTITION)
            )
            view = PartitionView(topic, PARTITION, data, batches, rewrite=restored.unfinished)
            assert _state(view) == committed
            assert view.meta.get("seq", 0) == committed_seq
            return view

        view = await restore()
        for seq, (change, crash_after) in enumerate(plan, start=1):
            for key, value in change.items():
                if value is None:
                    view.pop(key, None)
                else:
                    view[key] = value
            view.meta["seq"] = seq
            view.stage()
            staged = batches.take()
            if crash_after is None:
                batches.extend(staged)
                await batches.deliver()
                committed = _state(view)
                committed_seq = seq
                continue
            # the crash: only the first records of the checkpoint reach the broker
            records = staged[topic, PARTITION][:-1][:crash_after]  # never the commit record
            for key, value in records:
                await producer.send_and_wait(topic, value, key=key, partition=PARTITION)
            view = await restore()
        await restore()
    finally:
        await producer.stop()


def test_an_unfinished_checkpoint_is_written_again_by_the_next(
    kafka_bootstrap: str, make_topic: Callable[..., str]
) -> None:
    """The first checkpoint after a restore rewrites every key of the unfinished one at its
    committed value (a deletion included), so a later restore, or a compacted log, never
    meets a record of the unfinished checkpoint as the latest of its key."""
    topic = make_topic("changelog", partitions=1)

    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await producer.start()
        try:
            batches = RecordBatches(lambda: producer)
            view = PartitionView(topic, PARTITION, {}, batches)
            view["model-a"] = 1
            view.meta["seq"] = 1
            view.stage()
            await batches.deliver()
            # unfinished: model-a changed, model-b created, no commit record
            for key, value in (("model-a", 2), ("model-b", 3)):
                blob = pickle.dumps(value)
                await producer.send_and_wait(topic, blob, key=f'"{key}"'.encode(), partition=0)
            data: dict[str, Any] = {}
            restored = await load_changelog(
                kafka_bootstrap, topic, PARTITION, data, PartitionView.commit_key(PARTITION)
            )
            assert (restored.discarded, restored.unfinished) == (2, {"model-a", "model-b"})
            view = PartitionView(topic, PARTITION, data, batches, restored.unfinished)
            assert view.dirty
            view.meta["seq"] = 2
            assert view.stage() == 2
            written = batches.take()[topic, PARTITION]
            assert written[:-1] and sorted(written[:-1]) == sorted(
                [(b'"model-a"', pickle.dumps(1, protocol=pickle.HIGHEST_PROTOCOL)),
                 (b'"model-b"', None)]
            )  # fmt: skip
        finally:
            await producer.stop()

    asyncio.run(run())
