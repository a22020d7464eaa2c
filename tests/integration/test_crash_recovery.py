"""A worker killed (SIGKILL) five times while it processes loses no outcome, doubles none,
and ends with the alerts of a worker that never crashed.

About 200,000 labelled pairs of 20 models (four degrade halfway) are sent as JSON
arrays on their murmur2 home partitions. A worker is started, and once it has joined a
sixth of the pairs (its Redis counters moved that far) it is killed with SIGKILL while it
processes the backlog; a worker with the same settings and app id is started again and
killed at two sixths, and so on; the sixth worker runs to the end.

How "no outcome lost or doubled" is measured: the health snapshot of each model in
Redis (``{prefix}health:{model}``, field ``outcomes``) is the ``n`` of that model's
detector bank, i.e. part of the detector state itself, which the worker checkpoints to
its changelog (every ``checkpoint_interval_s``) before it acks the outcomes that state
includes. A killed worker's successor restores the last checkpoint and re-reads what
was not acked, so its snapshot counts exactly the outcomes the surviving detector state
has consumed: one lost outcome makes it lower than the generator's pair count, one
consumed twice makes it higher. (The plain counters in ``{prefix}stats`` are
at-least-once by design and are not used for this.) ``held`` must be 0 at the end: the
idle flush released everything.

Alerts may be published again after a crash with the same id (those raised since the
last detector checkpoint), so ids are compared as sets: degradation and improvement
alerts of the crashed pipeline against a clean run of one worker over the same events
in a second set of topics.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

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
    wait_processed,
)
from helpers.third_party import Message, produce, producer

from streams.dev.process import WorkerProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]

SEED = 5150
KILLS = 5
PER_MODEL = 11_112  # x 20 models x 0.9 labelled: about 200,000 pairs
MODELS = [
    ModelSpec(f"clf-{i:02d}", "classification", (0, 1, 2) if i % 3 else (0, 1), i in (3, 11))
    for i in range(14)
] + [ModelSpec(f"reg-{i:02d}", "regression", (), degraded=i in (1, 4)) for i in range(6)]


def _retarget(messages: list[Message], iso: Isolated, source: Topics) -> list[Message]:
    names = {
        source.predictions: iso.topics["predictions"],
        source.ground_truth: iso.topics["ground_truth"],
    }
    return [replace(m, topic=names[m.topic]) for m in messages]


def _wait_for_joined(iso: Isolated, worker: WorkerProcess, target: int, timeout: float) -> int:
    """Poll the worker's ``joined`` counter (written every 0.5 s; at-least-once, so a
    batch joined again after a crash counts again) until it reaches ``target``."""
    deadline = time.monotonic() + timeout
    while True:
        now = progress(iso, "joined")
        if now >= target:
            return now
        assert worker.alive(), f"the worker exited before joining {target}:\n{worker.log_tail()}"
        assert time.monotonic() < deadline, f"{now} of {target} joined within {timeout:.0f}s"
        time.sleep(0.05)


def _run_clean(
    iso: Isolated, parts: list[list[Message]], pairs: dict[str, int]
) -> tuple[Observation, list[dict[str, object]], int | None]:
    client = producer(iso.bootstrap)
    for part in parts:
        produce(client, part)
    worker = iso.worker("clean").start()
    try:
        seen = wait_processed(iso, worker, pairs, timeout=150)
        alerts = decode_alerts(iso.read("alerts"))
    finally:
        code = worker.stop()
    return seen, alerts, code


def test_five_sigkills_lose_no_outcome_double_none_and_keep_the_clean_alert_ids(
    kafka_bootstrap: str, redis_url: str, tmp_path: Path
) -> None:
    crashed = isolated(kafka_bootstrap, redis_url, tmp_path / "crashed", partitions=4)
    clean = isolated(kafka_bootstrap, redis_url, tmp_path / "clean", partitions=4)
    for iso in (crashed, clean):
        iso.tmp.mkdir()
        iso.create_inputs()
    source = Topics(crashed.topics["predictions"], crashed.topics["ground_truth"])
    span_ms = 24 * 3_600_000
    base_ms = (int(time.time() * 1000) - span_ms - 3_600_000) // 60_000 * 60_000
    parts, expected = batched_stream(
        SEED,
        source,
        base_ms=base_ms,
        models=MODELS,
        per_model=PER_MODEL,
        partitions=4,
        span_ms=span_ms,
        chunks=KILLS + 1,
    )
    total = sum(expected.pairs.values())
    assert total >= 195_000, total

    client = producer(kafka_bootstrap)
    for part in parts:
        produce(client, part)
    workers: list[WorkerProcess] = []
    kill_points: list[tuple[int, float]] = []  # (pairs joined, seconds after its start)
    began = time.monotonic()
    try:
        for k in range(KILLS + 1):
            worker = crashed.worker(f"worker-{k}").start()
            started = time.monotonic()
            workers.append(worker)
            if k < KILLS:  # kill points spread over the stream: every sixth of the pairs
                at = _wait_for_joined(crashed, worker, total * (k + 1) // (KILLS + 1), 90)
                worker.kill()
                kill_points.append((at, round(time.monotonic() - started, 1)))
        seen = wait_processed(crashed, worker, expected.pairs, timeout=180)
        crashed_alerts = decode_alerts(crashed.read("alerts"))
    finally:
        codes = [w.stop() for w in workers]
    crashed_s = time.monotonic() - began
    print(
        f"\ncrashed pipeline ({crashed_s:.0f}s, killed at (joined, s after start) {kill_points}): "
        f"{seen.short()}; {total} pairs expected"
    )

    began = time.monotonic()
    clean_parts = [_retarget(p, clean, source) for p in parts]
    clean_seen, clean_alerts, clean_code = _run_clean(clean, clean_parts, expected.pairs)
    print(f"clean pipeline ({time.monotonic() - began:.0f}s): {clean_seen.short()}")

    promises = Promises()
    # the harness: the clean run is the reference, so it must have done its job
    assert clean_seen.why == "done", f"the clean run did not finish: {clean_seen.short()}"
    assert clean_code == 0, f"the clean worker exited with {clean_code}"
    assert clean_seen.outcomes == expected.pairs, (
        f"the clean run consumed other counts than generated: {clean_seen.outcomes}"
    )
    reference = detections(clean_alerts)
    degraded = {a["model_id"] for a in reference.values()}
    assert degraded >= set(expected.change_at_ms), f"clean run alerted on {degraded}"

    promises.check(len(kill_points) == KILLS, f"killed {len(kill_points)} times, not {KILLS}")
    promises.check(seen.why == "done", f"the last worker did not finish: {seen.short()}")
    promises.check(codes[-1] == 0, f"the last worker exited with {codes[-1]}")
    lost = {m: n - seen.outcomes.get(m, 0) for m, n in expected.pairs.items()}
    promises.check(
        not any(v > 0 for v in lost.values()),
        f"outcomes lost per model: { {m: v for m, v in lost.items() if v > 0} } "
        f"({sum(v for v in lost.values() if v > 0)} of {total})",
    )
    promises.check(
        not any(v < 0 for v in lost.values()),
        f"outcomes consumed twice per model: { {m: -v for m, v in lost.items() if v < 0} } "
        f"({sum(-v for v in lost.values() if v < 0)} of {total})",
    )
    held = {m: h for m, h in seen.held.items() if h}
    promises.check(not held, f"outcomes still held at the end: {held}")

    after_crashes = detections(crashed_alerts)
    missing = sorted(
        (a["model_id"], a["detector"], a["outcome_index"])
        for i, a in reference.items()
        if i not in after_crashes
    )
    extra = sorted(
        (a["model_id"], a["detector"], a["outcome_index"])
        for i, a in after_crashes.items()
        if i not in reference
    )
    promises.check(
        not missing and not extra,
        f"alert ids after {KILLS} crashes differ from the clean run's ({len(reference)}): "
        f"missing {missing[:5]}, extra {extra[:5]} (model, detector, outcome index)",
    )
    promises.verify()
