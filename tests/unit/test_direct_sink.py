"""The consumer hands fetches to a DirectSink; the agent must get every record once, in
order, in batches within its limits, whatever the sizes of fetches and records."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from faust.types import TP
from hypothesis import given
from hypothesis import strategies as st

from streams.worker.faust_internals import DirectSink, Fetched


@dataclass
class Record:
    offset: int
    value: bytes | None


def fetches_of(sizes: list[list[int]]) -> list[Fetched]:
    """Fetches of one partition, with consecutive offsets; ``sizes`` are value lengths."""
    out, offset = [], 0
    for fetch in sizes:
        records = []
        for n in fetch:
            records.append(Record(offset, b"x" * n if n else None))
            offset += 1
        out.append(Fetched(TP("t", 0), records, generation=1))
    return out


async def take(sink: DirectSink, total: int, max_records: int, max_bytes: int) -> list[list]:
    batches: list[list] = []
    seen = 0
    async for batch in sink.batches(max_records, max_bytes):
        batches.append(batch)
        seen += sum(len(f.records) for f in batch)
        if seen >= total:
            break
    return batches


fetch_sizes = st.lists(
    st.lists(st.integers(min_value=0, max_value=50), min_size=1, max_size=20),
    min_size=1,
    max_size=12,
)


@given(fetch_sizes, st.integers(min_value=1, max_value=30), st.integers(min_value=1, max_value=400))
def test_batches_hold_every_record_once_in_order_within_limits(
    sizes: list[list[int]], max_records: int, max_bytes: int
) -> None:
    async def run() -> list[list]:
        sink = DirectSink(["t"], max_fetches=len(sizes))
        for fetched in fetches_of(sizes):
            await sink.put(fetched)
        total = sum(len(f) for f in sizes)
        return await take(sink, total, max_records, max_bytes)

    batches = asyncio.run(run())
    offsets = [r.offset for batch in batches for f in batch for r in f.records]
    assert offsets == list(range(sum(len(f) for f in sizes)))
    for batch in batches:
        records = [r for f in batch for r in f.records]
        assert 1 <= len(records) <= max_records
        sizes_in = [len(r.value or b"") for r in records]
        # only the record that reaches the byte limit may be the one that passes it
        assert sum(sizes_in[:-1]) < max_bytes
        assert all(f.generation == 1 and f.records for f in batch)


def test_the_first_fetch_is_awaited_and_later_ones_are_not() -> None:
    async def run() -> tuple[list[int], bool]:
        sink = DirectSink(["t"])
        batches = sink.batches(100, 10_000)
        pending = asyncio.ensure_future(anext(batches))
        await asyncio.sleep(0)
        waited = not pending.done()  # nothing queued yet: the agent waits
        (first,) = fetches_of([[1, 1]])
        await sink.put(first)
        batch = await pending
        return [r.offset for f in batch for r in f.records], waited

    offsets, waited = asyncio.run(run())
    assert waited
    assert offsets == [0, 1]


def test_clear_drops_queued_fetches_and_the_split_rest() -> None:
    async def run() -> tuple[int, int]:
        sink = DirectSink(["t"])
        for fetched in fetches_of([[1] * 5, [1] * 3]):
            await sink.put(fetched)
        batch = await anext(sink.batches(2, 10_000))  # splits the first fetch
        return sum(len(f.records) for f in batch), sink.clear()

    taken, dropped = asyncio.run(run())
    assert (taken, dropped) == (2, 6)
