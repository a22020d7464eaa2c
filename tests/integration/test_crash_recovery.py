"""A worker killed (SIGKILL) five times while it processes loses no outcome, doubles none,
and ends with the alerts of a worker that never crashed.

About 200,000 labelled pairs of 20 models (four degrade halfway) are sent as JSON
arrays on their murmur2 home partitions. A worker is started, and once it has joined a
seventh of the pairs (its Redis counters moved that far) it is killed with SIGKILL while
it processes the backlog; a worker with the same settings and app id is started again
and, once it has moved the counters itself, killed at two sevenths, and so on; the
sixth worker runs to the end. (Most of the 3-4 minutes go to restarts: each successor
waits for the group and restores the changelogs, 20-40 s here.)

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
from pathlib import Path

import pytest
from helpers.hostile import ModelSpec, Topics, batched_stream
from helpers.pipeline import (
    Isolated,
    Promises,
    decode_alerts,
    detections,
    isolated,
    progress,
    wait_processed,
)
from helpers.third_party import produce, producer

from streams.dev.process import WorkerProcess

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.separate,
    pytest.mark.timeout(600),
]

SEED = 5150
KILLS = 5
PER_MODEL = 11_112  # x 20 models x 0.9 labelled: about 200,000 pairs
MODELS = [
    ModelSpec(f"clf-{i:02d}", "classification", (0, 1, 2) if i % 3 else (0, 1), i in (3, 11))
    for i in range(14)
] + [ModelSpec(f"reg-{i:02d}", "regression", (), degraded=i in (1, 4)) for i in range(6)]


def _counters(iso: Isolated) -> int:
    """All of the worker's totals in ``{prefix}stats``: they move whenever it processes
    anything, a redelivered or duplicate record included."""
    client = iso.redis()
    try:
        stats = client.hgetall(f"{iso.prefix}stats")
    finally:
        client.close()
    return sum(int(v) for k, v in stats.items() if "@" not in k)


def _wait_for_progress(
    iso: Isolated, worker: WorkerProcess, joined: int, timeout: float
) -> tuple[int, float]:
    """Poll until the ``joined`` counter reached ``joined`` (written every 0.5 s, and
    at-least-once: a batch joined again after a crash counts again) and this worker has
    itself moved the counters. Returns (joined, seconds waited)."""
    began = time.monotonic()
    at_start = _counters(iso)
    while True:
        now = progress(iso, "joined")
        if now >= joined and _counters(iso) > at_start:
            return now, round(time.monotonic() - began, 1)
        assert worker.alive(), f"the worker exited before it made progress:\n{worker.log_tail()}"
        assert time.monotonic() - began < timeout, (
            f"{now} of {joined} pairs joined, counters at {_counters(iso)} since {at_start}, "
            f"after {timeout:.0f}s"
        )
        time.sleep(0.05)


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
        produce(client, clean.retarget(part, source))

    # the reference: one worker that never crashes, on the same events in other topics
    # (it runs while the crashed pipeline's workers restart, which is mostly waiting)
    reference_worker = clean.worker("clean").start()
    workers: list[WorkerProcess] = [reference_worker]
    kill_points: list[tuple[int, float]] = []  # (pairs joined, seconds after its start)
    began = time.monotonic()
    try:
        for k in range(KILLS + 1):
            # info: each restart's group join and state restore, with times, in its log
            worker = crashed.worker(f"worker-{k}", args=["--log-level", "info"]).start()
            workers.append(worker)
            if k < KILLS:  # spread over the stream: at every seventh of the pairs joined
                at = _wait_for_progress(crashed, worker, total * (k + 1) // (KILLS + 2), 90)
                worker.kill()
                kill_points.append(at)
        # the last restart waits for the killed member's session to expire, a rebalance
        # and the restore of 400k changelog records before its idle flush: more than the
        # default 15 s of no movement that counts as a stall (seen: 17 s in CI)
        seen = wait_processed(crashed, worker, expected.pairs, timeout=180, stall_s=45)
        crashed_alerts = decode_alerts(crashed.read("alerts"))
        crashed_s = time.monotonic() - began
        clean_seen = wait_processed(clean, reference_worker, expected.pairs, timeout=60)
        clean_alerts = decode_alerts(clean.read("alerts"))
    finally:
        codes = [w.stop() for w in workers]
    clean_code, codes = codes[0], codes[1:]
    print(
        f"\ncrashed pipeline ({crashed_s:.0f}s; killed at (joined, s after its start) "
        f"{kill_points}): {seen.short()}; {total} pairs expected"
    )
    print(f"clean pipeline: {clean_seen.short()}")

    promises = Promises()
    # the harness: the clean run is the reference, so it must have done its job
    assert clean_seen.why == "done", f"the clean run did not finish: {clean_seen.short()}"
    assert clean_code == 0, f"the clean worker exited with {clean_code}"
    assert clean_seen.outcomes == expected.pairs, (
        f"the clean run consumed other counts than generated: {clean_seen.outcomes}"
    )
    reference = detections(clean_alerts)
    degraded = {a["model_id"] for a in reference.values() if a["kind"] == "performance_degradation"}
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
    # the Redis counters are kept with each partition's checkpointed state and written as
    # absolute values: after the crashes they equal the clean run's, not more, not less
    counted = ("predictions", "labels", "joined", "outcomes", "dlq")
    after = {name: seen.stats.get(name, 0) for name in counted}
    clean_counts = {name: clean_seen.stats.get(name, 0) for name in counted}
    promises.check(
        after == clean_counts and after["joined"] == total,
        f"counters after {KILLS} crashes {after}, clean run {clean_counts}, pairs {total}",
    )

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
