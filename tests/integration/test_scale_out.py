"""Three workers in one consumer group: one killed, one added, a rolling restart.

Each scenario sends about 43,000 labelled pairs of 12 models (three degrade halfway), as
JSON arrays on their murmur2 home partitions, in four consecutive parts of the timeline;
the group event (a SIGKILL, a fourth process, one restart at a time) happens between
parts, while the workers process, so partitions move with state in them and input
still arriving. Each must end as one worker that never saw a rebalance ends on the same
events (run alongside, on a second set of topics), and as ``watchkeeper replay`` of the
group's own topics:

* every pair consumed exactly once by the detectors (each model's health snapshot
  counts the outcomes its detector bank consumed; see ``test_crash_recovery``), none
  still held, the exact counters equal to the reference's;
* the same degradation and improvement alert ids;
* the group's committed offsets at the end of both inputs and of ``outcomes``.

Worker logs are kept in the test's tmp directory (``worker-*.log``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers.hostile import ModelSpec, Topics, batched_stream
from helpers.pipeline import (
    Isolated,
    Observation,
    Promises,
    decode_alerts,
    detections,
    isolated,
    progress,
    run_replay,
    wait_processed,
)
from helpers.third_party import produce, producer

from streams.dev.process import WorkerProcess

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.separate,
    pytest.mark.timeout(900),
]

PARTITIONS = 6
PARTS = 4
MODELS = [
    ModelSpec(f"clf-{i:02d}", "classification", (0, 1, 2) if i % 3 else (0, 1), i in (2, 7))
    for i in range(9)
] + [ModelSpec(f"reg-{i:02d}", "regression", (), degraded=i == 1) for i in range(3)]
PER_MODEL = 4_000  # x 12 models x 0.9 labelled: about 43,000 pairs
COUNTED = ("predictions", "labels", "joined", "outcomes", "dlq")

# what happens between two parts of the stream: (group, part just sent) -> None
Event = Callable[["Group", int], None]


class Group:
    """The worker processes of one pipeline, started and stopped by pid."""

    def __init__(self, iso: Isolated) -> None:
        self.iso = iso
        self.started: list[WorkerProcess] = []
        self.killed: set[int] = set()  # indexes into started

    def start(self) -> WorkerProcess:
        name = f"worker-{len(self.started)}"
        worker = self.iso.worker(name, args=["--log-level", "info"]).start()
        self.started.append(worker)
        return worker

    def alive(self) -> list[WorkerProcess]:
        return [w for w in self.started if w.alive()]

    def kill(self, worker: WorkerProcess) -> None:
        worker.kill()
        self.killed.add(self.started.index(worker))

    def stop_all(self) -> list[int | None]:
        return [w.stop() for i, w in enumerate(self.started) if i not in self.killed]


def _wait_for_joined(iso: Isolated, group: Group, joined: int, timeout: float = 120) -> None:
    """Poll until the group's ``joined`` counter reached ``joined``."""
    began = time.monotonic()
    while progress(iso, "joined") < joined:
        assert group.alive(), "every worker exited"
        assert time.monotonic() - began < timeout, (
            f"{progress(iso, 'joined')} of {joined} pairs joined after {timeout:.0f}s"
        )
        time.sleep(0.1)


def _scenario(
    tmp_path: Path, bootstrap: str, redis_url: str, seed: int, event: Event, first: int
) -> None:
    """Run the group (``first`` workers to begin with, ``event`` between parts) and the
    reference on the same events, then check the promises."""
    group_iso = isolated(bootstrap, redis_url, tmp_path / "group", partitions=PARTITIONS)
    clean = isolated(bootstrap, redis_url, tmp_path / "clean", partitions=PARTITIONS)
    for iso in (group_iso, clean):
        iso.tmp.mkdir()
        iso.create_inputs()
    source = Topics(group_iso.topics["predictions"], group_iso.topics["ground_truth"])
    span_ms = 12 * 3_600_000
    base_ms = (int(time.time() * 1000) - span_ms - 3_600_000) // 60_000 * 60_000
    parts, expected = batched_stream(
        seed,
        source,
        base_ms=base_ms,
        models=MODELS,
        per_model=PER_MODEL,
        partitions=PARTITIONS,
        span_ms=span_ms,
        chunks=PARTS,
    )
    total = sum(expected.pairs.values())
    client = producer(bootstrap)
    for part in parts:  # the reference gets everything at once
        produce(client, clean.retarget(part, source))
    reference_worker = clean.worker("clean").start()
    group = Group(group_iso)
    sent = 0
    try:
        for _ in range(first):
            group.start()
        for k, part in enumerate(parts):
            produce(client, part)
            sent += sum(1 for m in part if m.topic == source.ground_truth)
            if k < PARTS - 1:
                # about half of what was sent so far is joined: the group is at work
                _wait_for_joined(group_iso, group, int(total * (k + 0.5) / PARTS))
                event(group, k)
        survivors = group.alive()
        assert survivors, "no worker left"
        seen = wait_processed(group_iso, survivors[0], expected.pairs, timeout=240)
        group_alerts = decode_alerts(group_iso.read("alerts"))
        clean_seen = wait_processed(clean, reference_worker, expected.pairs, timeout=120)
        clean_alerts = decode_alerts(clean.read("alerts"))
    finally:
        codes = group.stop_all()
        clean_code = reference_worker.stop()
    replayed = run_replay(group_iso, tmp_path / "replay")
    print(f"\ngroup of {len(group.started)} started, {sorted(group.killed)} killed: {seen.short()}")
    print(f"reference: {clean_seen.short()}")
    print(f"replay: {replayed.seconds:.1f}s")

    assert clean_seen.why == "done" and clean_code == 0, clean_seen.short()
    assert clean_seen.outcomes == expected.pairs
    reference = detections(clean_alerts)
    degraded = {a["model_id"] for a in reference.values() if a["kind"] == "performance_degradation"}
    assert degraded >= set(expected.change_at_ms), f"the reference alerted on {degraded}"

    promises = Promises()
    _check_group(promises, seen, clean_seen, expected.pairs, total, codes)
    got = detections(group_alerts)
    promises.check(
        set(got) == set(reference),
        f"alert ids of the group differ from one worker's ({len(reference)}): "
        f"missing {_described(reference, set(reference) - set(got))}, "
        f"extra {_described(got, set(got) - set(reference))}",
    )
    replay_ids = set(detections(replayed.alerts))
    promises.check(
        replay_ids == set(reference),
        f"replay's alert ids differ from the live worker's: {len(replay_ids ^ set(reference))}",
    )
    promises.verify()


def _check_group(
    promises: Promises,
    seen: Observation,
    clean_seen: Observation,
    pairs: dict[str, int],
    total: int,
    codes: list[int | None],
) -> None:
    promises.check(seen.why == "done", f"the group did not finish: {seen.short()}")
    promises.check(all(c == 0 for c in codes), f"exit codes of the workers stopped: {codes}")
    wrong = {m: (seen.outcomes.get(m, 0), n) for m, n in pairs.items() if seen.outcomes.get(m) != n}
    promises.check(not wrong, f"outcomes consumed (got, expected) per model: {wrong}")
    held = {m: h for m, h in seen.held.items() if h}
    promises.check(not held, f"outcomes still held at the end: {held}")
    after = {name: seen.stats.get(name, 0) for name in COUNTED}
    reference = {name: clean_seen.stats.get(name, 0) for name in COUNTED}
    promises.check(
        after == reference and after["joined"] == total,
        f"counters of the group {after}, of one worker {reference}, pairs {total}",
    )
    promises.check(not seen.uncommitted, f"not committed to the end: {seen.uncommitted}")


def _described(alerts: dict[str, Any], ids: set[str]) -> list[tuple[str, str, int]]:
    return sorted(
        (alerts[i]["model_id"], alerts[i]["detector"], alerts[i]["outcome_index"]) for i in ids
    )[:5]


def test_three_workers_one_killed_mid_stream(
    kafka_bootstrap: str, redis_url: str, tmp_path: Path
) -> None:
    def kill_one(group: Group, part: int) -> None:
        if part == 1:
            group.kill(group.alive()[1])

    _scenario(tmp_path, kafka_bootstrap, redis_url, 8101, kill_one, first=3)


def test_a_third_worker_added_mid_stream(
    kafka_bootstrap: str, redis_url: str, tmp_path: Path
) -> None:
    def add_one(group: Group, part: int) -> None:
        if part == 1:
            group.start()

    _scenario(tmp_path, kafka_bootstrap, redis_url, 8102, add_one, first=2)


def test_a_rolling_restart_of_three_workers(
    kafka_bootstrap: str, redis_url: str, tmp_path: Path
) -> None:
    def restart_one(group: Group, part: int) -> None:
        # one of the original three per gap between parts: stopped (SIGTERM), replaced
        old = group.started[part]
        code = old.stop()
        assert code == 0, f"worker-{part} exited with {code} on SIGTERM:\n{old.log_tail()}"
        group.start()

    _scenario(tmp_path, kafka_bootstrap, redis_url, 8103, restart_one, first=3)
