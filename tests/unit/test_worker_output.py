"""A batch's output is delivered again from the same output until the broker takes it,
and a batch that cannot be delivered within the budget raises instead of hanging."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.worker.output import DeliveryFailed, deliver


class FlakyBatches:
    """Collects records like RecordBatches; the first ``failures`` deliveries raise."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.pending: list[Any] = []
        self.delivered: list[Any] = []
        self.attempts = 0

    def add(self, item: Any) -> None:
        self.pending.append(item)

    def discard(self) -> None:
        self.pending = []

    async def deliver(self) -> None:
        self.attempts += 1
        if self.attempts <= self.failures:
            self.pending = []  # a failed send: what was queued is gone
            raise ConnectionError(f"attempt {self.attempts} refused")
        self.delivered += self.pending
        self.pending = []


@given(st.integers(0, 6), st.lists(st.integers(), min_size=1, max_size=20))
@settings(max_examples=40, deadline=None)
def test_output_is_delivered_once_whole_after_any_number_of_failures(
    failures: int, output: list[int]
) -> None:
    batches = FlakyBatches(failures)

    def build(b: Any) -> None:
        for item in output:
            b.add(item)

    asyncio.run(deliver(build, batches, what="test", give_up_s=60, first_backoff_s=0.0001))  # type: ignore[arg-type]
    assert batches.attempts == failures + 1
    assert batches.delivered == output  # whole, in order, once


def test_a_batch_that_never_delivers_raises_within_its_budget() -> None:
    batches = FlakyBatches(failures=10**9)
    with pytest.raises(DeliveryFailed, match="did not take it") as info:
        asyncio.run(
            deliver(
                lambda b: None, batches, what="join output", give_up_s=0.05, first_backoff_s=0.01
            )
        )  # type: ignore[arg-type]
    assert "ConnectionError" in str(info.value)
    assert batches.attempts >= 2
