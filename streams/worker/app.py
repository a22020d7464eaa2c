"""The Faust application: the composition root of the worker.

    predictions, ground-truth, re-key topics ──► join  (WorkerJoin)   ──► outcomes, re-key
    outcomes                                 ──► detect (WorkerDetect) ──► alerts
    anything that breaks the contract        ──► watchkeeper-dlq (reason + original)

Both agents take whatever Faust's consumer fetched for them as one batch (it hands their
topics over per fetch, :mod:`streams.worker.faust_internals`); the steps they drive are
the engine's, shared with replay. Consumer groups, changelogs and recovery stay Faust's.

A batch's input is acked only after its output and state are delivered. An agent that
cannot go on (its output undeliverable for ``output_retry_s``, or a bug outside the
per-record isolation of the engine) stops the worker with exit code 70, so a supervisor
restarts it from the last checkpoint, instead of leaving a process that holds its
partitions while its lag grows.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any, TypeVar

import faust
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from detectors.config import DetectorSettings
from detectors.track import ModelTrack
from streams.connections import aiokafka_kwargs
from streams.contract.alerts import build_model_limit_alert, build_stream_silent_alert
from streams.contract.internal import Kind
from streams.engine.detect_step import DetectOutput
from streams.metrics import ALERTS, BATCH_DURATION, DEAD_LETTERS, EVENTS
from streams.settings import Settings
from streams.store.breaker import OUTAGE_ERRORS, worker_redis
from streams.store.health import HealthBuffer, HealthStore
from streams.store.maintenance import MaintenanceWatch, VersionLog
from streams.store.orphans import OrphanWatch
from streams.topology import changelog_topic_names, join_topic_names
from streams.worker.batches import RecordBatches
from streams.worker.broker_auth import faust_credentials
from streams.worker.broker_watch import BrokerWatch
from streams.worker.detect_step import WorkerDetect
from streams.worker.end_of_stream import caught_up, old_enough, positions
from streams.worker.faust_internals import (
    BatchDrainConsumer,
    DirectSink,
    Fetched,
    Transport,
    kafka_producer,
)
from streams.worker.join_step import WorkerJoin
from streams.worker.observe import GaugedBreaker, LagGauges, ModelGauges
from streams.worker.output import deliver
from streams.worker.stream_silence import StreamSilence

__all__ = ["EXIT_AGENT_FAILED", "Pipeline"]

# record batches of 256 KiB rather than Faust's 16 KiB: a join batch writes megabytes of
# changelog, and each batch costs a produce request
PRODUCER_BATCH_BYTES = 256 * 1024
EXIT_AGENT_FAILED = 70  # EX_SOFTWARE
DISORDER_LOG_EVERY_S = 10.0
MODEL_LIMIT_ALERT_EVERY_S = 3600.0  # one fleet alert per hour while models are refused
BROKER_PROBE_S = 2.0  # a metadata request this often tells a silent broker (BrokerWatch)
OBSERVE_S = 3.0  # lag and per-model gauges this often (with --metrics-port)
MAINTENANCE_TICK_S = 60.0  # a worker restarted more often than maintenance_check_s still checks
REDIS_PROBE_S = 15.0  # ping Redis when no other call told whether it answers (redis_up)

# children bound once: a batch increments each with its aggregated count
_PREDICTIONS, _LABELS = EVENTS.labels(kind="prediction"), EVENTS.labels(kind="label")
_JOIN_TIME, _DETECT_TIME = BATCH_DURATION.labels(step="join"), BATCH_DURATION.labels(step="detect")

log = logging.getLogger(__name__)
T = TypeVar("T")


class _App(faust.App):
    """Faust's app whose consumer hands the agents' topics over per fetch."""

    direct_sinks: dict[str, DirectSink]

    def _new_transport(self) -> Any:
        return Transport(self.conf.broker_consumer, self)


class Pipeline:
    """Builds the Faust app, its topics and agents from settings."""

    def __init__(
        self,
        settings: Settings,
        detector_settings: DetectorSettings,
        partitions: int,
        *,
        dlq_partitions: int | None = None,
    ) -> None:
        self.settings = settings
        self.detector_settings = detector_settings
        self.partitions = partitions
        s = settings
        self.app = _App(
            s.app_id,
            broker=s.broker,
            broker_credentials=faust_credentials(s.kafka),
            store="memory://",
            web_enabled=False,
            datadir=str(s.data_dir),
            topic_partitions=partitions,
            topic_replication_factor=s.replication_factor,
            broker_session_timeout=s.session_timeout_s,
            consumer_group_instance_id=s.instance_id,
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
        kinds: dict[str, Kind] = {pred: "p", rekey_pred: "p", truth: "g", rekey_truth: "g"}

        def raw(*names: str) -> Any:
            return self.app.topic(*names, key_type=bytes, value_type=bytes)

        self.alerts = raw(t.alerts)
        join_changelog, detect_changelog = changelog_topic_names(s)
        self.batches = RecordBatches(lambda: kafka_producer(self.app))
        self.join = WorkerJoin(
            s,
            partitions=partitions,
            changelog=join_changelog,
            batches=self.batches,
            kinds=kinds,
            rekey_topics={"p": rekey_pred, "g": rekey_truth},
            task_for=lambda m: detector_settings.for_model(m).task,
            dlq_partitions=dlq_partitions or partitions,
        )
        self.detect = WorkerDetect(
            s,
            detector_settings,
            partitions=partitions,
            changelog=detect_changelog,
            batches=self.batches,
            dlq_partitions=dlq_partitions or partitions,
        )
        self.fatal: BaseException | None = None
        self._in_flight: set[asyncio.Future[Any]] = set()
        self._held_acks: list[Fetched] = []  # outcomes processed since the checkpoint
        self._generation: int | None = None  # of the last assignment
        self._model_limit_window: int | None = None  # of the last model_limit alert
        self._preload: asyncio.Future[Any] | None = None  # state of newly assigned partitions
        self._save_due = 0.0
        self._last_join = 0.0
        self._offsets_reader: AIOKafkaConsumer | None = None  # end offsets, broker probes
        self.broker_watch = BrokerWatch(
            s.session_timeout_s, s.shutdown_grace_s + 5, time.monotonic()
        )
        self.stream_silence = StreamSilence(s.stream_silent_s, time.monotonic())
        self._disorder: Counter[str] = Counter()  # logged once per interval
        self._disorder_logged = time.monotonic()
        self._health: HealthStore | None = None
        self._counts: HealthBuffer | None = None
        self._orphans: OrphanWatch | None = None
        self._maintenance: MaintenanceWatch | None = None
        self._versions: VersionLog | None = None
        self._maintenance_due = 0.0  # monotonic
        self.redis_breaker = GaugedBreaker()
        self.model_gauges = ModelGauges(s.max_models, s.model_retention_ms)
        self.lag_gauges = LagGauges()
        join_sink = DirectSink(kinds)
        detect_sink = DirectSink([t.outcomes])
        self.sinks = (join_sink, detect_sink)
        self.app.direct_sinks = {topic: sink for sink in self.sinks for topic in sink.topics}
        self.app.agent(raw(*kinds), name="join_outcomes")(
            self._batched(join_sink, self._join_batch)
        )
        self.app.agent(raw(t.outcomes), name="detect_changes")(
            self._batched(detect_sink, self._detect_batch)
        )
        self.app.timer(max(s.idle_flush_s / 2, 0.1), on_leader=False)(self.flush_idle)
        self.app.timer(s.health_interval_s, on_leader=False)(self._write_counts)
        self.app.timer(BROKER_PROBE_S, on_leader=False)(self._probe_broker)
        if s.stream_silent_s > 0:
            every = min(max(s.stream_silent_s / 10, 0.5), 30.0)
            self.app.timer(every, on_leader=False)(self._check_stream)
        if s.metrics_port:
            self.app.timer(OBSERVE_S, on_leader=False)(self._observe)
        if s.maintenance_check_s > 0:  # ticks often, checks when due: the first soon after start
            every = min(s.maintenance_check_s, MAINTENANCE_TICK_S)
            self.app.timer(every, on_leader=False)(self._check_maintenance)
        self.app.on_partitions_revoked.connect(self._on_revoked)
        self.app.on_partitions_assigned.connect(self._on_assigned)
        self.app.on_before_shutdown.connect(self._on_shutdown)

    # --- shared resources -------------------------------------------------------------------

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
    def maintenance(self) -> MaintenanceWatch:
        if self._maintenance is None:
            self._maintenance = MaintenanceWatch(
                self.health.redis, self.settings.redis_prefix, breaker=self.redis_breaker
            )
        return self._maintenance

    @property
    def versions(self) -> VersionLog:
        """When each model's version became current (``not_retrained``)."""
        if self._versions is None:
            self._versions = VersionLog(
                self.health.redis,
                self.settings.redis_prefix,
                retention_ms=self.settings.model_retention_ms,
                max_models=self.settings.max_models,
                breaker=self.redis_breaker,
            )
        return self._versions

    @property
    def health(self) -> HealthStore:
        if self._health is None:
            self._health = HealthStore(
                worker_redis(self.settings),
                prefix=self.settings.redis_prefix,
                retention_s=self.settings.model_retention_ms / 1000,
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

    # --- agent plumbing ---------------------------------------------------------------------

    def _batched(
        self, sink: DirectSink, process: Callable[[list[Any]], Coroutine[Any, Any, bool]]
    ) -> Callable[[Any], Any]:
        """An agent body: take a batch of fetches from the sink, process its records to
        the end, ack them once their state is checkpointed (``process`` says whether it
        checkpointed; if not, they are held for the next checkpoint). Fetches from before
        a rebalance are dropped unacked: Faust fetches them again from the committed
        offsets, for whoever owns them now. Anything the batch raises stops the worker."""
        s = self.settings

        async def agent(_stream: Any) -> None:
            try:
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
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the worker must not half-live
                self._die(exc)
                raise

        return agent

    def _die(self, exc: BaseException) -> None:
        """Stop the worker with a non-zero exit (see the module docstring)."""
        if self.fatal is not None:
            return
        self.fatal = exc
        log.critical(
            "an agent cannot go on (%s: %s); stopping the worker with exit code %d so that "
            "it restarts from its last checkpoint",
            type(exc).__name__, exc, EXIT_AGENT_FAILED, exc_info=exc,
        )  # fmt: skip
        loop = asyncio.get_event_loop()
        loop.call_later(30.0, os._exit, EXIT_AGENT_FAILED)  # if the clean stop hangs
        os.kill(os.getpid(), signal.SIGTERM)

    def _ack(self, batch: list[Fetched]) -> None:
        consumer: BatchDrainConsumer = self.app.consumer  # type: ignore[assignment]
        for fetched in batch:
            consumer.ack_fetched(fetched)

    async def _settled(self) -> None:
        """Wait while a rebalance re-seeks offsets and the partitions kept are decided
        (a batch of the new assignment must not run on state about to be dropped)."""
        while self.app.rebalancing:
            await asyncio.sleep(0.05)

    async def _uninterrupted(self, work: Coroutine[Any, Any, T]) -> T:
        """Run a batch to its end, even when the worker stops or a rebalance begins
        (a batch cut short and then acked would be committed without its output).

        When the worker stops, the batch gets ``shutdown_grace_s``: with the broker gone it
        could not finish, and a worker that ignores SIGTERM is worse than one that leaves
        a batch unacked (whoever takes its partitions reads the batch again)."""
        task = asyncio.ensure_future(work)
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            await self._wait_or_abandon({task})
            raise

    async def _wait_or_abandon(self, tasks: set[asyncio.Future[Any]]) -> None:
        """Wait for ``tasks`` up to ``shutdown_grace_s``; then cancel them, and make the
        worker exit non-zero (their input is not acked)."""
        grace = self.settings.shutdown_grace_s
        _, pending = await asyncio.wait(tasks, timeout=grace)
        if not pending:
            return
        for t in pending:
            t.cancel()
        if self.fatal is None:
            self.fatal = TimeoutError(f"{len(pending)} batch(es) unfinished after {grace:.0f} s")
            log.error(
                "stopping with %d batch(es) unfinished after shutdown_grace_s=%.0f s (is the "
                "broker reachable?); their input was not acked and is read again by whoever "
                "takes the partitions; exit code %d",
                len(pending), grace, EXIT_AGENT_FAILED,
            )  # fmt: skip

    async def _finish_in_flight(self, *, stopping: bool = False) -> None:
        if self._in_flight:
            if stopping:
                await self._wait_or_abandon(set(self._in_flight))
            else:
                await asyncio.wait(set(self._in_flight))

    async def _on_revoked(self, *_args: Any, **_kwargs: Any) -> None:
        """Finish batches in flight and forget what was fetched; which partition states
        to keep is decided when the new assignment is known (:meth:`_on_assigned`).

        Batches in flight finish first: a state reloaded while one was still delivering
        its changelog records came back behind offsets Faust then committed."""
        await self._finish_in_flight()
        if self._preload is not None:  # loads for the old assignment: decided again
            self._preload.cancel()
            await asyncio.gather(self._preload, return_exceptions=True)
            self._preload = None
        for sink in self.sinks:  # fetched under the old assignment: fetched again
            sink.clear()
        # outcomes processed since the last checkpoint stay unacked: Faust re-reads them
        # from the committed offsets, and a partition kept here skips them (its state has
        # them), while a partition that moved is read again by its new owner
        self._held_acks.clear()

    async def _on_assigned(self, *args: Any, **_kwargs: Any) -> None:
        """Keep the state of partitions this worker held in the generation just before,
        drop the rest (reloaded from the changelog if they come back later).

        Under Kafka's eager protocol every rebalance revokes everything; reloading every
        partition stalled the whole group for the restore of all its state, although
        most partitions stay where they were. A partition held in generation N and
        assigned again in N + 1 was processed by nobody else in between, so its state in
        memory is current. After a longer gap (this worker was out of the group, its
        partitions elsewhere meanwhile) everything is reloaded. The newly assigned
        partitions are loaded at once, concurrently."""
        assigned = (args[1] if len(args) > 1 else None) or ()  # (sender, assigned)
        generation = self.app.consumer_generation_id
        join = {tp.partition for tp in assigned if tp.topic in self.join.kinds}
        outcomes = {tp.partition for tp in assigned if tp.topic == self.settings.topics.outcomes}
        follows = self._generation is not None and generation == self._generation + 1
        if self._generation is not None and not follows and (self.join.steps or self.detect.steps):
            log.warning(
                "rejoined the group at generation %s after generation %s (out of the group "
                "meanwhile: broker or network lost, or a stall past session_timeout_s); the "
                "state of every partition is reloaded from its changelog",
                generation, self._generation,
            )  # fmt: skip
        kept_join = set(self.join.steps) & join if follows else set()
        kept_detect = set(self.detect.steps) & outcomes if follows else set()
        self.join.drop(set(self.join.steps) - kept_join)
        self.model_gauges.drop_partitions(set(self.detect.steps) - kept_detect)
        self.detect.drop(set(self.detect.steps) - kept_detect)
        self._generation = generation
        self._preload = asyncio.ensure_future(
            asyncio.gather(
                self.join.preload(join - kept_join), self.detect.preload(outcomes - kept_detect)
            )
        )
        self._preload.add_done_callback(self._preloaded)
        log.info(
            "assigned partitions (generation %s): join %s outcomes %s; state kept for "
            "join %s outcomes %s",
            generation, sorted(join), sorted(outcomes), sorted(kept_join), sorted(kept_detect),
        )  # fmt: skip

    def _preloaded(self, task: asyncio.Future[Any]) -> None:
        if not task.cancelled() and (exc := task.exception()) is not None:
            # the agents load the partition again when they need it, and fail loudly then
            log.warning("loading partition state ahead failed: %s: %s", type(exc).__name__, exc)

    async def _on_shutdown(self, *_args: Any, **_kwargs: Any) -> None:
        """Finish batches in flight, checkpoint, write the last counters."""
        if self._preload is not None:
            self._preload.cancel()
        await self._finish_in_flight(stopping=True)
        if self.detect.unsaved and self.fatal is None:
            await self._save_tracks()
        if self._versions is not None:
            await self._versions.flush()
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

    # --- the join ---------------------------------------------------------------------------

    async def _join_batch(self, records: list[Any]) -> bool:
        began = time.perf_counter()
        self._last_join = time.monotonic()
        batch = await self.join.process(records)
        totals = batch.stats.totals()
        _PREDICTIONS.inc(totals["predictions"])
        _LABELS.inc(totals["labels"])
        _count_dead_letters(batch.dead_letters)
        self._note_disorder(batch.counts)
        for partition, models in batch.partitions.items():
            for key, counts in self.join.counters(partition, models).items():
                self.counts.set_counts(key, f"j{partition}", counts)
        await self.counts.maybe_flush()
        await self._raise_orphans(set(batch.stats.predictions))
        if batch.refused_models:
            await self._raise_model_limit(batch.refused_models)
        _JOIN_TIME.observe(time.perf_counter() - began)
        return True  # the join checkpoints every batch

    async def _raise_model_limit(self, refused: set[str]) -> None:
        """One fleet ``model_limit`` alert per window, whichever partitions refuse."""
        now = datetime.now(UTC)
        window = int(now.timestamp() // MODEL_LIMIT_ALERT_EVERY_S)
        if window == self._model_limit_window:
            return
        self._model_limit_window = window
        alert = build_model_limit_alert(
            sorted(refused),
            limit=self.settings.max_models,
            detected_at=now,
            window_s=MODEL_LIMIT_ALERT_EVERY_S,
        )
        log.error("%s", alert["message"])
        await self._publish_alerts([alert])

    async def _raise_orphans(self, models: set[str]) -> None:
        """One ``orphaned_model`` alert per model without an owner (per cooldown)."""
        alerts = await self.orphans.check(models)
        if not alerts:
            return
        await self._publish_alerts(alerts)
        await self.orphans.raised(alerts)
        self.counts.put_health({}, {a["model_id"]: Counter(orphaned_model=1) for a in alerts})

    async def _check_maintenance(self) -> None:
        """``maintenance_overdue`` for owners not confirmed and versions not retrained in
        time, once per model, reason and period across workers (MaintenanceWatch)."""
        now = time.monotonic()
        if self.fatal is not None or now < self._maintenance_due:
            return
        self._maintenance_due = now + self.settings.maintenance_check_s
        alerts = await self.maintenance.due()
        if not alerts:
            return
        try:
            await self._publish_alerts(alerts)
        except BaseException:
            await self.maintenance.release(alerts)
            raise
        log.info("raised %d maintenance_overdue alerts", len(alerts))

    async def _publish_alerts(self, alerts: list[dict[str, Any]]) -> None:
        sends = [
            await self.alerts.send(key=a["model_id"].encode(), value=orjson.dumps(a))
            for a in alerts
        ]
        await asyncio.gather(*sends)
        published = Counter((str(a["kind"]), str(a["severity"])) for a in alerts)
        for (kind, severity), n in published.items():
            ALERTS.labels(kind=kind, severity=severity).inc(n)

    def _note_disorder(self, counts: Counter[str]) -> None:
        """Disorder is logged as one summary line per interval, never per event."""
        for name in ("disordered_input", "late_outcomes", "duplicate_outcomes"):
            if counts.get(name):
                self._disorder[name] += counts[name]
        now = time.monotonic()
        if self._disorder and now - self._disorder_logged >= DISORDER_LOG_EVERY_S:
            log.warning(
                "in the last %.0f s: %d input events more than reorder_lag_ms behind their "
                "partition, %d outcomes reached a detector after later ones, %d duplicate "
                "outcomes dropped",
                now - self._disorder_logged,
                self._disorder["disordered_input"],
                self._disorder["late_outcomes"],
                self._disorder["duplicate_outcomes"],
            )
            self._disorder.clear()
            self._disorder_logged = now

    # --- the detectors ----------------------------------------------------------------------

    async def _detect_batch(self, records: list[Any]) -> bool:
        began = time.perf_counter()
        outputs, dead = await self.detect.process(records)
        counts: Counter[str] = Counter()
        for _, out in outputs:
            counts.update(out.counts)
        self._note_disorder(counts)
        saved = await self._emit(outputs)
        if dead:  # undecodable outcomes messages: in no partition's state
            self.counts.add_skipped(dead)
            _count_dead_letters(dead)
        await self.counts.maybe_flush()
        _DETECT_TIME.observe(time.perf_counter() - began)
        return saved

    async def _emit(self, outputs: list[tuple[int, DetectOutput]], *, save: bool = False) -> bool:
        """Publish alerts, checkpoint when due (or ``save``), update health snapshots.
        Returns whether the detector state was checkpointed."""
        detected_at = datetime.now(tz=UTC)
        alerts: list[dict[str, Any]] = []
        counters: dict[str, Counter[str]] = defaultdict(Counter)
        touched: dict[str, int] = {}
        for partition, out in outputs:
            found = out.alerts(detected_at)
            alerts += found
            for a in found:
                counters[a["model_id"]][a["kind"]] += 1
            for model_id in out.touched:
                touched[model_id] = partition
            self.detect.touch(partition, out.touched)
            for key, counts in self.detect.count(partition, out).items():
                self.counts.set_counts(key, f"d{partition}", counts)
        # with the counts, before any await: a flush in between would write a model's
        # counts without the snapshot that matches them (outcomes counted, not shown)
        snapshots = {m: _snapshot(self.detect.track(p, m), alerts) for m, p in touched.items()}
        self.counts.put_health(snapshots, counters)
        for _, out in outputs:  # the exact history, written with the counts that match it
            if out.series:
                self.counts.add_series(out.series)
        self.model_gauges.note(snapshots, touched)
        self.versions.note({m: snap["model_version"] for m, snap in snapshots.items()})
        await self.versions.maybe_flush()  # off the batch path: at most once a second
        if alerts:  # the owner as registered now, so a reader of the topic knows who is paged
            owners = await self.orphans.owners_of({a["model_id"] for a in alerts})
            for alert in alerts:
                if (owner := owners.get(alert["model_id"])) is not None:
                    alert["owner"], alert["runbook"] = owner.owner, owner.runbook
            await self._publish_alerts(alerts)
        saved = save or time.monotonic() >= self._save_due
        if saved:
            await self._save_tracks()
        return saved

    async def _save_tracks(self) -> None:
        """Checkpoint the detector state changed since the last checkpoint, then ack the
        outcomes it includes. Every ``checkpoint_interval_s`` rather than every batch:
        each checkpoint pickles every model's detector bank it covers (about 5 KB)."""
        self.detect.stage()
        staged = self.batches.take()
        s = self.settings
        await deliver(
            lambda b: b.extend(staged),
            self.batches,
            what="detector state",
            give_up_s=s.output_retry_s,
        )
        self._save_due = time.monotonic() + s.checkpoint_interval_s
        held, self._held_acks = self._held_acks, []  # batches finished before this save
        self._ack(held)

    # --- the end of the stream ---------------------------------------------------------------

    async def _write_counts(self) -> None:
        await self.counts.maybe_flush()

    async def flush_idle(self) -> None:
        if self.fatal is None:
            await self._uninterrupted(self._flush_idle())

    async def _flush_idle(self) -> None:
        """At the end of the stream, release what the watermark still holds.

        The end is when this worker's join has produced nothing and an outcomes partition
        has received nothing (outcomes or join marks, which every join batch sends to
        every partition) for ``idle_flush_s``, this worker has read everything the broker
        holds on its partitions, and every join partition, whichever worker holds it,
        has marked the end of its inputs (a worker of the group still restoring or
        catching up will publish more). Quiet is judged per partition, not per model.

        Not what arrived within ``reorder_lag_ms`` of the wall clock: a live stream's
        lull is not its end, and its next events release those outcomes in order (a
        flush would make the stragglers of the lull late). They go once they are that
        old."""
        if self.app.rebalancing:
            return
        await self._load_assigned_tracks()
        cutoff = time.monotonic() - self.settings.idle_flush_s
        if self._last_join > cutoff:
            return
        quiet = {p for p, t in self.detect.last_input.items() if t <= cutoff}
        if not quiet or not await self._caught_up(quiet):
            return  # a stall (CPU, fetch, broker) is not the end of the stream
        now_ms = time.time() * 1000
        outputs = []
        for partition in quiet:
            step = self.detect.steps.get(partition)
            newest = step.newest_held_ms() if step is not None else None
            if not old_enough(newest, now_ms, self.settings.reorder_lag_ms):
                continue  # live traffic in a lull: asked again on the next tick
            del self.detect.last_input[partition]
            if step is not None and step.held:
                outputs.append((partition, step.flush()))
        if outputs:
            log.info(
                "end of stream: released held outcomes of %d models",
                sum(len(o.touched) for _, o in outputs),
            )
            await self._emit(outputs, save=True)
        elif self._held_acks:
            # the last batches (join marks, say) came after the last checkpoint and hold
            # nothing to release: checkpoint anyway, or they stay unacked until new input
            await self._save_tracks()

    async def _load_assigned_tracks(self) -> None:
        """Load every assigned outcomes partition, so that a restarted worker releases
        restored outcomes even if no new input arrives."""
        outcomes = self.settings.topics.outcomes
        for tp in self.app.consumer.assignment():
            if tp.topic == outcomes and tp.partition not in self.detect.steps:
                await self.detect.step(tp.partition)

    async def _reader(self) -> AIOKafkaConsumer:
        """A consumer outside the group, for end offsets and probes (started once)."""
        if self._offsets_reader is None:
            s = self.settings
            reader = AIOKafkaConsumer(
                **aiokafka_kwargs(s.bootstrap_servers, s.kafka), group_id=None
            )
            try:
                await reader.start()
            except BaseException:
                await reader.stop()
                raise
            self._offsets_reader = reader
        return self._offsets_reader

    async def _probe_broker(self) -> None:
        """Ask the broker for metadata; :class:`BrokerWatch` logs an outage once. Bounded
        below the timer's interval, so that probes never pile up."""

        async def ask() -> None:
            await (await self._reader()).topics()

        try:
            await asyncio.wait_for(ask(), BROKER_PROBE_S / 2)
        except (TimeoutError, KafkaError, OSError) as exc:
            self.broker_watch.failed(time.monotonic(), type(exc).__name__)
        else:
            self.broker_watch.answered(time.monotonic())

    async def _check_stream(self) -> None:
        """Raise (and resolve) the fleet ``model_silent`` alert from the predictions
        topic's end offsets (:class:`StreamSilence`)."""
        if self.fatal is not None:
            return
        topic = self.settings.topics.predictions
        try:
            reader = await asyncio.wait_for(self._reader(), 5.0)
            parts = reader.partitions_for_topic(topic) or set()
            if not parts:
                await asyncio.wait_for(reader.topics(), 5.0)
                parts = reader.partitions_for_topic(topic) or set()
            tps = [TopicPartition(topic, p) for p in sorted(parts)]
            if not tps:
                return
            ends = await asyncio.wait_for(reader.end_offsets(tps), 5.0)
        except (TimeoutError, KafkaError, OSError):
            return  # a broker that does not answer is BrokerWatch's to report
        now = time.monotonic()
        state = self.stream_silence.observe(sum(ends.values()), now)
        if state is None:
            return
        quiet = now - self.stream_silence.changed if state == "firing" else 0.0
        s = self.settings
        alert = build_stream_silent_alert(
            detected_at=datetime.now(UTC),
            quiet_s=quiet if state == "firing" else s.stream_silent_s,
            window_s=s.stream_silent_s,
            resolved=state == "resolved",
        )
        if state == "firing":
            log.error("%s", alert["message"])
        else:
            log.warning("%s", alert["message"])
        await self._publish_alerts([alert])

    async def _observe(self) -> None:
        """The gauges not counted per batch (only with a metrics port): per-model health,
        consumer lag of the assigned partitions, and whether Redis answers."""
        self.model_gauges.publish()
        if self.fatal is None and not self.app.rebalancing:
            lags = await self._lags()
            if lags is not None:
                self.lag_gauges.publish(lags)
        await self._probe_redis()

    async def _lags(self) -> dict[tuple[str, int], int] | None:
        """High watermark minus the next offset to process, per assigned input partition
        whose state is loaded (records fetched but not processed yet are lag); None when
        the broker does not answer."""
        outcomes = self.settings.topics.outcomes
        positions: dict[TopicPartition, int] = {}
        for tp in self.app.consumer.assignment():
            if tp.topic in self.join.kinds and tp.partition in self.join.views:
                done = self.join.offsets(tp.partition)
            elif tp.topic == outcomes and tp.partition in self.detect.views:
                done = self.detect.offsets(tp.partition)
            else:
                continue
            positions[TopicPartition(tp.topic, tp.partition)] = done.get(tp.topic, -1) + 1
        if not positions:
            return {}
        try:
            reader = await asyncio.wait_for(self._reader(), 5.0)
            ends = await asyncio.wait_for(reader.end_offsets(list(positions)), 5.0)
        except (TimeoutError, KafkaError, OSError):
            return None  # a broker that does not answer is BrokerWatch's to report
        return {(tp.topic, tp.partition): ends[tp] - at for tp, at in positions.items()}

    async def _probe_redis(self) -> None:
        """Ping Redis, through the breaker like any call, when no call told for a while
        whether it answers (an idle worker writes nothing), so that ``redis_up`` is true."""
        breaker = self.redis_breaker
        seen = breaker.observed_at
        if seen is not None and time.monotonic() - seen < REDIS_PROBE_S:
            return
        if not breaker.available():
            return
        try:
            await self.health.redis.ping()
        except OUTAGE_ERRORS as exc:
            breaker.failed("pinging Redis", exc)
        else:
            breaker.succeeded()

    async def _caught_up(self, quiet: set[int]) -> bool:
        """Has this worker processed every record the broker holds on its partitions, and
        has every join partition (by its latest mark on the ``quiet`` outcomes
        partitions) processed every record of its inputs?"""
        try:
            reader = await asyncio.wait_for(self._reader(), 5.0)
        except (TimeoutError, KafkaError, OSError):
            return False
        outcomes = self.settings.topics.outcomes
        done: dict[TopicPartition, int] = {}
        for tp in self.app.consumer.assignment():
            if tp.topic in self.join.kinds:
                await self.join.step(tp.partition)
                offsets = self.join.offsets(tp.partition)
            elif tp.topic == outcomes:
                await self.detect.step(tp.partition)
                offsets = self.detect.offsets(tp.partition)
            else:
                continue
            done[TopicPartition(tp.topic, tp.partition)] = offsets.get(tp.topic, -1)
        if not done:
            return False
        steps = [self.detect.steps.get(p) for p in quiet]
        marked = [None if step is None else step.join_offsets() for step in steps]
        everything = positions(done, marked, self.join.kinds)
        if everything is None:
            return False  # a join partition has sent no mark yet
        try:  # a broker that does not answer is not the end of the stream
            ends = await asyncio.wait_for(reader.end_offsets(list(everything)), 5.0)
        except (TimeoutError, KafkaError):
            return False
        return caught_up(everything, ends)


def _count_dead_letters(reasons: Counter[str]) -> None:
    """A batch's dead letters, one increment per reason."""
    for reason, n in reasons.items():
        if n:
            DEAD_LETTERS.labels(reason=reason).inc(n)


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
    watch = track.watch
    snap["predictions_seen"] = watch.served
    snap["last_prediction_ms"] = watch.last_ms or 0
    snap["silent"] = int(watch.silent_since is not None)
    if watch.labels.usual_coverage is not None:
        snap["label_coverage"] = round(watch.labels.usual_coverage, 6)
    mine = [a for a in alerts if a["model_id"] == track.model_id]
    if mine:
        snap["last_alert_id"] = mine[-1]["alert_id"]
        snap["last_alert_kind"] = mine[-1]["kind"]
    return snap
