"""Running the pipeline in this process (``watchkeeper worker``)."""

from __future__ import annotations

import asyncio
import gc
import sys

from detectors.config import DetectorSettings
from streams.metrics import start_metrics_server
from streams.settings import Settings, load_detectors
from streams.topology import ensure_topics, partition_count

__all__ = ["GC_THRESHOLDS", "run_worker", "tune_gc"]

# the youngest generation is collected after 50,000 net allocations rather than 700, and
# everything after 1,000 collections of the middle one rather than 10 (see tune_gc)
GC_THRESHOLDS = (50_000, 20, 1000)


def tune_gc() -> None:
    """Keep the garbage collector off what a worker holds for good.

    A busy worker allocates a few container objects per event, and every full collection
    traversed everything alive: the imported libraries, Faust's app and a million pending
    predictions. That was half of a worker's CPU with one event per Kafka message. What
    exists once the worker has started is frozen (never collected), and full collections
    are made rarer; reference counting still frees all but cyclic garbage at once.
    """
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def run_worker(settings: Settings) -> None:
    """Create topics if needed, then run the Faust worker until SIGTERM/SIGINT; exits
    with code 70 when an agent could not go on (see :mod:`streams.worker.app`). The
    metrics port is taken first: a port in use fails before anything connects."""
    detectors = load_detectors(settings)
    metrics = (
        start_metrics_server(settings.metrics_port, "worker") if settings.metrics_port else None
    )
    try:
        _run(settings, detectors)
    finally:
        if metrics is not None:
            metrics.stop()


def _run(settings: Settings, detectors: DetectorSettings) -> None:
    from streams.worker.app import EXIT_AGENT_FAILED, Pipeline
    from streams.worker.faust_internals import BoundedStopWorker

    partitions = asyncio.run(ensure_topics(settings))
    dlq_partitions = asyncio.run(partition_count(settings, settings.topics.dlq))
    asyncio.set_event_loop(asyncio.new_event_loop())
    pipeline = Pipeline(settings, detectors, partitions, dlq_partitions=dlq_partitions)

    class Worker(BoundedStopWorker):
        stop_deadline_s = settings.shutdown_grace_s + 5
        stop_exit_code = EXIT_AGENT_FAILED

        async def on_startup_finished(self) -> None:
            await super().on_startup_finished()
            tune_gc()
            # whatever the log level (Faust's own lines need info): the line to look for
            print(
                f"watchkeeper worker ready: group {settings.app_id}, {partitions} partitions, "
                f"broker {settings.bootstrap_servers}",
                file=sys.stderr,
                flush=True,
            )

    worker = Worker(pipeline.app, loglevel=settings.log_level, quiet=True)
    # Faust's progress spinner sets the root logger to DEBUG (to spin on every record):
    # every debug call in aiokafka then builds a LogRecord, 8% of a busy worker's CPU.
    worker.spinner = None
    try:
        worker.execute_from_commandline()
    finally:
        if pipeline.fatal is not None:  # an agent could not go on: say so to the supervisor
            raise SystemExit(EXIT_AGENT_FAILED)
