"""Every use of Faust's private names, in one module: the consumer that hands the agents'
topics over one fetch at a time, the accessor of the producer, and a worker whose stop on
a signal is bounded.

``tests/unit/test_faust_internals.py`` checks each private name against the installed
Faust, so an upgrade that changes one fails there rather than in a running worker.

The consumer.

Faust delivers every Kafka message on its own: a ``Message``, an ``Event``, a conductor
callback, a channel queue put and get, an ack under a thread lock, and four tasks plus an
``asyncio.wait`` per message in the drain loop (``Service.wait_first``). With one event
per Kafka message that was about 190 µs per event, most of a worker's CPU.

Here the drain loop puts each fetch of a sink's topics (``DirectSink``) into the sink as
aiokafka's records, once per partition and fetch, and the agents ack the offsets in bulk
after processing them. Everything else (topics without a sink) goes through Faust's
conductor as before, with one delivery task per fetch rather
than four per message. What Faust's loop guarantees is kept: a rebalance that suspends
the flow cancels the rest of the fetch (Faust then seeks back to the committed offsets),
read offsets and offset gaps are tracked, and acks go into the same bookkeeping that
Faust commits from.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any, cast

import faust
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from faust.types.tuples import ack_lock
from mode import Service

__all__ = [
    "PRIVATE_NAMES",
    "BatchDrainConsumer",
    "BoundedStopWorker",
    "DirectSink",
    "Fetched",
    "Transport",
    "kafka_producer",
]

PRIVATE_NAMES: dict[str, tuple[str, ...]] = {
    # class: private names this module reads, calls or overrides
    "faust.transport.consumer.Consumer": (
        "_committed_offset",
        "_acked_index",
        "_acked",
        "_n_acked",
        "_commit_every",
        "_read_offset",
        "_add_gap",
        "_drain_messages",
        "_wait_next_records",
        "_buffered_partitions",
        "_to_message",
    ),
    "faust.transport.drivers.aiokafka.Producer": ("_ensure_producer",),
    "mode.worker.Worker": ("_schedule_shutdown", "_signal_stop_time"),
}


def kafka_producer(app: Any) -> Any:
    """The aiokafka producer inside Faust's, so our record batches share its connection
    and are flushed by its shutdown."""
    return app.producer._ensure_producer()


# conductor deliveries between yields to the event loop
YIELD_EVERY = 500


@dataclass(slots=True)
class Fetched:
    """Records of one partition from one fetch, and the group generation they belong to:
    after a rebalance they are dropped unacked, and Faust fetches them again."""

    tp: TP
    records: list[Any]  # aiokafka ConsumerRecord: topic, partition, offset, key, value, ms
    generation: int

    def split(self, n: int) -> tuple[Fetched, Fetched]:
        return (
            Fetched(self.tp, self.records[:n], self.generation),
            Fetched(self.tp, self.records[n:], self.generation),
        )


class DirectSink:
    """A bounded queue of fetches of some topics, read by one agent in batches."""

    def __init__(self, topics: Iterable[str], max_fetches: int = 16) -> None:
        self.topics = frozenset(topics)
        self._queue: asyncio.Queue[Fetched] = asyncio.Queue(max_fetches)
        self._carry: Fetched | None = None  # the rest of a fetch split across batches

    async def put(self, fetched: Fetched) -> None:
        await self._queue.put(fetched)

    def clear(self) -> int:
        """Drop queued fetches (their partitions may be revoked); how many records."""
        dropped = len(self._carry.records) if self._carry is not None else 0
        self._carry = None
        while not self._queue.empty():
            dropped += len(self._queue.get_nowait().records)
        return dropped

    def _next(self) -> Fetched | None:
        if self._carry is not None:
            fetched, self._carry = self._carry, None
            return fetched
        return None if self._queue.empty() else self._queue.get_nowait()

    async def batches(self, max_records: int, max_bytes: int) -> AsyncIterator[list[Fetched]]:
        """Whatever is queued, up to ``max_records`` records or ``max_bytes`` of values (a
        fetch that does not fit is split); waits only for the first fetch."""
        while True:
            first = self._next() or await self._queue.get()
            batch: list[Fetched] = []
            records = size = 0
            fetched: Fetched | None = first
            while fetched is not None:
                room = max_records - records
                for i, r in enumerate(fetched.records[:room]):
                    size += len(r.value or b"")
                    if size >= max_bytes:
                        room = i + 1
                        break
                if room < len(fetched.records):
                    fetched, self._carry = fetched.split(room)
                batch.append(fetched)
                records += len(fetched.records)
                if self._carry is not None or records >= max_records or size >= max_bytes:
                    break
                fetched = self._next()
            yield batch


class BatchDrainConsumer(faust_aiokafka.Consumer):
    """Faust's consumer that hands the sinks' topics over per fetch (see the module)."""

    @property
    def sinks(self) -> dict[str, DirectSink]:
        return cast(dict[str, DirectSink], getattr(self.app, "direct_sinks", {}))

    def ack_fetched(self, fetched: Fetched) -> None:
        """Mark a processed fetch's offsets for Faust's next commit, as ``ack`` does per
        message; a fetch from an earlier generation is not acked (it is fetched again)."""
        if fetched.generation != self.app.consumer_generation_id:
            return
        tp = fetched.tp
        with ack_lock:
            committed = self._committed_offset[tp]
            index = self._acked_index[tp]
            offsets = [
                r.offset
                for r in fetched.records
                if (committed is None or r.offset >= committed) and r.offset not in index
            ]
            index.update(offsets)
            self._acked[tp].extend(offsets)
            self._n_acked += len(offsets)

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - worker only
        consumer_should_stop = cast(Service, self)._stopped.is_set
        fetcher_should_stop = cast(Service, fetcher)._stopped.is_set
        set_flag, unset_flag = self.diag.set_flag, self.diag.unset_flag
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                set_flag(CONSUMER_FETCHING)
                direct, messages = await self._fetch()
                await self.sleep(0)  # as Faust does: the fetch may not have yielded
                if (direct or messages) and not self.should_stop:
                    await self.wait_first(self._deliver(direct, messages), self.suspend_flow.wait())
                unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            unset_flag(CONSUMER_FETCHING)

    async def _fetch(self) -> tuple[list[tuple[DirectSink, Fetched]], list[tuple[TP, Any]]]:
        """One fetch, as Faust's ``getmany`` takes it, split into the sinks' fetches and
        the conductor's messages."""
        records, active = await self._wait_next_records(1.0)
        generation = self.app.consumer_generation_id
        if records is None or self.should_stop:
            return [], []
        if not self.flow_active:
            try:
                await self.perform_seek()
            except Exception as exc:
                self.log.warning(f"exception performing seek when flow not active {exc}")
            return [], []
        sinks = self.sinks
        direct: list[tuple[DirectSink, Fetched]] = []
        rest: dict[TP, Any] = {}
        for tp, recs in records.items():
            if not recs or not (active is None or tp in active or tp in self._buffered_partitions):
                continue
            self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
            sink = sinks.get(tp.topic)
            if sink is None:
                rest[tp] = recs
            else:
                direct.append((sink, Fetched(tp, recs, generation)))
        to_message = self._to_message
        messages = [(tp, to_message(tp, r)) for tp, r in self.scheduler.iterate(rest)]
        return direct, messages

    async def _commit_if_due(self) -> None:
        """Commit after ``broker_commit_every`` acks, as Faust's loop does per message."""
        if self._commit_every is not None and self._n_acked >= self._commit_every:
            self._n_acked = 0
            await self.commit()

    def _moved_on(self, generation: int) -> bool:
        return not self.flow_active or self.app.consumer_generation_id != generation

    async def _deliver(
        self, direct: list[tuple[DirectSink, Fetched]], messages: list[tuple[TP, Any]]
    ) -> None:
        """Faust's per-message body of ``_drain_messages``, for one fetch."""
        generation = self.app.consumer_generation_id
        read_offset = self._read_offset
        acks_enabled_for = self.app.topics.acks_enabled_for
        for sink, fetched in direct:
            if self._moved_on(generation):
                return  # a rebalance began: Faust seeks back to the committed offsets
            tp, recs = fetched.tp, fetched.records
            r_offset = read_offset[tp]
            if r_offset is not None and recs[0].offset < r_offset:
                fetched.records = recs = [r for r in recs if r.offset >= r_offset]
                if not recs:
                    continue
            if acks_enabled_for(tp.topic):
                previous = r_offset
                for r in recs if recs[-1].offset - recs[0].offset >= len(recs) else recs[:1]:
                    if previous and r.offset - previous > 1:
                        await self._add_gap(tp, previous + 1, r.offset)
                    previous = r.offset
            await self._commit_if_due()
            await sink.put(fetched)
            read_offset[tp] = recs[-1].offset
        callback = self.callback
        since_yield = 0
        for tp, message in messages:
            if self._moved_on(generation):
                return
            since_yield += 1
            if since_yield >= YIELD_EVERY:
                await asyncio.sleep(0)
                since_yield = 0
            offset = message.offset
            r_offset = read_offset[tp]
            if r_offset is not None and offset < r_offset:
                continue  # already delivered (Faust drops these too)
            if r_offset and offset - r_offset > 1 and acks_enabled_for(message.topic):
                await self._add_gap(tp, r_offset + 1, offset)
            await self._commit_if_due()
            await callback(message)
            read_offset[tp] = offset


class Transport(faust_aiokafka.Transport):
    """The ``kafka://`` transport with :class:`BatchDrainConsumer`."""

    Consumer = BatchDrainConsumer


FRAMEWORK_LOGGERS = ("faust", "mode", "aiokafka")


class BoundedStopWorker(faust.Worker):
    """A Faust worker that exits with ``stop_exit_code`` if a stop asked by SIGTERM or
    SIGINT has not finished after ``stop_deadline_s``.

    With the broker unreachable, Faust's stop waits for an offset commit for the whole
    request timeout, and batches in flight for their delivery retries: a supervisor's
    SIGTERM seemed ignored for 40 s and more. Input not acked is read again by whoever
    takes the partitions, so leaving is safe; hanging is not."""

    stop_deadline_s: float = 30.0
    stop_exit_code: int = 70

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        """Below debug, the frameworks say only warnings: at info, Faust, mode and aiokafka
        wrote some 150 lines of service starts, subscriptions and stops in 15 s, among
        which the worker's own lines (``streams.*``) were lost."""
        super().on_setup_root_logger(logger, level)
        if level > logging.DEBUG:
            for name in FRAMEWORK_LOGGERS:
                logging.getLogger(name).setLevel(max(level, logging.WARNING))

    def _schedule_shutdown(self, signal: signal.Signals) -> None:
        if not self._signal_stop_time:
            self.loop.call_later(self.stop_deadline_s, self._stop_overdue)
        super()._schedule_shutdown(signal)

    def _stop_overdue(self) -> None:
        logging.getLogger(__name__).critical(
            "the worker did not stop within %.0f s of the signal (broker unreachable?); "
            "exiting with code %d: input not acked is read again after a restart",
            self.stop_deadline_s,
            self.stop_exit_code,
        )
        logging.shutdown()
        os._exit(self.stop_exit_code)
