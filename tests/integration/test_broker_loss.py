"""A worker whose broker goes silent for longer than the session timeout.

The broker here is a tansu of the test's own (not the session's), frozen with SIGSTOP
and thawed with SIGCONT: the TCP connections stay open and nothing answers, as with a
broker host that hangs or a network partition, the case in which a worker used to ignore
SIGTERM for 40 s and more.

* Frozen past the session timeout, then thawed: the worker says so in its log (once when
  the broker has been silent for the session timeout, once when it answers again), goes
  on by itself, and every pair sent before, during and after joins exactly once.
* Frozen again, then SIGTERM: the worker exits with code 70 within its bound
  (``shutdown_grace_s`` + 5 s), saying why, instead of hanging.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.hostile import ModelSpec, Topics, batched_stream
from helpers.pipeline import Isolated, isolated, progress
from helpers.third_party import produce, producer

from streams.dev.embedded import EmbeddedBroker
from streams.dev.process import WorkerProcess
from streams.settings import Settings

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.separate,
    pytest.mark.timeout(300),
]

GRACE_S = 3  # shutdown_grace_s for the worker under test
MODELS = [ModelSpec(f"clf-{i}", "classification", (0, 1), False) for i in range(4)]


@pytest.fixture
def own_broker() -> Iterator[EmbeddedBroker]:
    broker = EmbeddedBroker().start()
    try:
        yield broker
    finally:
        if broker.proc is not None and broker.proc.poll() is None:
            broker.proc.send_signal(signal.SIGCONT)  # a stopped process ignores SIGTERM
        broker.stop()


def _wait_joined(iso: Isolated, worker: WorkerProcess, joined: int, timeout: float) -> int:
    """Poll the ``joined`` counter until it reaches ``joined``; return what it last was."""
    began = time.monotonic()
    seen = progress(iso, "joined")
    while seen < joined and time.monotonic() - began < timeout and worker.alive():
        time.sleep(0.1)
        seen = progress(iso, "joined")
    return seen


def _wait_logged(worker: WorkerProcess, text: str, timeout: float) -> str:
    """Poll the worker's log until it holds ``text``; return the log."""
    began = time.monotonic()
    log = Path(worker.log_path).read_text(errors="replace")
    while text not in log and time.monotonic() - began < timeout and worker.alive():
        time.sleep(0.2)
        log = Path(worker.log_path).read_text(errors="replace")
    return log


def test_worker_outlives_a_silent_broker_and_obeys_sigterm_while_it_is_silent(
    own_broker: EmbeddedBroker, redis_url: str, tmp_path: Path
) -> None:
    assert own_broker.proc is not None
    iso = isolated(own_broker.bootstrap, redis_url, tmp_path, partitions=2)
    iso.create_inputs()
    source = Topics(iso.topics["predictions"], iso.topics["ground_truth"])
    span_ms = 6 * 3_600_000
    base_ms = (int(time.time() * 1000) - span_ms - 3_600_000) // 60_000 * 60_000
    parts, expected = batched_stream(
        5, source, base_ms=base_ms, models=MODELS, per_model=600, partitions=2,
        span_ms=span_ms, chunks=3,
    )  # fmt: skip
    totals = [0]
    for part in parts:
        totals.append(totals[-1] + sum(1 for m in part if m.topic == source.ground_truth))
    session_s = Settings().session_timeout_s
    client = producer(own_broker.bootstrap)
    worker = iso.worker(
        env={"WATCHKEEPER_SHUTDOWN_GRACE_S": str(GRACE_S)}, args=["--log-level", "info"]
    ).start()
    try:
        produce(client, parts[0])
        first = _wait_joined(iso, worker, totals[1] * 9 // 10, timeout=90)
        assert first >= totals[1] * 9 // 10, (
            f"{first} joined before the outage\n{worker.log_tail()}"
        )

        # frozen for twice the session timeout while more input is waiting for it
        produce(client, parts[1])
        own_broker.proc.send_signal(signal.SIGSTOP)
        time.sleep(2 * session_s)  # the outage itself, not a measurement
        own_broker.proc.send_signal(signal.SIGCONT)
        produce(client, parts[2])
        joined = _wait_joined(iso, worker, sum(expected.pairs.values()), timeout=120)
        assert worker.alive(), f"the worker exited after the outage:\n{worker.log_tail()}"
        assert joined == sum(expected.pairs.values()), (
            f"{joined} of {sum(expected.pairs.values())} pairs joined after the outage\n"
            f"{worker.log_tail()}"
        )
        outage = _wait_logged(worker, "the broker answers again after", timeout=30)
        assert "the broker has not answered for" in outage, worker.log_tail()
        assert "the broker answers again after" in outage, worker.log_tail()
        assert worker.proc is not None
        # frozen again, and the supervisor asks the worker to stop
        own_broker.proc.send_signal(signal.SIGSTOP)
        worker.proc.send_signal(signal.SIGTERM)
        bound = GRACE_S + 5
        try:
            code = worker.proc.wait(timeout=bound + 15)  # the deadline of a hang, not a timing
        except subprocess.TimeoutExpired:
            pytest.fail(f"SIGTERM ignored for {bound + 15}s with the broker silent")
        log = Path(worker.log_path).read_text(errors="replace")
    finally:
        if own_broker.proc.poll() is None:
            own_broker.proc.send_signal(signal.SIGCONT)
        worker.stop()
    assert code == 70, f"exit code {code}\n{worker.log_tail()}"
    assert "did not stop within" in log and "exiting with code 70" in log, worker.log_tail()
