"""Several workers in one consumer group: takeover, stalls and throughput.

Takeover and stalls are read off the workers' own per-partition counters in Redis
(``joined@j{p}`` of each join partition, ``outcomes@d{p}`` of each outcomes partition,
written every 0.1 s here by whoever holds the partition), polled every 20 ms, while a
producer sends a steady stream in event-time order. Which worker holds what comes from
its log (``assigned partitions (generation N): join [...] outcomes [...]``).

* **Takeover after SIGKILL**: from the kill of one of three workers to the first
  movement of the last of its partitions under a new owner. The group coordinator
  notices the death only after ``session_timeout_s``, so that is the same-run baseline.
* **Stall of partitions that stayed**: the longest pause of the survivors' own
  partitions around the kill.
* **Rolling restart**: one worker stopped (SIGTERM) and started again; the longest
  pause of the partitions it did not hold, against the session timeout.
* **Throughput with 1, 2 and 3 workers** on the same number of pairs (batched input,
  topics of six partitions), from the first prediction counted to the last outcome
  through the detectors (outcomes counted before that moment are left out of the rate),
  with the CPU seconds each worker used; against one worker in the same run. On a
  machine of two cores, three workers and the broker share them, so the wall-clock rate
  cannot scale; pairs per worker CPU second (all pairs over the CPU time of all workers)
  shows what scaling out costs per pair, which is what sizing on more cores needs.

    python -m bench.scale_out [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from redis import Redis

from streams.dev.process import WorkerProcess
from streams.producer import WatchkeeperProducer
from streams.settings import Settings

from .harness import Stack, Traffic, produce, stack
from .report import Row, Suite, markdown

PARTITIONS = 6
HEALTH_INTERVAL_S = 0.1
RATE = 1_500  # pairs/s of the steady stream
POLL_S = 0.02
PAIRS = 300_000  # throughput runs
ASSIGNED = re.compile(
    r"assigned partitions \(generation (\S+)\): join \[([^]]*)\] outcomes \[([^]]*)\]"
)


@dataclass
class Worker:
    """A worker process with its own log."""

    name: str
    process: WorkerProcess

    def holds(self) -> set[str]:
        """Series (``j{p}``, ``d{p}``) of the last assignment in its log."""
        found = ASSIGNED.findall(self.process.log_path.read_text(errors="replace"))
        if not found:
            return set()
        _, join, outcomes = found[-1]
        return {f"j{p.strip()}" for p in join.split(",") if p.strip()} | {
            f"d{p.strip()}" for p in outcomes.split(",") if p.strip()
        }

    def assignments(self) -> int:
        return len(ASSIGNED.findall(self.process.log_path.read_text(errors="replace")))


def start(
    settings: Settings, name: str, env: dict[str, str] | None = None, log_name: str = ""
) -> Worker:
    names = settings.topics.model_dump()
    process = WorkerProcess(
        settings.broker,
        settings.redis_url,
        settings.data_dir.with_name(f"{settings.app_id}-{log_name or name}.log"),
        env={
            "WATCHKEEPER_APP_ID": settings.app_id,
            "WATCHKEEPER_PARTITIONS": str(settings.partitions),
            "WATCHKEEPER_REDIS_PREFIX": settings.redis_prefix,
            "WATCHKEEPER_DATA_DIR": str(settings.data_dir),
            "WATCHKEEPER_HEALTH_INTERVAL_S": str(HEALTH_INTERVAL_S),
            "WATCHKEEPER_LOG_LEVEL": "info",
            **{f"WATCHKEEPER_TOPIC_{k.upper()}": v for k, v in names.items()},
            **(env or {}),
        },
    ).start()
    return Worker(name, process)


def wait_stable(workers: list[Worker], partitions: int, quiet_s: float, timeout: float) -> None:
    """Until the group's last assignments cover every partition and no worker logged a
    new one for ``quiet_s``."""
    deadline = time.monotonic() + timeout
    last = [w.assignments() for w in workers]
    since = time.monotonic()
    want = {f"j{p}" for p in range(partitions)} | {f"d{p}" for p in range(partitions)}
    while time.monotonic() < deadline:
        now = [w.assignments() for w in workers]
        if now != last:
            last, since = now, time.monotonic()
        held = set().union(*(w.holds() for w in workers))
        if all(now) and held == want and time.monotonic() - since >= quiet_s:
            return
        for w in workers:
            if not w.process.alive():
                raise RuntimeError(f"{w.name} exited:\n{w.process.log_tail()}")
        time.sleep(0.2)
    raise TimeoutError(f"the group of {len(workers)} did not settle in {timeout:.0f}s")


class SteadyStream:
    """Pairs at ``rate`` per second, event time = wall clock, label 1 s after its
    prediction, in a thread of its own."""

    def __init__(self, settings: Settings, rate: int) -> None:
        self.settings = settings
        self.rate = rate
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def __enter__(self) -> SteadyStream:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    async def _run(self) -> None:
        t = self.settings.topics
        tick = 0.05
        async with WatchkeeperProducer(
            self.settings.bootstrap_servers,
            predictions_topic=t.predictions,
            ground_truth_topic=t.ground_truth,
            validate=False,
            linger_ms=5,
        ) as producer:
            began = time.monotonic()
            while not self._stop.is_set():
                due = int((time.monotonic() - began) * self.rate)
                now_ms = int(time.time() * 1000)
                for i in range(self.sent, due):
                    pid = f"s-{i:09d}"
                    model = f"model-{i % 24:02d}"
                    await producer.predict(pid, model, i % 2, timestamp=now_ms - 1_000)
                    await producer.label(pid, (i // 7) % 2, timestamp=now_ms)
                self.sent = max(self.sent, due)
                await producer.flush()
                await asyncio.sleep(tick)


@dataclass
class Moves:
    """When each series' counter changed (monotonic seconds)."""

    times: dict[str, list[float]] = field(default_factory=dict)

    def poll(self, settings: Settings, seconds: float, until: float | None = None) -> None:
        redis = Redis.from_url(settings.redis_url, decode_responses=True)
        key = f"{settings.redis_prefix}stats"
        last: dict[str, str] = {}
        end = time.monotonic() + seconds
        try:
            while time.monotonic() < end:
                stats: dict[str, str] = redis.hgetall(key)  # type: ignore[assignment]
                now = time.monotonic()
                for name, value in stats.items():
                    for prefix, series in (("joined@", "j"), ("outcomes@", "d")):
                        if name.startswith(prefix + series):
                            s = name[len(prefix) :]
                            if last.get(s) != value:
                                last[s] = value
                                self.times.setdefault(s, []).append(now)
                time.sleep(POLL_S)
        finally:
            redis.close()

    def first_after(self, series: str, t: float) -> float:
        return next((x for x in self.times.get(series, []) if x > t), float("inf"))

    def longest_pause(self, series: str, begin: float, end: float) -> float:
        """The longest time without a change that overlaps [begin, end]."""
        times = self.times.get(series, [])
        pause = 0.0
        for a, b in zip(times, times[1:], strict=False):
            if b >= begin and a <= end:
                pause = max(pause, b - a)
        after = [x for x in times if x <= end]
        if after and after[-1] < end:
            pause = max(pause, end - max(after[-1], begin))
        return pause


def failover(s: Stack, quick: bool, static: bool) -> tuple[dict[str, float], list[str]]:
    """Three workers under a steady stream; one SIGKILLed, then one restarted (``static``:
    each worker with an ``instance_id`` of its own, the restarted one under its old one)."""
    settings = s.settings(f"scale-out-{'static' if static else 'dynamic'}", partitions=PARTITIONS)
    asyncio.run(_ensure(settings))

    def named(name: str, log_name: str = "") -> Worker:
        env = {"WATCHKEEPER_INSTANCE_ID": name} if static else None
        return start(settings, name, env, log_name)

    workers = [named(f"w{i}") for i in range(3)]
    notes: list[str] = []
    moves = Moves()
    try:
        with SteadyStream(settings, RATE if not quick else 500):
            wait_stable(workers, PARTITIONS, quiet_s=4, timeout=120)
            moves.poll(settings, 3)
            victim = workers[1]
            held = victim.holds()
            killed_at = time.monotonic()
            victim.process.kill()
            moves.poll(settings, 25)
            survivors = [w for w in workers if w is not victim]
            # a write of the dead worker may be seen up to one poll after the kill
            after = killed_at + POLL_S + HEALTH_INTERVAL_S
            took = {x: round(moves.first_after(x, after) - killed_at, 2) for x in sorted(held)}
            takeover = max(took.values())
            stayed = sorted(set(moves.times) - held)
            stall = max(moves.longest_pause(x, killed_at, killed_at + 20) for x in stayed)
            wait_stable(survivors, PARTITIONS, quiet_s=3, timeout=60)
            moves.poll(settings, 3)
            # rolling restart of one worker: SIGTERM, then the same worker again
            restarted = survivors[0]
            mine = restarted.holds()
            stopped_at = time.monotonic()
            code = restarted.process.stop()
            workers.append(named(restarted.name, f"{restarted.name}-again"))
            moves.poll(settings, 25)
            others = sorted(set(moves.times) - mine)
            rolling = max(moves.longest_pause(x, stopped_at, stopped_at + 20) for x in others)
            notes.append(
                f"killed worker held {took} (s to first movement); "
                f"restarted worker held {sorted(mine)} (exit code {code} on SIGTERM)"
            )
    finally:
        for w in workers:
            w.process.stop()
        if keep := os.environ.get("WATCHKEEPER_BENCH_LOGS"):
            for w in workers:
                shutil.copy(w.process.log_path, Path(keep) / w.process.log_path.name)
    return {"takeover_s": takeover, "stall_s": stall, "rolling_stall_s": rolling}, notes


async def _ensure(settings: Settings) -> None:
    from streams.topology import ensure_topics

    await ensure_topics(settings)


def throughput(s: Stack, quick: bool, counts: tuple[int, ...]) -> dict[int, dict[str, float]]:
    pairs = 6_000 if quick else PAIRS
    out: dict[int, dict[str, float]] = {}
    for n in counts:
        settings = s.settings(f"scale-out-{n}", partitions=PARTITIONS)
        asyncio.run(_ensure(settings))
        workers = [start(settings, f"w{i}") for i in range(n)]
        redis = Redis.from_url(settings.redis_url)
        try:
            wait_stable(workers, PARTITIONS, quiet_s=3, timeout=120)
            procs = [psutil.Process(w.process.proc.pid) for w in workers]  # type: ignore[union-attr]
            cpu0 = [sum(p.cpu_times()[:2]) for p in procs]
            asyncio.run(produce(settings, Traffic(pairs, 60, seed=11), "batched"))
            key = f"{settings.redis_prefix}stats"
            began = None
            done_before = 0
            deadline = time.monotonic() + 1800
            while True:
                started, done = (int(v or 0) for v in redis.hmget(key, "predictions", "outcomes"))
                now = time.perf_counter()
                if started and began is None:
                    # a worker writes its counters after its first batch, which can hold a
                    # good share of the input: time only the outcomes counted from here on
                    began, done_before = now, done
                if done >= pairs:
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{done}/{pairs} outcomes with {n} workers")
                time.sleep(0.02)
            cpu = [sum(p.cpu_times()[:2]) - c for p, c in zip(procs, cpu0, strict=True)]
            seconds = now - (began or now)
            out[n] = {
                "pairs_per_s": (pairs - done_before) / seconds,
                "timed_pairs": pairs - done_before,
                "seconds": seconds,
                "cpu_s_per_worker": sum(cpu) / n,
                "pairs_per_cpu_s": pairs / sum(cpu),  # every pair, every worker CPU second
                "cpu_s_total": sum(cpu),
            }
        finally:
            redis.close()
            for w in workers:
                w.process.stop()
    return out


def run(quick: bool = False) -> Suite:
    session = Settings().session_timeout_s
    suite = Suite(f"Scale-out: one group of workers, {PARTITIONS} partitions")
    with stack() as s:
        times, notes = failover(s, quick, static=False)
        static, static_notes = failover(s, quick, static=True)
        rates = throughput(s, quick, (1, 2, 3))
    notes += [f"static membership: {n}" for n in static_notes]
    suite.rows += [
        Row(
            "takeover after SIGKILL (1 of 3 workers)",
            times["takeover_s"],
            "s",
            "session timeout",
            session,
            times["takeover_s"] / session,
            "< 10 s",
            times["takeover_s"] < 10,
        ),
        Row(
            "longest stall of partitions that stayed (SIGKILL)",
            times["stall_s"],
            "s",
            "session timeout",
            session,
            times["stall_s"] / session,
        ),
        Row(
            "longest stall of partitions not restarted (rolling restart, dynamic membership)",
            times["rolling_stall_s"],
            "s",
            "session timeout",
            session,
            times["rolling_stall_s"] / session,
            "< session timeout",
            times["rolling_stall_s"] < session,
        ),
        Row(
            "... the same with static membership (instance_id)",
            static["rolling_stall_s"],
            "s",
            "session timeout",
            session,
            static["rolling_stall_s"] / session,
            "< session timeout",
            static["rolling_stall_s"] < session,
        ),
        Row(
            "takeover after SIGKILL, static membership",
            static["takeover_s"],
            "s",
            "session timeout",
            session,
            static["takeover_s"] / session,
            "< 10 s",
            static["takeover_s"] < 10,
        ),
    ]
    for key, what, unit in (
        ("pairs_per_s", "pairs/s", "pairs/s"),
        ("pairs_per_cpu_s", "pairs per worker CPU second", "pairs/CPU s"),
    ):
        one = rates[1][key]
        suite.rows += [
            Row(f"{n} worker{'s' if n > 1 else ''}: {what}", r[key], unit,
                "1 worker, same run", one, r[key] / one)
            for n, r in rates.items()
        ]  # fmt: skip
    suite.details = {
        "failover": times,
        "failover_static": static,
        "throughput": {str(n): r for n, r in rates.items()},
    }
    suite.notes += notes
    suite.notes.append(
        "CPU seconds per worker for the throughput runs: "
        + ", ".join(f"{n}: {r['cpu_s_per_worker']:.1f}" for n, r in rates.items())
        + f" (of {psutil.cpu_count()} cores shared with the broker and Redis)"
    )
    return suite


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    print(markdown([run(args.quick).as_dict()]))


if __name__ == "__main__":
    main()
