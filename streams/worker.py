"""Running the pipeline: in this process (``watchkeeper worker``) or as a child process.

The child-process form is what the demo and the integration tests use: a real worker,
started the way an operator starts it, stopped by its pid.
"""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from detectors.config import DetectorSettings, load_detector_settings

from .embedded import stop_process
from .errors import ConfigError
from .settings import Settings
from .topology import ensure_topics

__all__ = ["GC_THRESHOLDS", "WorkerProcess", "load_detectors", "run_worker", "tune_gc"]

# the youngest generation is collected after 50,000 net allocations rather than 700, and
# everything after 1,000 collections of the middle one rather than 10 (see tune_gc)
GC_THRESHOLDS = (50_000, 20, 1000)


def load_detectors(settings: Settings) -> DetectorSettings:
    """The detector configuration file named in settings, or the defaults."""
    if settings.detector_config is None:
        return DetectorSettings()
    try:
        return load_detector_settings(settings.detector_config)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"detector config {settings.detector_config}: {exc}") from exc


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
    """Create topics if needed, then run the Faust worker until SIGTERM/SIGINT."""
    import faust

    from .app import Pipeline

    detectors = load_detectors(settings)
    partitions = asyncio.run(ensure_topics(settings))
    asyncio.set_event_loop(asyncio.new_event_loop())
    pipeline = Pipeline(settings, detectors, partitions)

    class Worker(faust.Worker):
        async def on_startup_finished(self) -> None:
            await super().on_startup_finished()
            tune_gc()

    worker = Worker(pipeline.app, loglevel=settings.log_level, quiet=True)
    # Faust's progress spinner sets the root logger to DEBUG (to spin on every record):
    # every debug call in aiokafka then builds a LogRecord, 8% of a busy worker's CPU.
    worker.spinner = None
    worker.execute_from_commandline()


@dataclass
class WorkerProcess:
    """``watchkeeper worker`` (or another long-running ``command``, such as ``notify``) as
    a child process with its output in a log file."""

    broker: str
    redis_url: str
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    args: list[str] = field(default_factory=list)
    command: str = "worker"
    proc: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    def start(self) -> WorkerProcess:
        self._log = open(self.log_path, "ab")
        cmd = [
            sys.executable,
            "-m",
            "streams",
            self.command,
            "--broker",
            self.broker,
            "--redis",
            self.redis_url,
            *self.args,
        ]
        self.proc = subprocess.Popen(
            cmd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **self.env},
        )
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 20.0) -> int | None:
        """Ask the worker to stop (SIGTERM), then kill it if it does not."""
        stop_process(self.proc, timeout)
        if self._log is not None:
            self._log.close()
            self._log = None
        return None if self.proc is None else self.proc.returncode

    def kill(self) -> None:
        """Stop abruptly, as a crash would (SIGKILL)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])
