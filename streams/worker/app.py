"""The Faust application: thin batched adapters from topics to the pure join and detectors.

    predictions, ground-truth, rekey-*  ──► join_outcomes ──► outcomes (key = model_id)
    outcomes                            ──► detect_changes ──► alerts  (key = model_id)
    anything unparseable                ──► watchkeeper-dlq (reason + original bytes)

Both agents take whatever Faust's consumer has fetched for them as one batch (it hands
their topics over per fetch, :mod:`streams.consumer`) and touch Faust tables through
:class:`~streams.state.PartitionView`, so per-event framework work stays small while
consumer groups, changelogs and recovery remain Faust's.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

import faust
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from detectors.config import DetectorSettings
from detectors.track import Detection, ModelTrack
from streams.contract.alerts import build_alert
from streams.contract.events import (
    GroundTruth,
    Outcome,
    Prediction,
    Rejected,
    dead_letter,
    decode_outcomes,
    encode_outcomes,
    parse_ground_truth,
    parse_predictions,
)
from streams.engine.join import Joiner
from streams.engine.partitioning import partition_for, partitions_for
from streams.settings import Settings
from streams.store.breaker import RedisBreaker, worker_redis
from streams.store.health import HealthBuffer, HealthStore
from streams.store.orphans import OrphanWatch
from streams.worker.batches import RecordBatches
from streams.worker.consumer import BatchDrainConsumer, DirectSink, Fetched, Transport
from streams.worker.state import PartitionView, load_changelog
from streams.worker.topology import join_topic_names

__all__ = ["WATERMARK_KEY", "Pipeline", "label_event", "prediction_event"]

# key of the event-time markers the join sends to every outcomes partition (never a model id)
WATERMARK_KEY = b"\x00watermark"

# record batches of 256 KiB rather than Faust's 16 KiB: a join batch writes megabytes of
# changelog, and each batch costs a produce request
PRODUCER_BATCH_BYTES = 256 * 1024

log = logging.getLogger(__name__)
T = TypeVar("T")


def prediction_event(p: Prediction) -> dict[str, Any]:
    """A prediction back in contract form (for the re-key topic)."""
    return {
        "prediction_id": p.prediction_id,
        "model_id": p.model_id,
        "model_version": p.model_version,
        "timestamp": p.timestamp_ms,
        "prediction": p.prediction,
        "score": p.score,
        "segment": p.segment,
    }


def label_event(g: GroundTruth) -> dict[str, Any]:
    return {"prediction_id": g.prediction_id, "label": g.label, "timestamp": g.timestamp_ms}


class _App(faust.App):
    """Faust's app whose consumer hands the agents' topics over per fetch
    (:mod:`streams.consumer`)."""

    direct_sinks: dict[str, DirectSink]

    def _new_transport(self) -> Any:
        return Transport(self.conf.broker_consumer, self)


class Pipeline:
    """Builds the Faust app, its topics, tables and agents from settings."""

    def __init__(
        self, settings: Settings, detector_settings: DetectorSettings, partitions: int
    ) -> None:
        self.settings = settings
        self.detector_settings = detector_settings
        self.partitions = partitions
        s = settings
        self.app = _App(
            s.app_id,
            broker=s.broker,
            store="memory://",
            web_enabled=False,
            datadir=str(s.data_dir),
            topic_partitions=partitions,
            topic_replication_factor=s.replication_factor,
            table_standby_replicas=0,
            broker_session_timeout=s.session_timeout_s,
            broker_heartbeat_interval=s.heartbeat_interval_s,
            broker_rebalance_timeout=s.rebalance_timeout_s,
            broker_commit_interval=s.commit_interval_s,
            producer_max_batch_size=PRODUCER_BATCH_BYTES,
            stream_recovery_delay=0.0,
            consumer_auto_offset_reset="earliest",
            key_serializer="raw",
            value_serializer="raw",
        )
        t = s.topics
        pred, truth, rekey_pred, rekey_truth = join_topic_names(s)
        self._kind_of = {pred: "p", rekey_pred: "p", truth: "g", rekey_truth: "g"}
        self._rekey_topic = {"p": rekey_pred, "g": rekey_truth}

        def raw(*names: str) -> Any:
            return self.app.topic(*names, key_type=bytes, value_type=bytes)

        self.join_source = raw(pred, truth, rekey_pred, rekey_truth)
        self.rekey_topics = {k: raw(n) for k, n in self._rekey_topic.items()}
        self.outcomes = raw(t.outcomes)
        self.alerts = raw(t.alerts)
        self.dlq = raw(t.dlq)
        # values are pickled by PartitionView itself (bytes on the changelog)
        self.join_table = self.app.Table(
            "join-state", partitions=partitions, key_type=str, value_type=bytes
        )
        self.track_table = self.app.Table(
            "detector-state", partitions=partitions, key_type=str, value_type=bytes
        )
        self.track_views: dict[int, PartitionView] = {}
        # outcomes, watermarks, re-keyed events and changelog records of a batch
        self.batches = RecordBatches(self._kafka_producer)
        self._held_models: dict[str, int] = {}  # model -> outcomes partition, since last flush
        self._in_flight: set[asyncio.Future[Any]] = set()  # batches being processed
        self._unsaved: set[int] = set()  # outcomes partitions changed since the checkpoint
        self._held_acks: list[Fetched] = []  # outcomes processed since the checkpoint
        self._save_due = 0.0  # next checkpoint of detector state (monotonic)
        self._loading = asyncio.Lock()  # one partition state loaded at a time
        self._last_input: dict[int, float] = {}  # outcomes partition -> last batch (wall)
        self._last_join = 0.0  # last join batch (wall)
        self._offsets_reader: AIOKafkaConsumer | None = None  # end offsets, for _caught_up
        # newest event time read per (main input topic, partition); re-key topics are
        # sparse and not waited for
        self._source_wm: dict[str, dict[int, int]] = {pred: {}, truth: {}}
        self.joiners: dict[int, Joiner] = {}
        self._health: HealthStore | None = None
        self._counts: HealthBuffer | None = None
        self._orphans: OrphanWatch | None = None
        # one for all of the worker's Redis calls: while Redis is down none of them waits
        self.redis_breaker = RedisBreaker()
        # the agents subscribe their topics; the consumer hands the records to the sinks
        join_sink = DirectSink(self._kind_of)
        detect_sink = DirectSink([t.outcomes])
        self.sinks = (join_sink, detect_sink)
        self.app.direct_sinks = {topic: sink for sink in self.sinks for topic in sink.topics}
        self.app.agent(self.join_source, name="join_outcomes")(
            self._batched(join_sink, self._join_batch)
        )
        self.app.agent(self.outcomes, name="detect_changes")(
            self._batched(detect_sink, self._detect_batch)
        )
        self.app.timer(max(s.idle_flush_s / 2, 0.1), on_leader=False)(self.flush_idle)
        self.app.timer(s.health_interval_s, on_leader=False)(self._write_counts)
        self.app.on_partitions_revoked.connect(self._on_revoked)
        self.app.on_before_shutdown.connect(self._on_shutdown)

    def _kafka_producer(self) -> Any:
        """The aiokafka producer inside Faust's, so that our batches share its connection
        and are flushed by its shutdown."""
        producer: Any = self.app.producer
        return producer._ensure_producer()

    async def _on_shutdown(self, *_args: Any, **_kwargs: Any) -> None:
        """Write the last counters (they are buffered for up to ``health_interval_s``) and
        close the end-offsets reader, once the agents have stopped.

        Faust waits at shutdown for the messages it tracks to be acked; the agents' records
        are not tracked (see :mod:`streams.consumer`), so batches still in flight are
        waited for here, before their counters are written."""
        await self._finish_in_flight()
        if self._unsaved:
            await self._save_tracks()  # the held acks are not committed any more
        if self._counts is not None:
            await self._counts.flush(force=True)
            counts, snapshots = self._counts.unwritten()
            if counts or snapshots:
                log.error(
                    "stopping with Redis unreachable: %d counter increments and %d health "
                    "snapshots were not written (the detectors' state is in Kafka; only "
                    "these figures are lost)",
                    counts, snapshots,
                )  # fmt: skip
        if self._offsets_reader is not None:
            await self._offsets_reader.stop()
            self._offsets_reader = None

    async def _uninterrupted(self, work: Coroutine[Any, Any, T]) -> T:
        """Run a batch to its end, even when the worker stops or a rebalance begins.

        Faust cancels agents on shutdown; a batch cut short and then acked would be
        committed without its output. So the batch runs as its own task, a cancellation
        waits for it before passing on, and a revocation waits for it before dropping the
        partition state it is changing (see :meth:`_on_revoked`).
        """
        task = asyncio.ensure_future(work)
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            await task
            raise

    async def _finish_in_flight(self) -> None:
        if self._in_flight:
            await asyncio.wait(set(self._in_flight))

    async def _on_revoked(self, *_args: Any, **_kwargs: Any) -> None:
        """Drop partition state, to be reloaded from the changelogs when next used.

        Batches in flight finish first: a state reloaded while one was still delivering
        its changelog records came back behind offsets Faust then committed, and the
        records in between were never processed again (seen as outcomes held forever).
        """
        await self._finish_in_flight()
        for sink in self.sinks:  # fetched under the old assignment: fetched again
            sink.clear()
        # detector state not yet checkpointed is dropped with its unacked input, which
        # whoever owns the partitions now reads again from the committed offsets
        self._unsaved.clear()
        self._held_acks.clear()
        self.joiners.clear()
        self.track_views.clear()
        self._last_input.clear()
        self._held_models.clear()  # rebuilt from the (restored) table on next use

    @property
    def orphans(self) -> OrphanWatch:
        if self._orphans is None:
            self._orphans = OrphanWatch(
                self.health.redis,
                self.settings.redis_prefix,
                cooldown_s=self.settings.notify.orphan_cooldown_s,
                breaker=self.redis_breaker,
            )
        return self._orphans

    @property
    def health(self) -> HealthStore:
        if self._health is None:
            self._health = HealthStore(
                worker_redis(self.settings.redis_url), prefix=self.settings.redis_prefix
            )
        return self._health

    @property
    def counts(self) -> HealthBuffer:
        """Counter deltas and snapshots on their way to Redis (written every 0.5 s)."""
        if self._counts is None:
            self._counts = HealthBuffer(
                self.health, self.settings.health_interval_s, breaker=self.redis_breaker
            )
        return self._counts

    async def _view(self, table: Any, partition: int) -> PartitionView:
        """A partition's state, reloaded from its changelog on first use."""
        n = self.partitions

        def owns(key: str) -> bool:
            return partition_for(key, n) == partition

        applied = await load_changelog(
            self.settings.bootstrap_servers,
            table.changelog_topic.get_topic_name(),
            partition,
            table.data.data,
        )
        view = PartitionView(table, partition, owns, self.batches)
        log.info("%s partition %d: %d changelog records restored", table.name, partition, applied)
        return view

    async def joiner(self, partition: int) -> Joiner:
        joiner = self.joiners.get(partition)
        if joiner is not None:
            return joiner
        async with self._loading:  # two loads of one partition would race on its dict
            joiner = self.joiners.get(partition)
            if joiner is None:
                view = await self._view(self.join_table, partition)
                joiner = Joiner(
                    view,
                    ttl_ms=self.settings.join_ttl_ms,
                    task_for=lambda m: self.detector_settings.for_model(m).task,
                )
                joiner.rebuild_index()
                self.joiners[partition] = joiner
            return joiner

    async def _dead_letter(
        self, rejected: list[Rejected], msg: Any, reasons: Counter[str], sent: list[Any]
    ) -> None:
        """Send rejected records to the DLQ; their delivery futures join ``sent``, which
        the batch awaits before it checkpoints state and acks its offsets."""
        for r in rejected:
            reasons[r.reason] += 1
            body = dead_letter(
                r, topic=msg.topic, partition=msg.partition, offset=msg.offset, key=msg.key
            )
            sent.append(await self.dlq.send(key=msg.key, value=body))

    def _batched(
        self, sink: DirectSink, process: Callable[[list[Any]], Coroutine[Any, Any, bool]]
    ) -> Callable[[Any], Any]:
        """An agent body: take a batch of fetches from the sink, process its records to
        the end, ack them once their state is checkpointed (``process`` says whether it
        checkpointed; if not, they are held for the next checkpoint). Fetches from before
        a rebalance are dropped unacked: Faust fetches them again from the committed
        offsets, for whoever owns them now."""
        s = self.settings

        async def agent(_stream: Any) -> None:
            async for batch in sink.batches(s.batch_max, s.batch_max_bytes):
                await self._settled()  # before the batch counts as in flight
                generation = self.app.consumer_generation_id
                current = [f for f in batch if f.generation == generation]
                if not current:
                    continue
                records = [r for f in current for r in f.records]
                if await self._uninterrupted(process(records)):
                    self._ack(current)
                else:
                    self._held_acks += current

        return agent

    def _ack(self, batch: list[Fetched]) -> None:
        consumer: BatchDrainConsumer = self.app.consumer  # type: ignore[assignment]
        for fetched in batch:
            consumer.ack_fetched(fetched)

    async def _settled(self) -> None:
        """Wait while a rebalance restores tables and re-seeks offsets.

        Faust can hand over a batch before its table recovery finished; applying it then
        would be overwritten by the restored state, so batches wait for recovery.
        """
        while self.app.rebalancing:
            await asyncio.sleep(0.05)

    async def _join_batch(self, records: list[Any]) -> bool:
        self._last_join = time.monotonic()
        if log.isEnabledFor(logging.DEBUG):
            log.debug("join batch %s", [(r.topic, r.partition, r.offset) for r in records])
        s = self.settings
        n = self.partitions
        by_model: dict[str, list[Outcome]] = defaultdict(list)
        rekey: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
        reasons: Counter[str] = Counter()
        touched: set[int] = set()
        sent: list[Any] = []
        # parse everything first, so that the keys of the whole batch are hashed at once
        parsed: list[tuple[Joiner, int, str, list[Any]]] = []
        ids: list[str] = []
        for msg in records:
            kind = self._kind_of[msg.topic]
            record_ms = msg.timestamp if msg.timestamp and msg.timestamp > 0 else 0
            here = msg.partition
            joiner = self.joiners.get(here)
            if joiner is None:
                joiner = await self.joiner(here)
            view: PartitionView = joiner.store  # type: ignore[assignment]
            if view.already_processed(msg.topic, msg.offset):
                reasons["redelivered"] += 1
                continue
            view.processed(msg.topic, msg.offset)
            touched.add(here)
            parse = parse_predictions if kind == "p" else parse_ground_truth
            events, rejected = parse(
                msg.value, record_timestamp_ms=record_ms, max_bytes=s.max_message_bytes
            )
            if events:
                if msg.topic in self._source_wm:
                    self._read_up_to(msg.topic, here, [e.timestamp_ms for e in events], reasons)
                parsed.append((joiner, here, kind, events))
                ids += [e.prediction_id for e in events]
            if rejected:
                await self._dead_letter(rejected, msg, reasons, sent)
        homes = iter(partitions_for(ids, n))
        for joiner, here, kind, events in parsed:
            if kind == "p":
                for p in cast(list[Prediction], events):
                    if (home := next(homes)) != here:
                        rekey["p", home].append(prediction_event(p))
                    elif (o := joiner.add_prediction(p)) is not None:
                        by_model[o.model_id].append(o)
            else:
                for g in cast(list[GroundTruth], events):
                    if (home := next(homes)) != here:
                        rekey["g", home].append(label_event(g))
                    elif (o := joiner.add_label(g)) is not None:
                        by_model[o.model_id].append(o)
        await self._publish_join(by_model, rekey, touched, reasons, sent)
        return True  # the join checkpoints every batch

    def _read_up_to(
        self, topic: str, partition: int, times: list[int], counts: Counter[str]
    ) -> None:
        """Advance a source partition's event-time mark; count events that come more than
        ``reorder_lag_ms`` behind it (the watermark assumes each partition is in order
        within the lag; events beyond it can reach the detectors out of order)."""
        marks = self._source_wm[topic]
        mark = marks.get(partition)
        if mark is not None and min(times) < mark - self.settings.reorder_lag_ms:
            behind = sum(t < mark - self.settings.reorder_lag_ms for t in times)
            counts["disordered_input"] += behind
            log.warning(
                "%s[%d]: %d events more than reorder_lag_ms behind the newest read (%d)",
                topic, partition, behind, mark,
            )  # fmt: skip
        newest = max(times)
        if mark is None or newest > mark:
            marks[partition] = newest

    def _join_watermark(self, partition: int) -> int | None:
        """How far a join partition has read in event time: the older of its predictions
        and ground-truth partitions (Kafka fetches them independently, so one can run far
        ahead of the other). None until both have delivered events."""
        marks = [m.get(partition) for m in self._source_wm.values()]
        if any(m is None for m in marks):
            return None
        return min(m for m in marks if m is not None)

    async def _publish_join(
        self,
        by_model: dict[str, list[Outcome]],
        rekey: dict[tuple[str, int], list[dict[str, Any]]],
        touched: set[int],
        reasons: Counter[str],
        sent: list[Any],
    ) -> None:
        """Publish outputs, wait for the broker, then checkpoint the join state."""
        add = self.batches.add
        n = self.partitions
        outcomes = self.settings.topics.outcomes
        for model_id, outs in by_model.items():
            key = model_id.encode()
            add(outcomes, partition_for(key, n), key, encode_outcomes(outs))
        for (kind, partition), items in rekey.items():
            add(self._rekey_topic[kind], partition, None, orjson.dumps(items))
        for joined in touched:  # after the outcomes: every outcomes partition, in order
            if (wm := self._join_watermark(joined)) is not None:
                marker = orjson.dumps({"join_partition": joined, "watermark_ms": wm})
                for target in range(n):
                    add(outcomes, target, WATERMARK_KEY, marker)
        for partition in touched:
            joiner = self.joiners.get(partition)
            if joiner is None:
                continue
            for u in joiner.drain_unscorable():
                reasons["unscorable"] += 1
                body = orjson.dumps(
                    {
                        "reason": "unscorable",
                        "detail": u.detail,
                        "prediction_id": u.prediction_id,
                        "model_id": u.model_id,
                        "prediction": u.prediction,
                        "label": u.label,
                        "dlq_schema": 1,
                    }
                )
                sent.append(await self.dlq.send(key=u.prediction_id.encode(), value=body))
        sent += await self.batches.send()
        if sent:
            await asyncio.gather(*sent)
        # checkpoint after the output is with the broker (see streams.state)
        joiners = [j for p in touched if (j := self.joiners.get(p)) is not None]
        for joiner in joiners:
            joiner.store.stage()  # type: ignore[attr-defined]
        await self.batches.deliver()
        seen: set[str] = set()
        for joiner in joiners:
            stats = joiner.drain_stats()
            seen.update(stats.predictions)
            self.counts.add_join_stats(stats)
        self.counts.add_skipped(reasons)
        await self.counts.maybe_flush()
        await self._raise_orphans(seen)

    async def _raise_orphans(self, models: set[str]) -> None:
        """One ``orphaned_model`` alert per model without an owner (per cooldown)."""
        alerts = await self.orphans.check(models)
        if not alerts:
            return
        sent = [
            await self.alerts.send(key=a["model_id"].encode(), value=orjson.dumps(a))
            for a in alerts
        ]
        await asyncio.gather(*sent)
        await self.orphans.raised(alerts)
        self.counts.put_health({}, {a["model_id"]: Counter(orphaned_model=1) for a in alerts})

    def tracks(self, partition: int) -> PartitionView:
        """The detection state (one :class:`ModelTrack` per model) of a loaded partition."""
        return self.track_views[partition]

    async def load_tracks(self, partition: int) -> PartitionView:
        view = self.track_views.get(partition)
        if view is not None:
            return view
        async with self._loading:  # two loads of one partition would race on its dict
            view = self.track_views.get(partition)
            if view is None:
                view = await self._view(self.track_table, partition)
                self.track_views[partition] = view
                for model_id, track in view.items():  # restored outcomes still waiting
                    if isinstance(track, ModelTrack) and track.pending:
                        self._held_models[model_id] = partition
                self._last_input.setdefault(partition, time.monotonic())
            return view

    def _track(self, model_id: str, partition: int) -> ModelTrack:
        view = self.tracks(partition)
        track = view.get(model_id)
        if track is None:
            config = self.detector_settings.for_model(model_id)
            track = ModelTrack(model_id, config, lag_ms=self.settings.reorder_lag_ms)
            view[model_id] = track
        return track

    async def _detect_batch(self, records: list[Any]) -> bool:
        touched: dict[str, int] = {}
        touched_partitions: set[int] = set()
        counters: dict[str, Counter[str]] = defaultdict(Counter)
        reasons: Counter[str] = Counter()
        dead: list[Any] = []
        now = time.monotonic()
        for msg in records:
            view = self.track_views.get(msg.partition)
            if view is None:
                view = await self.load_tracks(msg.partition)
            if view.already_processed(msg.topic, msg.offset):
                reasons["redelivered"] += 1
                continue
            view.processed(msg.topic, msg.offset)
            touched_partitions.add(msg.partition)
            if msg.key == WATERMARK_KEY:
                self._advance_watermark(view, msg.value)
                continue
            try:
                outcomes = decode_outcomes(msg.value)
            except ValueError as exc:
                rejected = Rejected("invalid_value", str(exc), None, msg.value or b"")
                await self._dead_letter([rejected], msg, reasons, dead)
                continue
            for o in outcomes:
                track = self._track(o.model_id, msg.partition)
                late = track.sequencer.late
                track.push(o.completed_ms, o.prediction_id, o.error, o.model_version)
                if track.sequencer.late > late == 0:
                    log.warning(
                        "%s: outcome %s (completed %d) arrived after the watermark released "
                        "%s; watermarks %s. It is processed now, out of canonical order.",
                        o.model_id, o.prediction_id, o.completed_ms, track.sequencer.released,
                        {k: v for k, v in view.offsets.items() if k.startswith("wm:")},
                    )  # fmt: skip
                touched[o.model_id] = msg.partition
                counters[o.model_id]["outcomes"] += 1
        for model_id, partition in touched.items():
            self._held_models[model_id] = partition
        detections: dict[str, list[Detection]] = {}
        released: dict[str, int] = {}
        for partition in touched_partitions:
            upto = self._watermark(self.tracks(partition))
            if upto is None:
                continue  # not every join partition has reported yet: hold
            for model_id, p in list(self._held_models.items()):
                if p != partition:
                    continue
                track = self.tracks(partition)[model_id]
                held = track.pending
                found = track.release(upto)
                if track.pending != held or model_id in touched:  # changed: checkpoint it
                    detections[model_id] = found
                    released[model_id] = partition
                if not track.pending:
                    del self._held_models[model_id]
        touched = {**touched, **released}
        for partition in touched_partitions:
            self._last_input[partition] = now
        if dead:
            await asyncio.gather(*dead)
        saved = await self._emit(detections, touched, counters, touched_partitions)
        self.counts.add_skipped(reasons)
        await self.counts.maybe_flush()
        return saved

    def _advance_watermark(self, view: PartitionView, raw: bytes) -> None:
        try:
            marker = orjson.loads(raw)
            view.advance(f"wm:{int(marker['join_partition'])}", int(marker["watermark_ms"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            log.warning("ignoring a malformed watermark marker: %r", raw[:200])

    def _watermark(self, view: PartitionView) -> int | None:
        """Release bound for one outcomes partition: the oldest newest-event-time over
        all join partitions, minus the reorder lag. An outcome not yet here completes
        at or after its join partition's newest event (give or take the lag), so below
        this bound the canonical order is final. None until every partition reported."""
        marks = [view.offsets.get(f"wm:{j}") for j in range(self.partitions)]
        if any(m is None for m in marks):
            return None
        return min(m for m in marks if m is not None) - self.settings.reorder_lag_ms

    async def _caught_up(self) -> bool:
        """Has this worker processed every record the broker holds on its partitions?

        Asked of the broker directly (Faust's cached high-water marks were seen stale)."""
        if self._offsets_reader is None:
            self._offsets_reader = AIOKafkaConsumer(
                bootstrap_servers=self.settings.bootstrap_servers, group_id=None
            )
            await self._offsets_reader.start()
        outcomes = self.settings.topics.outcomes
        views: dict[TopicPartition, PartitionView] = {}
        for tp in self.app.consumer.assignment():
            if tp.topic in self._kind_of:
                views[TopicPartition(tp.topic, tp.partition)] = (
                    await self.joiner(tp.partition)
                ).store  # type: ignore[assignment]
            elif tp.topic == outcomes:
                views[TopicPartition(tp.topic, tp.partition)] = await self.load_tracks(tp.partition)
        if not views:
            return False
        ends = await self._offsets_reader.end_offsets(list(views))
        return all(view.offsets.get(tp.topic, -1) + 1 >= ends[tp] for tp, view in views.items())

    async def _load_assigned_tracks(self) -> None:
        """Load every assigned outcomes partition, which registers outcomes restored from
        its changelog that are still held, so that a restarted worker releases them even
        if no new input arrives."""
        outcomes = self.settings.topics.outcomes
        for tp in self.app.consumer.assignment():
            if tp.topic == outcomes and tp.partition not in self.track_views:
                await self.load_tracks(tp.partition)

    async def _write_counts(self) -> None:
        await self.counts.maybe_flush()

    async def flush_idle(self) -> None:
        await self._uninterrupted(self._flush_idle())

    async def _flush_idle(self) -> None:
        """At the end of the stream, release what the watermark still holds.

        The end is when this worker's join has produced nothing and an outcomes partition
        has received nothing (outcomes or watermark markers, which every join batch sends
        to every partition) for ``idle_flush_s``. Quiet is judged per partition, not per
        model: a model with a gap is still covered by the watermark, and draining it early
        would turn its next outcomes into late ones.
        """
        if self.app.rebalancing:
            return
        await self._load_assigned_tracks()
        cutoff = time.monotonic() - self.settings.idle_flush_s
        if self._last_join > cutoff:
            return  # the join is still producing: not the end of the stream
        quiet = {p for p, t in self._last_input.items() if t <= cutoff}
        if not quiet or not await self._caught_up():
            return  # a stall (CPU, fetch, broker) is not the end of the stream
        idle = {m: p for m, p in self._held_models.items() if p in quiet}
        for partition in quiet:
            del self._last_input[partition]
        detections = {}
        for model_id, partition in idle.items():
            del self._held_models[model_id]
            views = self.track_views.get(partition)
            track = views.get(model_id) if views is not None else None
            if track is not None and track.pending:
                detections[model_id] = track.flush()
        touched = {m: idle[m] for m in detections}
        if detections:
            log.info("end of stream: released held outcomes of %d models", len(detections))
        await self._emit(detections, touched, {}, save=True)

    async def _emit(
        self,
        detections: dict[str, list[Detection]],
        touched: dict[str, int],
        counters: dict[str, Counter[str]],
        partitions: set[int] | None = None,
        *,
        save: bool = False,
    ) -> bool:
        """Publish alerts, checkpoint touched tracks when due (or ``save``), update health
        snapshots. Returns whether the detector state was checkpointed."""
        detected_at = datetime.now(tz=UTC)
        alerts: list[dict[str, Any]] = []
        counters = defaultdict(Counter, counters)
        for model_id, found in detections.items():
            for d in found:
                track = self.tracks(touched[model_id])[model_id]
                alert = build_alert(
                    d.change,
                    model_id=model_id,
                    model_version=d.model_version,
                    detected_at=detected_at,
                    config_fingerprint=track.config.fingerprint(),
                )
                alerts.append(alert)
                counters[model_id][alert["kind"]] += 1
        if alerts:  # the owner as registered now, so a reader of the topic knows who is paged
            owners = await self.orphans.owners_of({a["model_id"] for a in alerts})
            for alert in alerts:
                if (owner := owners.get(alert["model_id"])) is not None:
                    alert["owner"], alert["runbook"] = owner.owner, owner.runbook
        sent = [
            await self.alerts.send(key=alert["model_id"].encode(), value=orjson.dumps(alert))
            for alert in alerts
        ]
        if sent:
            await asyncio.gather(*sent)
        for model_id, partition in touched.items():
            self.tracks(partition).touch(model_id)
        self._unsaved.update(touched.values())
        self._unsaved.update(partitions or ())
        saved = save or time.monotonic() >= self._save_due
        if saved:
            await self._save_tracks()
        snapshots = {m: self._snapshot(self.tracks(p)[m], alerts) for m, p in touched.items()}
        self.counts.put_health(snapshots, counters)
        return saved

    async def _save_tracks(self) -> None:
        """Checkpoint the detector state changed since the last checkpoint.

        Every ``checkpoint_interval_s`` rather than every batch: each checkpoint pickles
        every model's detector bank it covers (about 5 KB each), which with 10,000 models
        took most of a worker. The outcomes read in between stay unacked until then, so
        the committed offsets never pass the checkpointed state. (A batch still running
        while another task saves is not held yet: it is acked after its own save.)
        """
        for partition in self._unsaved:
            if (view := self.track_views.get(partition)) is not None:
                view.stage()
        self._unsaved.clear()
        await self.batches.deliver()
        self._save_due = time.monotonic() + self.settings.checkpoint_interval_s
        held, self._held_acks = self._held_acks, []  # batches finished before this save
        self._ack(held)

    @staticmethod
    def _snapshot(track: ModelTrack, alerts: list[dict[str, Any]]) -> dict[str, Any]:
        monitor = track.monitor
        snap: dict[str, Any] = {
            "model_version": track.model_version or "",
            "outcomes": monitor.n,
            "held": track.pending,
            "late_outcomes": track.sequencer.late,
            "error_rate": round(monitor.error_rate, 6),
            "recent_error_rate": round(monitor.recent_error_rate, 6),
            "last_event_time_ms": monitor.last_event_time_ms or 0,
        }
        mine = [a for a in alerts if a["model_id"] == track.model_id]
        if mine:
            snap["last_alert_id"] = mine[-1]["alert_id"]
            snap["last_alert_kind"] = mine[-1]["kind"]
        return snap
