"""Replay of topics a third-party client wrote gives the live worker's alerts, every time.

A serving system using confluent-kafka keys by prediction_id with librdkafka's default
partitioner (CRC32, not Kafka's murmur2; random for the few unkeyed messages), so most
events are not on the partition Watchkeeper's join calls their home. The live worker
runs over a seeded scenario on 4 partitions (labels early, late, twice and never; two
classifiers degrade halfway); then ``python -m streams replay`` runs three times over
the same time range. Each run must give the same alert ids, at the same outcome index,
with the same statistics before and after, as each other and as the live worker: the
degradations, and the label-free and lifecycle signals (one model stops serving for
half an hour, so ``model_silent`` fires and resolves; the 10 % canary of every model
raises ``version_changed``). ``orphaned_model`` and the fleet's ``model_silent`` are
left out: they are raised on the wall clock, by design.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from helpers.hostile import ModelSpec, Topics, clean_stream, murmur2_partition
from helpers.pipeline import (
    Promises,
    decode_alerts,
    isolated,
    run_replay,
    wait_processed,
)
from helpers.third_party import Message, play, read_topic

from streams.contract.alerts import FLEET, LABEL_FREE_KINDS, LIFECYCLE_KINDS

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

SEED = 424242
MODELS = [
    ModelSpec("clf-00", "classification", (0, 1)),
    ModelSpec("clf-01", "classification", (0, 1), degraded=True),
    ModelSpec("clf-02", "classification", (0, 1, 2)),
    ModelSpec("clf-03", "classification", ("cat", "dog", "bird"), degraded=True),
    ModelSpec("reg-00", "regression"),
    ModelSpec("reg-01", "regression"),
]
COMPARED = ("model_id", "kind", "detector", "outcome_index", "event_time_ms", "before", "after")
EVENT_TIME_KINDS = ("performance_degradation", "performance_improvement")
EVENT_TIME_KINDS += LABEL_FREE_KINDS + LIFECYCLE_KINDS
SILENT = "clf-02"  # stops serving from 1 h to 1.5 h into the stream


def event_time_alerts(alerts: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The alerts decided in event time, by id (the ones replay must reproduce)."""
    return {
        a["alert_id"]: a
        for a in alerts
        if a.get("kind") in EVENT_TIME_KINDS and a.get("model_id") != FLEET
    }


def silence(messages: list[Message], topics: Topics, start_ms: int, end_ms: int) -> set[str]:
    """Drop SILENT's predictions made in [start_ms, end_ms) and their labels, in place;
    returns their prediction ids."""
    dropped: set[str] = set()
    kept = []
    for m in messages:
        event = orjson.loads(m.value or b"{}")
        pid = event.get("prediction_id")
        if m.topic == topics.predictions and event.get("model_id") == SILENT:
            if start_ms <= m.timestamp_ms < end_ms:
                dropped.add(pid)
                continue
        elif m.topic == topics.ground_truth and pid in dropped:
            continue
        kept.append(m)
    messages[:] = kept
    return dropped


def _view(alerts: dict[str, Any]) -> dict[str, tuple[Any, ...]]:
    return {aid: tuple(repr(a.get(k)) for k in COMPARED) for aid, a in sorted(alerts.items())}


def _rfc3339(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.separate  # 20-40 s: in .ci/run's own step, to keep the suite under 10 min
def test_three_replays_of_confluent_written_topics_give_the_live_alert_ids(
    kafka_bootstrap: str, redis_url: str, tmp_path: Path
) -> None:
    iso = isolated(kafka_bootstrap, redis_url, tmp_path, partitions=4)
    iso.create_inputs()
    topics = Topics(iso.topics["predictions"], iso.topics["ground_truth"])
    span_ms = 3 * 3_600_000
    base_ms = (int(time.time() * 1000) - span_ms - 3_600_000) // 60_000 * 60_000
    stream = clean_stream(SEED, topics, base_ms=base_ms, models=MODELS, per_model=3000)
    expected = stream.expected
    (segment,) = stream.segments
    gone = silence(segment.messages, topics, base_ms + 3_600_000, base_ms + 5_400_000)
    expected.pair_ids[SILENT] -= gone
    expected.pairs[SILENT] = len(expected.pair_ids[SILENT])

    # a producer that stalls longer than idle_flush_s looks like the end of the stream,
    # and what it sends next may come late: one CI run here saw 494 late outcomes
    worker = iso.worker(env={"WATCHKEEPER_IDLE_FLUSH_S": "15"}).start()
    try:
        play(kafka_bootstrap, stream.segments)
        # the test means something only if the client's partitioner is not Kafka's: most
        # keyed events must sit elsewhere than their murmur2 home
        written = read_topic(kafka_bootstrap, topics.predictions)
        keyed = [r for r in written if r.key is not None]
        away = sum(r.partition != murmur2_partition(r.key.decode(), 4) for r in keyed if r.key)
        assert away > len(keyed) // 2, f"only {away} of {len(keyed)} events off their home"
        seen = wait_processed(iso, worker, expected.pairs, timeout=150, stall_s=40)
        live_alerts = decode_alerts(iso.read("alerts"))
    finally:
        code = worker.stop()
    print(f"\nlive: {seen.short()}")
    assert seen.why == "done", f"the live worker did not finish: {seen.short()}"
    assert code == 0, worker.log_tail()
    live = event_time_alerts(live_alerts)
    degraded = {a["model_id"] for a in live.values() if a["kind"] == "performance_degradation"}
    assert len(degraded) >= 2, f"the scenario must make two models alert live, got {degraded}"
    silent = sorted(a["status"] for a in live.values() if a["kind"] == "model_silent")
    assert silent == ["firing", "resolved"], f"{SILENT} stopped for 30 min: {silent}"
    assert {a["model_id"] for a in live.values() if a["kind"] == "model_silent"} == {SILENT}

    # the range in record time, as an analyst gives it: epoch ms, and RFC 3339
    first, last = stream.span_ms
    ranges = [
        ["--from", str(first), "--to", str(last)],
        ["--from", str(first), "--to", str(last)],
        ["--from", _rfc3339(first - 60_000), "--to", _rfc3339(last + 60_000)],
    ]
    republished = f"{iso.topics['alerts']}-replayed"
    runs = [
        run_replay(
            iso,
            tmp_path / f"replay-{i}",
            args=ranges[i],
            publish=republished if i == 2 else None,
        )
        for i in range(3)
    ]
    print("replays took " + ", ".join(f"{r.seconds:.1f}s" for r in runs))

    promises = Promises()
    live_view = _view(dict(live))
    for i, run in enumerate(runs):
        replayed = _view(event_time_alerts(run.alerts))
        only_live = sorted(set(live_view) - set(replayed))
        only_replay = sorted(set(replayed) - set(live_view))
        promises.check(
            not only_live and not only_replay,
            f"replay {i + 1} ({' '.join(ranges[i])}): {len(replayed)} alert ids, live "
            f"{len(live_view)}; only live: {[live_view[a] for a in only_live][:4]}; only "
            f"replayed: {[replayed[a] for a in only_replay][:4]} (late outcomes in replay: "
            f"{run.document.get('late_outcomes')})",
        )
        differ = {a: (live_view[a], v) for a, v in replayed.items() if live_view.get(a, v) != v}
        promises.check(
            not differ,
            f"replay {i + 1}: same ids, other {COMPARED} (live, replayed): "
            f"{list(differ.values())[:3]}",
        )
        if i:
            previous = _view(event_time_alerts(runs[i - 1].alerts))
            promises.check(
                replayed == previous,
                f"replay {i + 1} differs from replay {i}: {len(replayed)} vs "
                f"{len(previous)} alerts, {len(set(replayed) ^ set(previous))} ids differ",
            )
    published = {a["alert_id"] for a in decode_alerts(read_topic(kafka_bootstrap, republished))}
    promises.check(
        published == {a["alert_id"] for a in runs[2].alerts},
        f"--publish wrote {len(published)} alert ids, the replay found {len(runs[2].alerts)}",
    )
    promises.verify()
