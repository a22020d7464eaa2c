"""Run a worker (child process) on fresh topics and read back what it wrote.

Every test gets its own topics, consumer group (app id), Redis key prefix and data
directory (:func:`isolated`), like ``isolated_settings`` in ``test_pipeline.py``. The
worker is ``streams.dev.process.WorkerProcess``; callers stop it by pid in a ``finally``.

Waiting is polling with a deadline, never a sleep standing in for an assertion:
:func:`wait_processed` polls Redis (health snapshots, counters) and the group's committed
offsets until the expected work is done and the figures stop moving, or until nothing
has moved for a while after the input was committed (a stall), or a deadline. It
returns what it last saw, so the test asserts on numbers either way.

Redis keys read (``streams/store/health.py``): ``{prefix}health:{model}`` (the detectors'
snapshot: ``outcomes`` fed to the detector bank, ``held`` waiting for the watermark),
``{prefix}stats`` and ``{prefix}dlq`` (counters).
"""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson
import redis

from helpers.hostile import Topics
from helpers.third_party import Message, Record, committed_lag, create_topics, read_topic
from streams.dev.process import WorkerProcess
from streams.settings import Settings

__all__ = [
    "DETECTION_KINDS",
    "Isolated",
    "Promises",
    "ReplayRun",
    "Observation",
    "decode_alerts",
    "detections",
    "disorder_warnings",
    "isolated",
    "outcome_ids",
    "progress",
    "run_replay",
    "wait_processed",
]

_ids = itertools.count()


@dataclass
class Isolated:
    """Names and connections of one test's own pipeline."""

    bootstrap: str
    redis_url: str
    name: str
    tmp: Path
    partitions: int = 4

    @property
    def app_id(self) -> str:
        return f"wk-{self.name}"

    @property
    def prefix(self) -> str:
        return f"t{self.name}:"

    @property
    def topics(self) -> dict[str, str]:
        n = self.name
        return {
            "predictions": f"pred-{n}",
            "ground_truth": f"truth-{n}",
            "outcomes": f"outcomes-{n}",
            "alerts": f"alerts-{n}",
            "dlq": f"dlq-{n}",
            "rekey": f"rekey-{n}",
        }

    @property
    def env(self) -> dict[str, str]:
        """The worker's (and replay's) topic names and Redis prefix, as environment."""
        env = {f"WATCHKEEPER_TOPIC_{k.upper()}": v for k, v in self.topics.items()}
        env["WATCHKEEPER_REDIS_PREFIX"] = self.prefix
        return env

    def create_inputs(self) -> None:
        """Create the two input topics (the worker creates the rest with as many partitions)."""
        t = self.topics
        create_topics(self.bootstrap, [t["predictions"], t["ground_truth"]], self.partitions)

    def worker(
        self,
        log_name: str = "worker",
        *,
        env: Mapping[str, str] | None = None,
        args: Iterable[str] = (),
    ) -> WorkerProcess:
        """A worker process for this pipeline (not started). Each instance logs to its own
        file; every instance uses the same app id, data directory and settings."""
        return WorkerProcess(
            f"kafka://{self.bootstrap}",
            self.redis_url,
            self.tmp / f"{log_name}.log",
            env={**self.env, **(env or {})},
            args=[
                "--app-id",
                self.app_id,
                "--data-dir",
                str(self.tmp / "data"),
                "--partitions",
                str(self.partitions),
                *args,
            ],
        )

    def retarget(self, messages: list[Message], source: Topics) -> list[Message]:
        """``messages`` written for ``source``'s input topics, sent to this pipeline's."""
        names = {
            source.predictions: self.topics["predictions"],
            source.ground_truth: self.topics["ground_truth"],
        }
        return [replace(m, topic=names[m.topic]) for m in messages]

    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url, decode_responses=True)

    def read(self, topic: str, timeout: float = 60.0) -> list[Record]:
        return read_topic(self.bootstrap, self.topics[topic], timeout=timeout)


def isolated(bootstrap: str, redis_url: str, tmp: Path, *, partitions: int = 4) -> Isolated:
    """Fresh, unique names for one test (topics, app id, Redis prefix, data directory)."""
    n = f"{os.getpid()}-{next(_ids)}-{uuid.uuid4().hex[:8]}"
    return Isolated(bootstrap, redis_url, n, tmp, partitions)


# --- waiting for the worker --------------------------------------------------------------------


@dataclass
class Observation:
    """What the pipeline showed when :func:`wait_processed` stopped waiting."""

    outcomes: dict[str, int]  # model -> outcomes the detectors consumed (snapshot)
    held: dict[str, int]  # model -> outcomes still held for the watermark (snapshot)
    stats: dict[str, int]
    dlq: dict[str, int]
    uncommitted: dict[str, int]  # topic[partition] -> records not committed by the group
    why: str  # done | stalled | deadline | exited
    waited_s: float
    snapshots: dict[str, dict[str, str]] = field(default_factory=dict)

    def short(self) -> str:
        """The totals (per-partition counters such as ``joined@j2`` left out)."""
        stats = {k: v for k, v in sorted(self.stats.items()) if "@" not in k}
        dlq = {k: v for k, v in sorted(self.dlq.items()) if "@" not in k}
        held = {m: h for m, h in self.held.items() if h}
        return (
            f"stopped waiting: {self.why} after {self.waited_s:.1f}s; stats={stats}; "
            f"dlq={dlq}; uncommitted={self.uncommitted}; held={held}"
        )


def _read_redis(client: redis.Redis, prefix: str, models: Iterable[str]) -> tuple[Any, ...]:
    pipe = client.pipeline(transaction=False)
    names = list(models)
    for m in names:
        pipe.hgetall(f"{prefix}health:{m}")
    pipe.hgetall(f"{prefix}stats")
    pipe.hgetall(f"{prefix}dlq")
    *snaps, stats, dlq = pipe.execute()
    snapshots = dict(zip(names, snaps, strict=True))
    return (
        snapshots,
        {k: int(v) for k, v in stats.items()},
        {k: int(v) for k, v in dlq.items()},
    )


def wait_processed(
    iso: Isolated,
    worker: WorkerProcess,
    expected_pairs: Mapping[str, int],
    *,
    dlq_total: int = 0,
    timeout: float = 120.0,
    stall_s: float = 15.0,
    settle_s: float = 1.5,
) -> Observation:
    """Poll until the worker has processed everything, then until its figures settle.

    Done means: every model's snapshot shows at least its expected outcomes and none
    held, the DLQ counter reached ``dlq_total``, and the group committed both inputs and
    ``outcomes`` to their ends. Then the figures must stay the same over ``settle_s``
    (three of the worker's 0.5 s Redis writes), so that a late duplicate would be seen.
    Gives up when the worker exited, when the inputs are committed but nothing moved for
    ``stall_s`` (the idle flush takes 5 s), or at ``timeout``."""
    t = iso.topics
    client = iso.redis()
    began = time.monotonic()
    last_seen: Any = None
    last_change = began
    settled_since: float | None = None
    try:
        while True:
            snapshots, stats, dlq = _read_redis(client, iso.prefix, expected_pairs)
            outcomes = {m: int(s.get("outcomes", 0)) for m, s in snapshots.items()}
            held = {m: int(s.get("held", 0)) for m, s in snapshots.items()}
            lag = committed_lag(
                iso.bootstrap, iso.app_id, [t["predictions"], t["ground_truth"], t["outcomes"]]
            )
            now = time.monotonic()
            seen = (outcomes, held, stats, dlq, lag)
            if seen != last_seen:
                last_seen, last_change, settled_since = seen, now, None
            state = Observation(outcomes, held, stats, dlq, lag, "", now - began, snapshots)
            if not worker.alive():
                return replace(state, why="exited")
            done = (
                all(outcomes[m] >= n for m, n in expected_pairs.items())
                and not any(held.values())
                and stats.get("dlq", 0) >= dlq_total
                and not lag
            )
            if done:
                settled_since = settled_since or now
                if now - settled_since >= settle_s and now - last_change >= settle_s:
                    return replace(state, why="done")
            inputs_committed = not any(
                k.startswith((t["predictions"] + "[", t["ground_truth"] + "[")) for k in lag
            )
            if not done and inputs_committed and now - last_change >= stall_s:
                return replace(state, why="stalled")
            if now - began >= timeout:
                return replace(state, why="deadline")
            time.sleep(0.25)
    finally:
        client.close()


def progress(iso: Isolated, *counters: str) -> int:
    """The sum of ``counters`` of ``{prefix}stats`` (default: predictions, labels, joined,
    outcomes): it moves when the worker processes input. At-least-once: a batch
    processed again after a crash counts again."""
    names = counters or ("predictions", "labels", "joined", "outcomes")
    client = iso.redis()
    try:
        stats = client.hgetall(f"{iso.prefix}stats")
    finally:
        client.close()
    return sum(int(stats.get(k, 0)) for k in names)


# --- reading what the worker wrote ----------------------------------------------------------------


def outcome_ids(records: Iterable[Record]) -> tuple[dict[str, Counter[str]], int]:
    """Prediction ids on the ``outcomes`` topic per model (with how often each appears),
    and how many records were join marks or not understood.

    Tolerant of the internal format: a record is an object with an ``outcomes`` array
    (or a bare array) of outcomes keyed ``id``/``m`` (or ``prediction_id``/``model_id``);
    anything else (event-time marks) is skipped and counted."""
    seen: dict[str, Counter[str]] = {}
    other = 0
    for rec in records:
        try:
            doc = orjson.loads(rec.value or b"")
        except orjson.JSONDecodeError:
            other += 1
            continue
        items = doc.get("outcomes") if isinstance(doc, dict) else doc
        if not isinstance(items, list):
            other += 1
            continue
        for item in items:
            if not isinstance(item, dict):
                continue
            pid = item.get("id", item.get("prediction_id"))
            model = item.get("m", item.get("model_id"))
            if isinstance(pid, str) and isinstance(model, str):
                seen.setdefault(model, Counter())[pid] += 1
    return seen, other


def decode_alerts(records: Iterable[Record]) -> list[dict[str, Any]]:
    return [orjson.loads(r.value) for r in records if r.value]


DETECTION_KINDS = ("performance_degradation", "performance_improvement")


def detections(alerts: Iterable[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """Degradation and improvement alerts by alert_id (orphaned_model and the other
    wall-clock kinds left out)."""
    return {a["alert_id"]: a for a in alerts if a.get("kind") in DETECTION_KINDS}


_DISORDER = re.compile(r"disorder|out of (event-time )?order|behind|late", re.IGNORECASE)


def disorder_warnings(log_text: str) -> list[str]:
    """Warning lines of a worker log about events out of order."""
    return [
        line
        for line in log_text.splitlines()
        if "WARN" in line.upper() and _DISORDER.search(line) is not None
    ]


# --- replay ---------------------------------------------------------------------------------------


@dataclass
class ReplayRun:
    document: dict[str, Any]  # results.json
    output: str
    seconds: float

    @property
    def alerts(self) -> list[dict[str, Any]]:
        """The first (default) combination's alerts."""
        combos = self.document.get("combinations") or [{}]
        return list(combos[0].get("alerts") or [])


def run_replay(
    iso: Isolated,
    out_dir: Path,
    *,
    args: Iterable[str] = (),
    publish: str | None = None,
    timeout: float = 240.0,
) -> ReplayRun:
    """``python -m streams replay`` over this pipeline's input topics (the whole of them,
    unless ``args`` give ``--from``/``--to``), as an analyst runs it; its results from
    ``--out`` (results.json)."""
    cmd = [
        sys.executable,
        "-m",
        "streams",
        "replay",
        "--broker",
        f"kafka://{iso.bootstrap}",
        "--out",
        str(out_dir),
        "--no-progress",
        *args,
    ]
    if publish:
        cmd += ["--publish", publish]
    began = time.monotonic()
    done = subprocess.run(
        cmd,
        env={**os.environ, **iso.env},
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    seconds = time.monotonic() - began
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"replay exited with {done.returncode}:\n{output[-4000:]}"
    document = orjson.loads((out_dir / "results.json").read_bytes())
    return ReplayRun(document, output, seconds)


class Promises:
    """Checks of one test, all evaluated, reported together with their numbers (one
    broken promise must not hide the others' evidence)."""

    def __init__(self) -> None:
        self.broken: list[str] = []

    def check(self, ok: bool, message: str) -> bool:
        if not ok:
            self.broken.append(message)
        return ok

    def verify(self) -> None:
        assert not self.broken, f"{len(self.broken)} promise(s) broken:\n- " + "\n- ".join(
            self.broken
        )


def settings_env(settings: Settings) -> dict[str, str]:
    """The topic names and Redis prefix of an isolated test, as environment variables for
    a ``watchkeeper`` process (worker, notifier, ui)."""
    t = settings.topics
    return {
        "WATCHKEEPER_TOPIC_PREDICTIONS": t.predictions,
        "WATCHKEEPER_TOPIC_GROUND_TRUTH": t.ground_truth,
        "WATCHKEEPER_TOPIC_OUTCOMES": t.outcomes,
        "WATCHKEEPER_TOPIC_ALERTS": t.alerts,
        "WATCHKEEPER_TOPIC_DLQ": t.dlq,
        "WATCHKEEPER_TOPIC_REKEY": t.rekey,
        "WATCHKEEPER_REDIS_PREFIX": settings.redis_prefix,
    }
